package process

import (
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// TailBuffer is an io.Writer that keeps only the last N bytes written to it.
// It is safe for concurrent use. Make one with NewTailBuffer; the zero value
// keeps nothing.
type TailBuffer struct {
	mu    sync.Mutex
	data  []byte // ring storage, len == capacity
	next  int    // where the next byte goes
	full  bool   // data has wrapped at least once
	total int64  // bytes written in all
}

// NewTailBuffer returns a TailBuffer keeping the last n bytes (none if n <= 0).
func NewTailBuffer(n int) *TailBuffer {
	return &TailBuffer{data: make([]byte, max(n, 0))}
}

// Write keeps the tail of p; it always accepts all of p.
func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	size := len(t.data)
	if size == 0 || len(p) == 0 {
		return len(p), nil
	}
	if len(p) >= size {
		copy(t.data, p[len(p)-size:])
		t.next, t.full = 0, true
		return len(p), nil
	}
	n := copy(t.data[t.next:], p)
	if n < len(p) {
		copy(t.data, p[n:])
	}
	if t.next+len(p) >= size {
		t.full = true
	}
	t.next = (t.next + len(p)) % size
	return len(p), nil
}

// Bytes returns a copy of the bytes kept, oldest first.
func (t *TailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.full {
		return append([]byte(nil), t.data[:t.next]...)
	}
	out := make([]byte, 0, len(t.data))
	out = append(out, t.data[t.next:]...)
	return append(out, t.data[:t.next]...)
}

// String returns the bytes kept as a string.
func (t *TailBuffer) String() string { return string(t.Bytes()) }

// Total returns the number of bytes written in all, kept or not.
func (t *TailBuffer) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Truncated reports whether bytes were dropped from the front.
func (t *TailBuffer) Truncated() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total > int64(len(t.data))
}

// Text returns the bytes kept as valid UTF-8, fit for a protobuf string:
// when the front was cut, a partial character there is dropped, and any
// other invalid sequence is replaced by U+FFFD.
func (t *TailBuffer) Text() string {
	b := t.Bytes()
	if t.Truncated() {
		// A cut can leave at most utf8.UTFMax-1 continuation bytes in front.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// tee writes to the tail and, when set, to extra too.
func tee(tail *TailBuffer, extra io.Writer) io.Writer {
	if extra == nil {
		return tail
	}
	return io.MultiWriter(tail, extra)
}
