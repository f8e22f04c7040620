package main

// Phase timing of one CLI call, for measuring where a call's time goes
// (banyan-bench's cli scenario reads it). With SCHED_TIMING set (any
// value but "" or "0"), sched writes one line to standard error at its
// end:
//
//	sched timing: main_unix_ns=1764750000123456789 build=0.081ms prerun=0.034ms read=0.052ms dial=0.120ms connect=0.410ms rpc=3.100ms print=0.011ms total=3.808ms
//
// main_unix_ns is the wall clock at the start of main, so that a caller who
// noted when it started the process can tell exec, runtime start-up and
// package initialisation (everything before main) from the rest. Each
// phase is the time since the previous mark; total is the time from the
// start of main to the report. The variable is undocumented in --help: it
// is a measuring aid, not an interface.

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// phaseTimer records named marks since main started. The zero value, and
// a nil one, records nothing.
type phaseTimer struct {
	on    bool
	start time.Time

	mu    sync.Mutex
	last  time.Time
	marks []phaseMark
}

type phaseMark struct {
	name string
	d    time.Duration
}

// phases is the process's timer, on when SCHED_TIMING asks for it.
var phases = &phaseTimer{}

// timingWanted reports whether SCHED_TIMING asks for the report.
func timingWanted(v string) bool { return v != "" && v != "0" }

// begin starts the timer at now when on.
func (t *phaseTimer) begin(on bool, now time.Time) {
	t.on, t.start, t.last = on, now, now
}

// mark ends the phase called name at now.
func (t *phaseTimer) mark(name string, now time.Time) {
	if t == nil || !t.on {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.marks = append(t.marks, phaseMark{name, now.Sub(t.last)})
	t.last = now
}

// markNow is mark at the wall clock's now.
func (t *phaseTimer) markNow(name string) {
	if t == nil || !t.on {
		return
	}
	t.mark(name, time.Now())
}

// report writes the line described at the top of this file, with total
// measured up to now.
func (t *phaseTimer) report(w io.Writer, now time.Time) {
	if t == nil || !t.on {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "sched timing: main_unix_ns=%d", t.start.UnixNano())
	for _, m := range t.marks {
		fmt.Fprintf(&b, " %s=%.3fms", m.name, float64(m.d)/float64(time.Millisecond))
	}
	fmt.Fprintf(&b, " total=%.3fms\n", float64(now.Sub(t.start))/float64(time.Millisecond))
	_, _ = io.WriteString(w, b.String())
}

// startPhases starts the process's timer; main calls it first.
func startPhases() { phases.begin(timingWanted(os.Getenv("SCHED_TIMING")), time.Now()) }

// connTimer is a gRPC stats handler that marks "connect" when the client's
// TCP connection to a server is made, so that the first call's time splits
// into connecting and the call itself. (The call's phase, "rpc", still
// holds the HTTP/2 handshake: gRPC waits for the server's preface before
// it sends the call, one more round trip to the server process.)
type connTimer struct{ t *phaseTimer }

func (c connTimer) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c connTimer) HandleRPC(context.Context, stats.RPCStats)                       {}
func (c connTimer) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c connTimer) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); ok {
		c.t.markNow("connect")
	}
}

// timingDialOptions adds the connTimer when timing is on.
func timingDialOptions(t *phaseTimer) []grpc.DialOption {
	if t == nil || !t.on {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(connTimer{t})}
}
