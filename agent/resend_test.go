package agent

import (
	"fmt"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestResendStaleIsBounded: while the leader does not acknowledge, each
// unacknowledged result is queued again at most once per age, however many
// heartbeats pass; an acknowledged one is not queued again.
func TestResendStaleIsBounded(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	a := &Agent{cfg: Config{Clock: func() time.Time { return now }}, unacked: map[string]*pb.TaskEvent{}, resent: map[string]int64{}}
	for i := range 5 {
		ev := &pb.TaskEvent{TaskId: fmt.Sprintf("job-1.%d", i), Attempt: 1, Kind: "finished", UnixMs: now.UnixMilli() - 60_000}
		a.unacked[ev.TaskId+"/1"] = ev
	}
	q := newEventQueue()
	age := 4 * time.Second
	for range 40 { // 40 heartbeats of 250 ms: 10 s
		a.resendStale(q, age)
		now = now.Add(250 * time.Millisecond)
	}
	// Queued at 0 s, 4 s and 8 s: three times each at most.
	if n := len(q.take(1 << 20)); n > 5*3 {
		t.Fatalf("%d events queued for 5 results over 10 s, want at most 15", n)
	} else if n < 5 {
		t.Fatalf("%d events queued, want every stale result at least once", n)
	}
	a.ack([]*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 1, Kind: "finished"}})
	now = now.Add(time.Minute)
	a.resendStale(q, age)
	got := q.take(1 << 20)
	if len(got) != 4 {
		t.Fatalf("after one ack: %d queued, want the 4 still unacknowledged", len(got))
	}
	for _, ev := range got {
		if ev.TaskId == "job-1.0" {
			t.Fatal("an acknowledged result was queued again")
		}
	}
}
