package server_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
)

// TestExitCodeClassifiesFailure runs tasks through a real server and agent:
// a task that exits 65 (bad input) fails its job after one attempt with the
// class in the reason, though it has retries left; a task that exits 66
// (decode error) hands over to its fallback at once, and the job succeeds
// with the task counted as replaced, not failed.
func TestExitCodeClassifiesFailure(t *testing.T) {
	s, c := startOneNodeFarm(t)
	defer s.Close()
	retry := &pb.RetryPolicy{MaxAttempts: 3, InitialBackoffMs: 50}
	bad := &pb.JobSpec{Name: "bad", Tasks: []*pb.TaskSpec{{Name: "probe", Retry: retry,
		Command: []string{"sh", "-c", "echo 'not a media file' >&2; exit 65"}}}}
	fallback := &pb.JobSpec{Name: "fallback", Tasks: []*pb.TaskSpec{
		{Name: "enc", Retry: retry, Command: []string{"sh", "-c", "echo 'decode errors' >&2; exit 66"},
			Fallback: &pb.TaskSpec{Name: "enc-cpu", Command: []string{"true"}}},
		{Name: "join", Command: []string{"true"}, After: []string{"enc"}}}}
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{bad, fallback}})
	if err != nil {
		t.Fatal(err)
	}

	j := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second)
	want := "task probe failed (bad_input) after 1 attempt: exit status 65: not a media file"
	if j.State != pb.JobState_JOB_STATE_FAILED || j.Reason != want {
		t.Fatalf("bad input: job %v %q, want failed %q", j.State, j.Reason, want)
	}
	if a := j.Tasks[0].Attempts; len(a) != 1 || a[0].FailureClass != failure.BadInput {
		t.Fatalf("bad input: attempts %v, want one of class %s", a, failure.BadInput)
	}

	j = waitJob(t, c, resp.Jobs[1].Id, 20*time.Second)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED || j.Counts.Replaced != 1 || j.Counts.Failed != 0 || j.Counts.Succeeded != 2 {
		t.Fatalf("fallback: job %v %q counts %v, want succeeded with 1 replaced", j.State, j.Reason, j.Counts)
	}
	enc := j.Tasks[0]
	if len(enc.Attempts) != 1 || enc.Attempts[0].FailureClass != failure.DecodeError || enc.ReplacedBy == "" {
		t.Fatalf("fallback: task %s attempts %v replaced_by %q", enc.Name, enc.Attempts, enc.ReplacedBy)
	}
	if fb := j.Tasks[2]; fb.Id != enc.ReplacedBy || fb.Name != "enc-cpu" || fb.State != pb.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("fallback: replaced by %q, third task %s %s %v", enc.ReplacedBy, fb.Id, fb.Name, fb.State)
	}
}
