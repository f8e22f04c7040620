package server_test

import (
	"context"
	"net"
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
	defer closeServers(servers)
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

// TestDeadLeaderReplacedOverFreshConnections: s1 led once, so raft keeps
// pooled connections to s2 and s3; s2 then restarts (the connection s1
// holds to it is dead) and s3 leads. When s3's process goes, s1 is first
// in line and stands at once; its vote requests must reach the new s2
// process, so s1 wins in the next term. Over the dead pooled connection
// s2's vote was lost (EOF), and the election took raft's timeout and more
// terms.
func TestDeadLeaderReplacedOverFreshConnections(t *testing.T) {
	servers := startThree(t, server.Config{})
	defer closeServers(servers)
	s1, s3 := servers[0], servers[2]
	lead := func(to *server.Server) {
		t.Helper()
		from := waitLeader(t, servers...)
		if from != to {
			if err := from.TransferLeadershipTo(to); err != nil {
				t.Fatalf("hand leadership to %s: %v", to.NodeID(), err)
			}
		}
		waitFor(t, 10*time.Second, to.NodeID()+" leading", to.IsLeader)
	}
	lead(s1)
	// Long enough for heartbeats (every 75 ms), which go over pooled
	// connections; the log's replication has connections of its own.
	time.Sleep(500 * time.Millisecond)
	lead(s3)

	cfg := servers[1].Config()
	if err := servers[1].Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listener.Addr().String())
	if err != nil {
		t.Fatalf("listen again on s2's address: %v", err)
	}
	cfg.Listener = ln
	servers[1] = startServer(t, cfg)
	waitFor(t, 10*time.Second, "the restarted s2 following s3", func() bool {
		return servers[1].LeaderAddr() == s3.Addr()
	})

	term := s1.RaftTerm()
	survivors := closeLeader(t, servers, s3)
	next := waitLeader(t, survivors...)
	if next != s1 || s1.DeadLeaderElections() != 1 || s1.RaftTerm() != term+1 {
		t.Fatalf("%s leads in term %d (s3 led in %d), s1 stood %d times; want s1 in term %d on its first stand",
			next.NodeID(), next.RaftTerm(), term, s1.DeadLeaderElections(), term+1)
	}
}
