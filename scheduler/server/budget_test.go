package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// resultJob is one task writing a job expansion padded with spaces to size
// bytes to $BANYAN_RESULT.
func resultJob(name string, size int) *pb.JobSpec {
	const exp = `{"tasks":[]}`
	script := fmt.Sprintf(`printf '%s' > "$BANYAN_RESULT" && head -c %d /dev/zero | tr '\0' ' ' >> "$BANYAN_RESULT"`,
		exp, size-len(exp))
	return &pb.JobSpec{Name: name, Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"sh", "-c", script},
		Resources: &pb.Resources{CpuMillis: 100}, Retry: &pb.RetryPolicy{MaxAttempts: 1, InitialBackoffMs: 10}}}}
}

// Incident: a task writing a 4 MiB $BANYAN_RESULT made the agent's event
// message exceed the gRPC limit, and the agent reconnected forever. Now a
// result at the bound goes through, one over it fails its task with the
// size and the bound, and the agent goes on running other work.
func TestOversizedResultDoesNotWedgeTheAgent(t *testing.T) {
	s, c := startOneNodeFarm(t)
	defer s.Close()
	ctx := context.Background()
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{
		resultJob("at-bound", limits.ResultBytes), resultJob("over", limits.ResultBytes+1)}})
	if err != nil {
		t.Fatal(err)
	}
	at := waitJob(t, c, resp.Jobs[0].Id, 30*time.Second)
	if at.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("result at the bound: %v %s", at.State, at.Reason)
	}
	over := waitJob(t, c, resp.Jobs[1].Id, 30*time.Second)
	want := fmt.Sprintf("task result is %d bytes, more than the limit of %d", limits.ResultBytes+1, limits.ResultBytes)
	if over.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(over.Reason, want) {
		t.Fatalf("oversized result: %v %q, want failed naming %q", over.State, over.Reason, want)
	}
	after, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("after", "", 3, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, after.Jobs[0].Id, 20*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("agent stopped running work after an oversized result: %v %s", j.State, j.Reason)
	}
}

// Incident: 1,000 queued tasks with large argv for one agent made one task
// batch larger than the message limit, and the agent reconnected forever.
// Here the tasks of one batch add up to more than a whole message (17 MB
// against 16 MiB): the leader splits them and all run.
func TestThousandLargeTasksDispatchedInSplitBatches(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		MaxMessageSize: limits.MinMessageSize, Lease: 10 * time.Second}) // 1,000 processes starting on a small host can starve heartbeats
	defer s.Close()
	waitLeader(t, s)
	c := dialClient(t, addr)
	ctx := context.Background()
	arg := strings.Repeat("a", 17<<10)
	var ids []string
	for j := 0; j < 5; j++ { // 5 jobs of 200: each within the job bound
		spec := &pb.JobSpec{Name: fmt.Sprintf("wide-%d", j)}
		for i := 0; i < 200; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"true", arg},
				Resources: &pb.Resources{CpuMillis: 1, MemoryBytes: 1}})
		}
		resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.Jobs[0].Id)
	}
	startAgent(t, "a1", []string{addr}, 4) // all 1,000 fit at once: one pass, one batch to split
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range ids {
		for {
			j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: id})
			if err == nil && j.State == pb.JobState_JOB_STATE_SUCCEEDED {
				break
			}
			if err == nil && j.State == pb.JobState_JOB_STATE_FAILED {
				t.Fatalf("job %s failed: %s", id, j.Reason)
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s not done: %v %v", id, j.GetCounts(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Incident: a raw gRPC submission with no resources asked for zero and ran
// past the agent's capacity. The server now gives it the default ask, and
// refuses specs over their bounds and quantities that overflow, naming the
// problem.
func TestRawSubmitGetsDefaultAskAndBounds(t *testing.T) {
	s, c := startOneNodeFarm(t)
	defer s.Close()
	ctx := context.Background()
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: "bare",
		Tasks: []*pb.TaskSpec{{Command: []string{"true"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: resp.Jobs[0].Id, WithTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Tasks[0].Spec.Resources.Vector(); got != pool.DefaultAsk {
		t.Fatalf("raw submit without resources asks %v, want the default %v", got, pool.DefaultAsk)
	}
	env := strings.Repeat("x", limits.TaskSpecBytes)
	for name, c2 := range map[string]struct {
		task *pb.TaskSpec
		want string
	}{
		"env over the bound": {&pb.TaskSpec{Command: []string{"true"}, Env: map[string]string{"E": env}},
			fmt.Sprintf("more than the limit of %d", limits.TaskSpecBytes)},
		"cpu overflow": {&pb.TaskSpec{Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1 << 62}},
			"cpu is larger than"},
		"memory overflow": {&pb.TaskSpec{Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1, MemoryBytes: 1<<63 - 1}},
			"memory is larger than"},
	} {
		_, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: name, Tasks: []*pb.TaskSpec{c2.task}}}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c2.want) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", name, err, c2.want)
		}
	}
}
