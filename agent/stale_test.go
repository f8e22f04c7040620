package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// oneMessage is a session stream whose Recv returns one message.
type oneMessage struct {
	pb.AgentService_SessionClient
	m *pb.ServerMessage
}

func (s *oneMessage) Recv() (*pb.ServerMessage, error) { return s.m, nil }

// TestStaleBatchAfterSilenceIsNotRun: a task batch read after a silence
// longer than the lease (the agent was frozen with the batch in its
// socket, and the leader has since queued those tasks elsewhere) ends the
// session instead of starting the tasks.
func TestStaleBatchAfterSilenceIsNotRun(t *testing.T) {
	a := &Agent{running: map[string]*run{}, unacked: map[string]*pb.TaskEvent{}, resent: map[string]int64{}}
	heard := &lastHeard{}
	heard.at.Store(int64(time.Since(processStart) - 6*time.Second)) // last heard 6 s ago
	stream := &oneMessage{m: &pb.ServerMessage{Msg: &pb.ServerMessage_Batch{Batch: &pb.TaskBatch{Tasks: []*pb.TaskAssignment{
		{TaskId: "job-1.0", Attempt: 1, Spec: &pb.TaskSpec{Command: []string{"true"}}}}}}}}
	err := a.recvLoop(context.Background(), stream, heard, newSessionTerms(&pb.Welcome{LeaseMs: 3000}))
	if !errors.Is(err, errServerSilent) {
		t.Fatalf("recvLoop after 6 s of silence with a 3 s lease: %v, want the session ended", err)
	}
	if len(a.running) != 0 {
		t.Fatalf("a stale batch started %d tasks", len(a.running))
	}
}
