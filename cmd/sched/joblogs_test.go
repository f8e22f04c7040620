package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// flakyLogs serves a stream that breaks after its first chunk once, then
// (on a second server it names as leader) serves the rest from the offset
// asked.
type flakyLogs struct {
	pb.UnimplementedLogsServiceServer
	mu      sync.Mutex
	calls   []*pb.LogsRequest
	leader  string // when set, answer "not the leader" naming it
	payload string
	breaks  bool
}

func (f *flakyLogs) Stream(req *pb.LogsRequest, stream pb.LogsService_StreamServer) error {
	f.mu.Lock()
	f.calls = append(f.calls, &pb.LogsRequest{Offset: req.Offset, Follow: req.Follow})
	leader, breaks := f.leader, f.breaks
	f.breaks = false
	f.mu.Unlock()
	if leader != "" {
		return status.Errorf(codes.FailedPrecondition, "not the leader; leader=%s", leader)
	}
	if err := stream.Send(&pb.LogsChunk{TaskId: "job-1.0", Attempt: 1, AgentId: "a1", Offset: req.Offset}); err != nil {
		return err
	}
	rest := f.payload[req.Offset:]
	if breaks {
		if err := stream.Send(&pb.LogsChunk{Data: []byte(rest[:4]), Offset: req.Offset}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "leadership lost")
	}
	return stream.Send(&pb.LogsChunk{Data: []byte(rest), Offset: req.Offset})
}

func serveFake(t *testing.T, svc pb.LogsServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterLogsServiceServer(s, svc)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// TestJobLogsFollowsLeaderAndResumes: a follower's hint is followed, and a
// stream cut by a leadership change resumes where it stopped, without
// printing a byte twice.
func TestJobLogsFollowsLeaderAndResumes(t *testing.T) {
	leader := &flakyLogs{payload: "line 1\nline 2\n", breaks: true}
	leaderAddr := serveFake(t, leader)
	follower := &flakyLogs{leader: leaderAddr}
	followerAddr := serveFake(t, follower)
	var out, notes strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The retry after the cut goes back to the configured address (the
	// follower), which names the leader again.
	err := jobLogs(ctx, &globals{addr: followerAddr}, &pb.LogsRequest{JobId: "job-1", Follow: true}, &out, &notes)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "line 1\nline 2\n" || notes.Len() != 0 {
		t.Fatalf("out = %q, notes = %q", out.String(), notes.String())
	}
	leader.mu.Lock()
	defer leader.mu.Unlock()
	if len(leader.calls) != 2 || leader.calls[0].Offset != 0 || leader.calls[1].Offset != 4 {
		t.Fatalf("leader calls: %v", leader.calls)
	}
}

// TestJobLogsAgentDownNotRetried: an answer that retrying cannot change
// comes back at once.
func TestJobLogsAgentDownNotRetried(t *testing.T) {
	addr := serveFake(t, &downLogs{})
	start := time.Now()
	err := jobLogs(context.Background(), &globals{addr: addr}, &pb.LogsRequest{JobId: "job-1"}, &strings.Builder{}, &strings.Builder{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "agent gpu-7 is down") || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

type downLogs struct {
	pb.UnimplementedLogsServiceServer
}

func (downLogs) Stream(*pb.LogsRequest, pb.LogsService_StreamServer) error {
	return status.Error(codes.FailedPrecondition, "agent gpu-7 is down; its logs of job-1.0#1 are on that host under task-logs/job-1/job-1.0/1")
}
