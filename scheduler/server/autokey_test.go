package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// TestKeylessSubmissionsGetAKeyAtTheFirstServer: a submission that came
// without an idempotency key, sent to a follower, is keyed there before it
// is forwarded, so the follower's resend after a leader change (the entry
// may have committed) finds the job instead of making a second one.
func TestKeylessSubmissionsGetAKeyAtTheFirstServer(t *testing.T) {
	_, s2 := startLeaderAndFollower(t)
	follower := dialClient(t, s2.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("keyless", "", 1, "true")}}
	resp, err := follower.SubmitJobs(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	key := resp.Jobs[0].IdempotencyKey
	if !strings.HasPrefix(key, "auto:") {
		t.Fatalf("keyless submission stored with key %q, want one the server made", key)
	}
	// What the follower resends is the request it keyed: the same job.
	again, err := follower.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("keyless", key, 1, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if again.Jobs[0].Id != resp.Jobs[0].Id || !again.Existing[0] {
		t.Fatalf("resend made %s (existing %v), want %s", again.Jobs[0].Id, again.Existing[0], resp.Jobs[0].Id)
	}
	list, err := follower.ListJobs(ctx, &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(list.Jobs))
	}
}

// startLeaderAndFollower starts a two-server cluster: s1 bootstrapped and
// leading, s2 joined and following it.
func startLeaderAndFollower(t *testing.T) (s1, s2 *server.Server) {
	t.Helper()
	l1, l2 := listen(t), listen(t)
	s1 = startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: l1, Bootstrap: true})
	waitLeader(t, s1)
	s2 = startServer(t, server.Config{NodeID: "s2", DataDir: t.TempDir(), Listener: l2, Join: []string{s1.Addr()}})
	waitFor(t, 20*time.Second, "s2 to join", func() bool { return s2.LeaderAddr() == s1.Addr() })
	return s1, s2
}
