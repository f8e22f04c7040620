package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func cpuJob(name, poolPath string, n int, cpus int64, script string) *pb.JobSpec {
	j := &pb.JobSpec{Name: name, Pool: poolPath}
	for i := 0; i < n; i++ {
		j.Tasks = append(j.Tasks, &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Command: []string{"sh", "-c", script},
			Resources: &pb.Resources{CpuMillis: cpus * 1000}})
	}
	return j
}

// TestGuaranteeReclaimedByPreemption: pool a fills the cluster, half of it
// on capacity borrowed from pool b; b then submits within its guarantee. b's
// tasks must start within 2 s (preempting a's borrowed work), and a's
// preempted tasks must run again later without using a retry.
func TestGuaranteeReclaimedByPreemption(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		MinRuntime: 300 * time.Millisecond, PreemptRate: 100, PreemptBurst: 100})
	defer s.Close()
	waitLeader(t, s)
	startAgent(t, "a1", []string{addr}, 4)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pools := pb.NewPoolServiceClient(conn)
	jobs := pb.NewJobServiceClient(conn)
	ctx := context.Background()
	for _, p := range []string{"a", "b"} {
		if _, err := pools.CreatePool(ctx, &pb.PoolRequest{Pool: &pb.Pool{Path: p,
			Guaranteed: &pb.Resources{CpuMillis: 2000}}}); err != nil {
			t.Fatal(err)
		}
	}
	ra, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{cpuJob("greedy", "a", 8, 1, "sleep 1.2")}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "pool a running on the whole cluster", func() bool {
		j, err := jobs.GetJob(ctx, &pb.GetJobRequest{Id: ra.Jobs[0].Id})
		return err == nil && j.Counts.Running == 4
	})
	time.Sleep(500 * time.Millisecond) // past the minimum run time
	submitted := time.Now()
	rb, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{cpuJob("owner", "b", 2, 1, "sleep 0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "pool b's tasks started within 2s", func() bool {
		j, err := jobs.GetJob(ctx, &pb.GetJobRequest{Id: rb.Jobs[0].Id})
		return err == nil && j.Counts.Running+j.Counts.Succeeded == 2
	})
	t.Logf("pool b started within %s", time.Since(submitted).Round(time.Millisecond))
	b := waitJob(t, jobs, rb.Jobs[0].Id, 10*time.Second)
	a := waitJob(t, jobs, ra.Jobs[0].Id, 30*time.Second)
	if a.State != pb.JobState_JOB_STATE_SUCCEEDED || b.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("a %v (%s), b %v (%s)", a.State, a.Reason, b.State, b.Reason)
	}
	preempted := 0
	for _, task := range a.Tasks {
		for _, att := range task.Attempts {
			if att.Outcome == "preempted" {
				preempted++
			}
		}
		if task.RetriesUsed != 0 {
			t.Fatalf("task %s used %d retries", task.Id, task.RetriesUsed)
		}
	}
	if preempted != 2 {
		t.Fatalf("want exactly 2 preempted attempts of pool a (no more than needed), got %d", preempted)
	}
}
