package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// scriptedStream is a session stream whose Recv plays its steps in order,
// then io.EOF; a step may run a hook before its message is returned.
type scriptedStream struct {
	pb.AgentService_SessionClient
	steps []scriptStep
}

type scriptStep struct {
	before func()
	m      *pb.ServerMessage
}

func (s *scriptedStream) Recv() (*pb.ServerMessage, error) {
	if len(s.steps) == 0 {
		return nil, io.EOF
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	if st.before != nil {
		st.before()
	}
	return st.m, nil
}

// TestWelcomeMidSessionLengthensLease: a leader whose fleet grew sends a
// Welcome with a longer lease; a silence longer than the first lease but
// within the new one no longer ends the session.
func TestWelcomeMidSessionLengthensLease(t *testing.T) {
	a := &Agent{running: map[string]*run{}, unacked: map[string]*pb.TaskEvent{}, resent: map[string]int64{}, log: slog.New(slog.DiscardHandler)}
	heard := &lastHeard{}
	heard.mark()
	silent := func() { heard.at.Store(int64(time.Since(processStart) - 6*time.Second)) } // last heard 6 s ago
	stream := &scriptedStream{steps: []scriptStep{
		{m: &pb.ServerMessage{Msg: &pb.ServerMessage_Welcome{Welcome: &pb.Welcome{LeaseMs: 20000, HeartbeatMs: 5000}}}},
		{before: silent, m: &pb.ServerMessage{Msg: &pb.ServerMessage_Ack{Ack: &pb.AckEvents{}}}},
	}}
	terms := newSessionTerms(&pb.Welcome{LeaseMs: 3000, HeartbeatMs: 750})
	if err := a.recvLoop(context.Background(), stream, heard, terms); !errors.Is(err, io.EOF) {
		t.Fatalf("recvLoop after 6 s of silence with the lease raised to 20 s: %v, want the stream's end", err)
	}
	if terms.every() != 5*time.Second || terms.leaseLength() != 20*time.Second {
		t.Fatalf("terms after the new welcome: every %v, lease %v; want 5s and 20s", terms.every(), terms.leaseLength())
	}

	// The same silence under the first lease ends the session.
	stream = &scriptedStream{steps: []scriptStep{{before: silent, m: &pb.ServerMessage{Msg: &pb.ServerMessage_Ack{Ack: &pb.AckEvents{}}}}}}
	if err := a.recvLoop(context.Background(), stream, heard, newSessionTerms(&pb.Welcome{LeaseMs: 3000})); !errors.Is(err, errServerSilent) {
		t.Fatalf("recvLoop after 6 s of silence with a 3 s lease: %v, want the session ended", err)
	}
}

// TestSendLoopFollowsNewTerms: new terms move the heartbeat ticker at once,
// not after the old interval.
func TestSendLoopFollowsNewTerms(t *testing.T) {
	a := &Agent{running: map[string]*run{}, unacked: map[string]*pb.TaskEvent{}, resent: map[string]int64{}, log: slog.New(slog.DiscardHandler)}
	a.cfg.Clock = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	heard := &lastHeard{}
	heard.mark()
	terms := newSessionTerms(&pb.Welcome{HeartbeatMs: time.Hour.Milliseconds(), LeaseMs: 4 * time.Hour.Milliseconds()})
	rec := &recorder{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = a.sendLoop(ctx, rec, newEventQueue(), terms, heard) }()
	go func() { // the leader answers: the loop must not give the session up
		defer wg.Done()
		for ctx.Err() == nil {
			heard.mark()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(50 * time.Millisecond)
	if n := heartbeats(rec); n != 0 {
		t.Fatalf("%d heartbeats within 50 ms of an hourly interval", n)
	}
	terms.update(&pb.Welcome{HeartbeatMs: 20, LeaseMs: 80})
	deadline := time.Now().Add(10 * time.Second)
	for heartbeats(rec) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d heartbeats 10 s after the interval became 20 ms", heartbeats(rec))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heartbeats(r *recorder) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.sent {
		if m.GetHeartbeat() != nil {
			n++
		}
	}
	return n
}
