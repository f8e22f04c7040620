package server_test

import (
	"context"
	"maps"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/state"
)

// warmSession is an agent session opened by hand that records the
// warm-worker targets the leader sends it.
type warmSession struct {
	stream pb.AgentService_SessionClient
	warm   chan map[string]int32
}

func openWarmSession(t *testing.T, addr, id string, labels map[string]string) *warmSession {
	t.Helper()
	fp := &pb.Fingerprint{Hostname: id, CpuCores: 4, MemoryBytes: 8 << 30, Labels: labels,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}}
	stream, ctx := openAgentSession(t, addr, id, fp)
	w := &warmSession{stream: stream, warm: make(chan map[string]int32, 16)}
	go func() { // owned by the test: ends with the stream (ctx)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if m.GetWarm() != nil {
				select {
				case w.warm <- m.GetWarm().GetWorkers():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	go func() { // owned by the test: heartbeats until the stream ends (ctx)
		for ctx.Err() == nil {
			if stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}}) != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return w
}

// next returns the next warm targets sent, or fails after a while.
func (w *warmSession) next(t *testing.T) map[string]int32 {
	t.Helper()
	select {
	case m := <-w.warm:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no warm targets sent")
		return nil
	}
}

// none checks that no warm targets arrive for a while.
func (w *warmSession) none(t *testing.T, who string) {
	t.Helper()
	select {
	case m := <-w.warm:
		t.Fatalf("%s was sent warm targets %v, want none", who, m)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWarmTargetsGoOnlyWhereTheyChange: the leader tells an agent its
// warm-worker targets when they change and at its hello, never the whole
// fleet at every agent's hello (10,000 agents saying hello at once cost
// the leader 10,000 squared before), and an agent whose reservation is
// dropped is told to go back to none.
func TestWarmTargetsGoOnlyWhereTheyChange(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	waitLeader(t, s)
	serving := map[string]string{state.FunctionLabel("thumb"): ""}
	a := openWarmSession(t, addr, "fn-a", serving)
	b := openWarmSession(t, addr, "fn-b", serving)
	plain := openWarmSession(t, addr, "plain", nil)
	pools := pb.NewPoolServiceClient(dialConn(t, addr))
	set := func(n int32) {
		t.Helper()
		p := &pb.Pool{Path: "studio", Guaranteed: &pb.Resources{CpuMillis: 1000}, Warm: map[string]int32{"thumb": n}}
		if n == 0 {
			p.Warm = nil
		}
		var err error
		if n == 4 {
			_, err = pools.CreatePool(context.Background(), &pb.PoolRequest{Pool: p})
		} else {
			_, err = pools.UpdatePool(context.Background(), &pb.PoolRequest{Pool: p})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	set(4)
	for _, w := range []*warmSession{a, b} {
		if got := w.next(t); !maps.Equal(got, map[string]int32{"thumb": 2}) {
			t.Fatalf("warm targets %v, want thumb=2 on each of two agents", got)
		}
	}
	plain.none(t, "an agent serving no function")

	// Another agent's hello changes nobody's targets: nobody is told again.
	late := openWarmSession(t, addr, "plain-2", nil)
	a.none(t, "fn-a after an unrelated hello")
	b.none(t, "fn-b after an unrelated hello")
	late.none(t, "a new agent serving no function")

	// A third serving agent spreads the reservation (2, 1, 1): it is told
	// its share, and of the others only the one whose share fell.
	c := openWarmSession(t, addr, "fn-c", serving)
	if got := c.next(t); got["thumb"] != 1 {
		t.Fatalf("the third serving agent's targets %v, want thumb=1", got)
	}
	told := 0
	for _, w := range []*warmSession{a, b} {
		select {
		case m := <-w.warm:
			told++
			if m["thumb"] != 1 {
				t.Fatalf("a serving agent was told %v, want thumb=1", m)
			}
		case <-time.After(3 * time.Second):
		}
	}
	if told != 1 {
		t.Fatalf("%d of the first two serving agents were told new targets, want 1 (2+1+1 = 4)", told)
	}

	// The reservation dropped: each serving agent is told it has none.
	set(0)
	for _, w := range []*warmSession{a, b, c} {
		if got := w.next(t); len(got) != 0 {
			t.Fatalf("after the reservation was dropped: %v, want none", got)
		}
	}
	plain.none(t, "an agent serving no function")
}
