package server_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// TestDeadLeaderReplacedAtOnce closes the leader of three servers (its
// port then refuses connections, as a killed process's does) and checks
// that a follower stood for election because of that, and that the new
// leader takes writes and keeps what was acknowledged before.
func TestDeadLeaderReplacedAtOnce(t *testing.T) {
	servers := startThree(t, server.Config{})
	defer func() {
		for _, s := range servers {
			if s != nil {
				s.Close()
			}
		}
	}()
	leader := waitLeader(t, servers...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := dialClient(t, leader.Addr()).SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("before", "k1", 1, "true")}})
	if err != nil {
		t.Fatal(err)
	}

	survivors := closeLeader(t, servers, leader)
	closed := time.Now()
	next := waitLeader(t, survivors...)
	t.Logf("new leader %s %v after the old one closed", next.Addr(), time.Since(closed).Round(time.Millisecond))
	var stood uint64
	for _, s := range survivors {
		stood += s.DeadLeaderElections()
	}
	// The first in line stands at once and usually wins before the
	// second's turn (deadleader's tests check the turns exactly).
	if stood == 0 {
		t.Fatal("no follower stood for election when the leader's port refused connections")
	}
	t.Logf("followers stood %d times; the new leader %d", stood, next.DeadLeaderElections())

	c := dialClient(t, next.Addr())
	after, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("after", "k2", 1, "true")}})
	if err != nil {
		t.Fatalf("submit to the new leader: %v", err)
	}
	for _, j := range []*pb.Job{before.Jobs[0], after.Jobs[0]} {
		if got, err := c.GetJob(ctx, &pb.GetJobRequest{Id: j.Id}); err != nil || got.Name != j.Name {
			t.Fatalf("job %s on the new leader: %v, %v", j.Id, got, err)
		}
	}
}
