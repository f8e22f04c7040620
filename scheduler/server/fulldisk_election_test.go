package server_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// TestFullServerStandsBackInElections: a server whose data dir is full
// could not write as leader, so it keeps out of elections while its peers
// can stand. s1 starts full. Whichever of s2 and s3 leads, s1 is first in
// line to replace it when its process dies (scheduler/deadleader orders the
// followers by ID), and first in line stands at once: so when the leader
// closes, s1 must decline and the other follower lead. Meanwhile s1's raft
// waits three times its usual timeout before it stands on its own, and
// goes back to the usual once its data dir has room again.
func TestFullServerStandsBackInElections(t *testing.T) {
	const usual = 750 * time.Millisecond
	servers := startThreeWith(t, server.Config{}, func(c *server.Config) {
		if c.NodeID == "s1" {
			c.DiskReserve = 1 << 62 // more than any disk has: full
		}
	})
	defer closeServers(servers)
	full := servers[0]
	var leader *server.Server
	waitFor(t, 20*time.Second, "a leader other than the full s1, and s1 standing back", func() bool {
		leader = nil
		for _, s := range servers {
			if s.IsLeader() {
				leader = s
			}
		}
		return leader != nil && leader != full && full.RaftHeartbeatTimeout() == 3*usual
	})

	survivors := closeLeader(t, servers, leader)
	next := waitLeader(t, survivors...)
	if next == full || full.DeadLeaderElections() != 0 {
		t.Fatalf("the full server stood in place of the dead leader (%d times) and leads: %v",
			full.DeadLeaderElections(), next == full)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dialClient(t, next.Addr()).SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("after", "k1", 1, "true")}}); err != nil {
		t.Fatalf("submit to the new leader: %v", err)
	}
	// Still full, and a follower of the new leader: still standing back.
	if got := full.RaftHeartbeatTimeout(); got != 3*usual || full.IsLeader() {
		t.Fatalf("the full server's heartbeat timeout %v, leader %v; want %v and a follower", got, full.IsLeader(), 3*usual)
	}

	full.SetDiskReserve(32 << 20)
	waitFor(t, 5*time.Second, "the usual timeout back once the data dir has room", func() bool {
		return full.RaftHeartbeatTimeout() == usual
	})
}
