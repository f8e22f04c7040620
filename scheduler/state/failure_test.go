package state

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// TestFailureClassDecidesRetry: one failed attempt of a task with retries
// left, for each exit code. A permanent class fails the job at once and
// names the class; the others are retried. A log entry written before
// classes (classify=false) retries every exit code, as it did then.
func TestFailureClassDecidesRetry(t *testing.T) {
	cases := []struct {
		exit     int32
		classify bool
		class    string
		retried  bool
	}{
		{failure.ExitBadInput, true, failure.BadInput, false},
		{failure.ExitDecodeError, true, failure.DecodeError, false},
		{failure.ExitVerificationFailed, true, failure.VerificationFailed, false},
		{failure.ExitEncoderError, true, failure.EncoderError, true},
		{1, true, failure.Failed, true},
		{failure.ExitBadInput, false, failure.Failed, true},
		{failure.ExitVerificationFailed, false, failure.Failed, true},
	}
	for _, c := range cases {
		f := newFSM(t, DefaultDefaults)
		f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
		f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "enc-1080p-3", Command: []string{"x"},
			Retry: &pb.RetryPolicy{MaxAttempts: 5}}}})
		f.commitPlan()
		tk := f.s.task("job-1.0")
		f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
			AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: tk.PB.Id, Attempt: 1, Kind: "finished", Outcome: "failed",
				ExitCode: c.exit, Error: "boom", UnixMs: f.now}}}}, ClassifyExitCodes: c.classify}}})
		j := f.s.JobView("job-1", false)
		if got := tk.PB.Attempts[0].FailureClass; got != c.class {
			t.Errorf("exit %d classify=%v: class %q, want %q", c.exit, c.classify, got, c.class)
		}
		if tk.PB.RetriesUsed != 1 {
			t.Errorf("exit %d classify=%v: retries used %d, want 1", c.exit, c.classify, tk.PB.RetriesUsed)
		}
		if c.retried {
			if tk.PB.State != pb.TaskState_TASK_STATE_QUEUED || j.State == pb.JobState_JOB_STATE_FAILED {
				t.Errorf("exit %d classify=%v: task %v, job %v %q; want it retried", c.exit, c.classify, tk.PB.State, j.State, j.Reason)
			}
			continue
		}
		want := "task enc-1080p-3 failed (" + c.class + ") after 1 attempt: boom"
		if tk.PB.State != pb.TaskState_TASK_STATE_FAILED || j.State != pb.JobState_JOB_STATE_FAILED || j.Reason != want {
			t.Errorf("exit %d: task %v, job %v %q; want failed at once with %q", c.exit, tk.PB.State, j.State, j.Reason, want)
		}
	}
}

// TestPermanentFailureHandsOverToFallback: a decode error on a task with a
// fallback starts the fallback at once; the failed task counts as replaced,
// not failed, and the job succeeds with the fallback.
func TestPermanentFailureHandsOverToFallback(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("gpu", &pb.Resources{CpuMillis: 4000, Nvenc: 2}, nil)
	enc := gpuEncode("enc", 0)
	enc.Retry = &pb.RetryPolicy{MaxAttempts: 3}
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{enc, oneTask("join", "enc")}})
	f.commitPlan()
	f.finish("job-1.0", "failed", failure.ExitDecodeError)
	orig := f.s.task("job-1.0")
	if orig.PB.ReplacedBy == "" || len(orig.PB.Attempts) != 1 {
		t.Fatalf("decode error: replaced_by %q after %d attempts; want the fallback after 1", orig.PB.ReplacedBy,
			len(orig.PB.Attempts))
	}
	if c := f.s.JobView("job-1", false).Counts; c.Replaced != 1 || c.Failed != 0 {
		t.Fatalf("counts %v: want 1 replaced, 0 failed", c)
	}
	f.commitPlan()
	f.finish(orig.PB.ReplacedBy, "succeeded", 0)
	f.commitPlan()
	f.finish("job-1.1", "succeeded", 0)
	j := f.s.JobView("job-1", false)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED || j.Counts.Succeeded != 2 || j.Counts.Replaced != 1 || j.Counts.Failed != 0 {
		t.Fatalf("job %v %q counts %v", j.State, j.Reason, j.Counts)
	}
}

// TestRestoreRecountsOldSnapshot: a snapshot written before the replaced
// count existed counts a replaced task as failed; restoring it recounts.
func TestRestoreRecountsOldSnapshot(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("gpu", &pb.Resources{CpuMillis: 4000, Nvenc: 2}, nil)
	enc := gpuEncode("enc", 0)
	enc.Retry = &pb.RetryPolicy{MaxAttempts: 1}
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{enc, oneTask("join", "enc")}})
	f.commitPlan()
	f.finish("job-1.0", "failed", 1)
	var buf bytes.Buffer
	if err := f.s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	old := rewriteSnapshot(t, buf.Bytes(), func(rec *fsmpb.SnapshotRecord) {
		if c := rec.GetJob().GetJob().GetCounts(); c != nil {
			c.Failed, c.Replaced = c.Failed+c.Replaced, 0 // as the old Apply kept them
		}
	})
	r, err := ReadSnapshot(old, f.s.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if got := r.JobView("job-1", false).Counts; got.Replaced != 1 || got.Failed != 0 || got.Queued != 1 || got.Waiting != 1 {
		t.Fatalf("restored counts %v: want 1 replaced, 0 failed, 1 queued, 1 waiting", got)
	}
	if errs := checkInvariants(r, true); len(errs) > 0 {
		t.Fatalf("restored state: %s", strings.Join(errs, "\n"))
	}
}
