package state

import (
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// TestLostAttemptsHaveALimit: a task whose worker keeps dying (a lost
// outcome, or one this version does not know) uses no retry, is queued at
// once twice and then after a doubling backoff, and fails its job with the
// reason at the limit, instead of being run forever.
func TestLostAttemptsHaveALimit(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "crasher", Command: []string{"x"}}}})
	wantBackoff := []int64{0, 0, 1000, 2000, 4000, 8000, 16000, 32000, 60000}
	for i := range int(DefaultDefaults.MaxLostAttempts) {
		if got := f.commitPlan(); len(got) != 1 {
			t.Fatalf("loss %d: placed %v", i+1, got)
		}
		outcome := "lost"
		if i%2 == 1 {
			outcome = "exploded" // an outcome this version does not know
		}
		f.finish("job-1.0", outcome, 0)
		tk := f.s.task("job-1.0")
		if tk.PB.RetriesUsed != 0 {
			t.Fatalf("loss %d used a retry", i+1)
		}
		if int(tk.PB.LostAttempts) != i+1 {
			t.Fatalf("loss %d: lost_attempts %d", i+1, tk.PB.LostAttempts)
		}
		if i+1 == int(DefaultDefaults.MaxLostAttempts) {
			break
		}
		wait := int64(0)
		if tk.PB.NotBeforeUnixMs > 0 {
			wait = tk.PB.NotBeforeUnixMs - f.now
		}
		if i < len(wantBackoff) && wait != wantBackoff[i] {
			t.Fatalf("after loss %d: backoff %d ms, want %d", i+1, wait, wantBackoff[i])
		}
		if wait > 0 {
			if got := f.commitPlan(); len(got) != 0 {
				t.Fatalf("after loss %d: placed during its backoff", i+1)
			}
		}
		f.now += wait
	}
	j := f.s.JobView("job-1", true)
	if j.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.Reason, "lost 10 times") || !strings.Contains(j.Reason, "agent_lost") {
		t.Fatalf("job %v: %q", j.State, j.Reason)
	}
	// A preemption is by design: it never counts.
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"y"}}}})
	f.commitPlan()
	tk := f.s.task("job-2.0")
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: "job-2.0", Attempt: tk.Attempt(), Kind: "finished", Outcome: "preempted", UnixMs: f.now}}}}}}})
	if tk.PB.LostAttempts != 0 || tk.PB.State != pb.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("preempted: lost %d, state %v", tk.PB.LostAttempts, tk.PB.State)
	}
}
