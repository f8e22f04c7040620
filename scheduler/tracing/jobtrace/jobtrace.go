// Package jobtrace names the spans of a job's trace without any tracing
// library: trace and span ids as lower-case hex (W3C trace context), the
// span ids derived from a job's trace id and a task attempt, and the
// traceparent header value that carries them to a task.
//
// It is pure (no clock, no I/O, no global state), so the replicated state
// can use it in Apply: the same job, task and attempt name the same span
// on every server and on the agent that runs the attempt, without a round
// trip.
package jobtrace

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
)

// Span kinds whose ids Derive names.
const (
	// KindPlace is an attempt's wait from queued to placed.
	KindPlace = "place"
	// KindRun is an attempt's run from started to finished; the task's own
	// spans (encoder steps) are its children.
	KindRun = "run"
)

// ValidTraceID reports whether s is a W3C trace id: 32 lower-case hex
// digits, not all zero.
func ValidTraceID(s string) bool { return validHex(s, 16) }

// ValidSpanID reports whether s is a W3C span id: 16 lower-case hex
// digits, not all zero.
func ValidSpanID(s string) bool { return validHex(s, 8) }

func validHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	zero := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '0':
		case c >= '1' && c <= '9', c >= 'a' && c <= 'f':
			zero = false
		default:
			return false
		}
	}
	return !zero
}

// NewTraceID reads a random trace id from r (crypto/rand.Reader in
// production).
func NewTraceID(r io.Reader) (string, error) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("read random trace id: %w", err)
		}
		if b != [16]byte{} {
			return hex.EncodeToString(b[:]), nil
		}
	}
}

// SpanID derives the span id of one span of a task attempt (kind is
// KindPlace or KindRun) in the trace traceID: a hash of the four, never
// zero. Every process that knows the four names the same span.
func SpanID(traceID, kind, taskID string, attempt int32) string {
	h := sha256.New()
	for _, s := range []string{traceID, kind, taskID, strconv.Itoa(int(attempt))} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	sum := h.Sum(nil)
	if [8]byte(sum[:8]) == [8]byte{} {
		sum[7] = 1
	}
	return hex.EncodeToString(sum[:8])
}

// Traceparent returns the W3C traceparent value naming span spanID of
// trace traceID, sampled ("00-<trace>-<span>-01"), or "" when either id is
// not valid.
func Traceparent(traceID, spanID string) string {
	if !ValidTraceID(traceID) || !ValidSpanID(spanID) {
		return ""
	}
	return "00-" + traceID + "-" + spanID + "-01"
}

// RunTraceparent is the traceparent of an attempt's run span: what the
// agent passes to the task as TRACEPARENT ("" without a valid trace id).
func RunTraceparent(traceID, taskID string, attempt int32) string {
	if !ValidTraceID(traceID) {
		return ""
	}
	return Traceparent(traceID, SpanID(traceID, KindRun, taskID, attempt))
}
