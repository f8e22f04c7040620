package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"google.golang.org/protobuf/proto"
)

// An event is held to the budget before it leaves the agent: tails keep
// their end and the error its start, each marked; a result over the bound
// turns the attempt into a failure naming the size.
func TestBoundEvent(t *testing.T) {
	b := limits.Budget{}
	ev := &pb.TaskEvent{TaskId: "job-1.0", Kind: "finished", Outcome: "succeeded",
		StdoutTail: strings.Repeat("o", 1<<20) + "LAST", StderrTail: "short", Error: "E" + strings.Repeat("e", 1<<20),
		Result: make([]byte, limits.ResultBytes+1)}
	boundEvent(ev, b)
	if len(ev.StdoutTail) > b.TailBytes() || !strings.HasSuffix(ev.StdoutTail, "LAST") || !strings.Contains(ev.StdoutTail, "bytes cut]") {
		t.Fatalf("stdout tail not bounded: %d bytes", len(ev.StdoutTail))
	}
	if ev.StderrTail != "short" {
		t.Fatalf("short tail changed: %q", ev.StderrTail)
	}
	if ev.Result != nil || ev.Outcome != "failed" || len(ev.Error) > limits.ErrorBytes ||
		!strings.Contains(ev.Error, "more than the limit") {
		t.Fatalf("oversized result: outcome %q error %q", ev.Outcome, ev.Error)
	}
	if proto.Size(ev) > b.BatchBytes() {
		t.Fatalf("bounded event is %d bytes", proto.Size(ev))
	}
}

// A result file over the bound is refused with its size, without reading
// it all; one at the bound is read.
func TestReadResultBound(t *testing.T) {
	dir := t.TempDir()
	over := filepath.Join(dir, "over")
	if err := os.WriteFile(over, make([]byte, limits.ResultBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readResult(over); err == nil || !strings.Contains(err.Error(), "4194305 bytes, more than the limit of 4194304") {
		t.Fatalf("oversized result: %v", err)
	}
	at := filepath.Join(dir, "at")
	if err := os.WriteFile(at, make([]byte, limits.ResultBytes), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := readResult(at); err != nil || len(data) != limits.ResultBytes {
		t.Fatalf("result at the bound: %d bytes, %v", len(data), err)
	}
}

// Events queued together leave in messages of at most the batch budget
// (here nine results of 4 MiB: far over one message).
func TestEventsSplitByBytes(t *testing.T) {
	b := limits.Budget{}
	var evs []*pb.TaskEvent
	for i := 0; i < 9; i++ {
		evs = append(evs, &pb.TaskEvent{TaskId: "t", Kind: "finished", Result: make([]byte, limits.ResultBytes)})
	}
	groups := limits.Split(evs, eventSize, b.BatchBytes())
	n := 0
	for _, g := range groups {
		if size := proto.Size(&pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.TaskEvents{Events: g}}}); size > b.Message() {
			t.Fatalf("message of %d events is %d bytes", len(g), size)
		}
		n += len(g)
	}
	if n != len(evs) || len(groups) < 5 {
		t.Fatalf("%d groups holding %d events", len(groups), n)
	}
}

// An agent refuses a message size out of range or tails that could not fit.
func TestAgentConfigBudget(t *testing.T) {
	base := Config{ID: "a", Servers: []string{"127.0.0.1:1"}, Fingerprint: &pb.Fingerprint{}}
	bad := base
	bad.MaxMessageSize = 1 << 20
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "max message size") {
		t.Fatalf("small message size: %v", err)
	}
	bad = base
	bad.TailBytes = 1 << 20
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "tail") {
		t.Fatalf("oversized tail: %v", err)
	}
	a, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	a.Shutdown() // removes the temp task dir New made
}
