package server_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// TestPlacedBeforeHelloIsDelivered: work the leader places on an agent
// that is up in the state but has no session with it (its session ended,
// a new leader took over, or a snapshot was restored, and the agent has
// not said hello yet) was sent to no one. The agent's hello then gets it
// delivered: the task runs on its first attempt, nothing is counted lost.
func TestPlacedBeforeHelloIsDelivered(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		Lease: 30 * time.Second}) // the agent stays up in the state while it is away
	defer s.Close()
	waitLeader(t, s)
	stop := startAgent(t, "a1", []string{addr}, 4)
	c := dialClient(t, addr)
	ctx := context.Background()
	first, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("first", "k1", 1, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, first.Jobs[0].Id, 20*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("first job: %v %s", j.State, j.Reason)
	}
	stop() // its session ends; the state still has it up (lease 30 s)

	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("away", "k2", 2, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Jobs[0].Id
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: id, WithTasks: true})
		if err != nil {
			t.Fatal(err)
		}
		placed := 0
		for _, task := range j.Tasks {
			if len(task.Attempts) == 1 && task.Attempts[0].AgentId == "a1" && task.Attempts[0].PlacedUnixMs != 0 {
				placed++
			}
		}
		if placed == len(j.Tasks) {
			break // placed on a1, which has no session
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks not placed on the away agent: %v", j.Tasks)
		}
	}

	startAgent(t, "a1", []string{addr}, 4) // back: its hello lists nothing running
	j := waitJob(t, c, id, 20*time.Second)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job: %v %s", j.State, j.Reason)
	}
	for _, task := range j.Tasks {
		if len(task.Attempts) != 1 || task.LostAttempts != 0 || task.Attempts[0].Outcome != "succeeded" {
			t.Fatalf("task %s placed before the hello was not delivered at it: lost %d, attempts %v",
				task.Id, task.LostAttempts, task.Attempts)
		}
	}
}
