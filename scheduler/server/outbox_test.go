package server

import (
	"context"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestOutbox: a session queues up to outboxLimit messages for its agent,
// hands them over oldest first with a token to wake its send loop, and is
// closed when its agent cannot keep up.
func TestOutbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSession(ctx, cancel, "a1")
	select {
	case <-s.out.ready:
		t.Fatal("an empty outbox is ready")
	default:
	}
	for i := range outboxLimit {
		s.send(&pb.ServerMessage{Msg: &pb.ServerMessage_HeartbeatAck{HeartbeatAck: &pb.HeartbeatAck{UnixMs: int64(i)}}})
	}
	if ctx.Err() != nil {
		t.Fatalf("closed with %d messages waiting, the limit", outboxLimit)
	}
	<-s.out.ready
	got := s.out.take()
	if len(got) != outboxLimit || got[0].GetHeartbeatAck().UnixMs != 0 || got[outboxLimit-1].GetHeartbeatAck().UnixMs != outboxLimit-1 {
		t.Fatalf("took %d messages, want %d oldest first", len(got), outboxLimit)
	}
	if len(s.out.take()) != 0 {
		t.Fatal("the outbox kept messages it handed over")
	}
	for range outboxLimit + 1 {
		s.send(&pb.ServerMessage{})
	}
	if ctx.Err() == nil {
		t.Fatalf("not closed with %d messages for an agent that takes none", outboxLimit+1)
	}
}
