package state

import (
	"fmt"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// Incident: a job submitted over raw gRPC (or a fan-out result) with no
// resources asked for zero, and 100 sleep tasks ran at once on a 2-CPU
// agent. The server gives such tasks the default ask, fallbacks included,
// so no more run at once than the agent holds.
func TestEmptyAskGetsTheDefault(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 2000, MemoryBytes: 8 << 30}, nil)
	spec := &pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"sleep", "1"},
		Fallback: &pb.TaskSpec{Command: []string{"sleep", "2"}, Resources: &pb.Resources{}}}}}
	for i := 1; i < 100; i++ {
		spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"sleep", "1"}})
	}
	f.submit(spec)
	t0 := f.s.task("job-1.0")
	if got := t0.Spec().Resources.Vector(); got != pool.DefaultAsk || t0.Ask() != pool.DefaultAsk {
		t.Fatalf("task ask %v, want the default %v", got, pool.DefaultAsk)
	}
	if got := t0.Spec().Fallback.Resources.Vector(); got != pool.DefaultAsk {
		t.Fatalf("fallback ask %v, want the default", got)
	}
	if placed := f.commitPlan(); len(placed) != int(2000/pool.DefaultAsk.CPUMillis) {
		t.Fatalf("placed %d tasks on a 2-CPU agent, want %d", len(placed), 2000/pool.DefaultAsk.CPUMillis)
	}

	// A fan-out result's tasks get the same default.
	f2 := newFSM(t, DefaultDefaults)
	f2.agentUp("a1", &pb.Resources{CpuMillis: 2000, MemoryBytes: 8 << 30}, nil)
	f2.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{oneTask("plan")}})
	f2.commitPlan()
	f2.finishWith("job-1.0", "succeeded", `{"tasks":[{"name":"a","command":["true"]},{"name":"b","command":["true"],"resources":{}}]}`)
	for _, name := range []string{"a", "b"} {
		if got := taskByName(t, f2.s, "job-1", name).Ask(); got != pool.DefaultAsk {
			t.Fatalf("fan-out task %s asks %v, want the default", name, got)
		}
	}
}

// The pool's max still bounds a defaulted ask like any other.
func TestDefaultAskHeldToPoolMax(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: &pb.Pool{Path: "tiny",
		Max: &pb.Resources{CpuMillis: 50, MemoryBytes: 1 << 30}, MaxSet: []string{"cpu", "memory"}}}}})
	r := f.s.Apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{
		Pool: "tiny", Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}}}}}})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "cpu") {
		t.Fatalf("default ask above the pool's max accepted: %v", r.Err)
	}
}

func TestValidateBudgetsAndQuantities(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	pools := f.s.Pools()
	task := func(mod func(*pb.TaskSpec)) *pb.JobSpec {
		ts := &pb.TaskSpec{Name: "t", Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 100}}
		mod(ts)
		return &pb.JobSpec{Name: "j", Pool: DefaultPool, Class: pb.JobClass_JOB_CLASS_BATCH, Tasks: []*pb.TaskSpec{ts}}
	}
	under := strings.Repeat("e", limits.TaskSpecBytes-16)
	cases := map[string]struct {
		spec *pb.JobSpec
		want string // "" = valid
	}{
		"env just under": {task(func(ts *pb.TaskSpec) { ts.Env = map[string]string{"BIG": under} }), ""},
		"env over": {task(func(ts *pb.TaskSpec) { ts.Env = map[string]string{"BIG": under + strings.Repeat("e", 32)} }),
			fmt.Sprintf("more than the limit of %d (1MiB)", limits.TaskSpecBytes)},
		"fallback over": {task(func(ts *pb.TaskSpec) {
			ts.Env = map[string]string{"A": under[:limits.TaskSpecBytes/2]}
			ts.Fallback = &pb.TaskSpec{Name: "f", Command: []string{"y"}, Resources: &pb.Resources{CpuMillis: 1},
				Env: map[string]string{"B": under[:limits.TaskSpecBytes/2]}}
		}), "more than the limit"},
		"workdir counts": {task(func(ts *pb.TaskSpec) { ts.Workdir = under + strings.Repeat("w", 32) }), "more than the limit"},
		"zero ask":       {task(func(ts *pb.TaskSpec) { ts.Resources = &pb.Resources{} }), "the ask is zero"},
		"cpu overflow":   {task(func(ts *pb.TaskSpec) { ts.Resources.CpuMillis = 1 << 62 }), "cpu is larger than"},
		"memory overflow": {task(func(ts *pb.TaskSpec) { ts.Resources.MemoryBytes = 1<<63 - 1 }),
			"memory is larger than"},
		"gpu memory overflow": {task(func(ts *pb.TaskSpec) { ts.Resources.GpuMemoryBytes = pool.MaxQuantity + 1 }),
			"gpu_memory is larger than"},
		"nvenc negative": {task(func(ts *pb.TaskSpec) { ts.Resources.Nvenc = -1 }), "nvenc is negative"},
	}
	for name, c := range cases {
		err := ValidateJob(c.spec, pools)
		if c.want == "" && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err %v, want one containing %q", name, err, c.want)
		}
	}

	// A job over its bound per submission names its size and the bound.
	big := &pb.JobSpec{Name: "big", Pool: DefaultPool, Class: pb.JobClass_JOB_CLASS_BATCH}
	for i := 0; i < 9; i++ {
		big.Tasks = append(big.Tasks, &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Command: []string{"x", under}, Resources: &pb.Resources{CpuMillis: 1}})
	}
	if err := ValidateJob(big, pools); err == nil || !strings.Contains(err.Error(), "job spec is") ||
		!strings.Contains(err.Error(), "8MiB") {
		t.Fatalf("oversized job: %v", err)
	}
}

// A fan-out result is held to the same bounds as a submission: a task over
// the spec bound, a zero or overflowing ask, or a result over ResultBytes
// fails the task that wrote it, with the reason.
func TestExpansionHeldToSubmissionBounds(t *testing.T) {
	under := strings.Repeat("e", limits.TaskSpecBytes)
	cases := map[string]struct{ result, want string }{
		"spec over":    {`{"tasks":[{"name":"a","command":["true"],"env":{"E":"` + under + `"}}]}`, "more than the limit"},
		"zero ask":     {`{"tasks":[{"name":"a","command":["true"],"resources":{"cpu_millis":"0","gpus":"0"}}]}`, ""},
		"cpu overflow": {`{"tasks":[{"name":"a","command":["true"],"resources":{"cpu_millis":"4611686018427387904"}}]}`, "cpu is larger than"},
		"result over":  {`{"tasks":[]}` + strings.Repeat(" ", limits.ResultBytes), "task result is"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFSM(t, DefaultDefaults)
			f.agentUp("a1", &pb.Resources{CpuMillis: 8000}, nil)
			job := &pb.JobSpec{Tasks: []*pb.TaskSpec{oneTask("plan")}}
			job.Tasks[0].Retry = &pb.RetryPolicy{MaxAttempts: 1}
			f.submit(job)
			f.commitPlan()
			f.finishWith("job-1.0", "succeeded", c.result)
			j := f.s.JobView("job-1", true)
			if c.want == "" {
				if j.Counts.Total != 2 {
					t.Fatalf("all-zero ask in a fan-out not defaulted: %v %q", j.State, j.Reason)
				}
				return
			}
			if j.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.Reason, c.want) || j.Counts.Total != 1 {
				t.Fatalf("job %v %q (tasks %d), want failed naming %q", j.State, j.Reason, j.Counts.Total, c.want)
			}
		})
	}
}

// Incident: tasks with many lost attempts grew records without bound. A
// task keeps the first and the latest AttemptHistory-1 records; numbers
// keep counting, and the current attempt still takes its events.
func TestAttemptHistoryCapped(t *testing.T) {
	d := DefaultDefaults
	d.MaxLostAttempts = 1000 // this test loses attempts on purpose; the limit has its own test
	f := newFSM(t, d)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}})
	const lost = 40
	for i := 0; i < lost; i++ {
		if got := f.commitPlan(); len(got) != 1 {
			t.Fatalf("round %d: placed %v", i, got)
		}
		f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: "a1", Reason: "gone"}}})
		f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
		f.now += 60_000 // past the lost attempts' backoff
	}
	f.commitPlan()
	tk := f.s.task("job-1.0")
	if tk.Attempt() != lost+1 {
		t.Fatalf("attempt %d, want %d", tk.Attempt(), lost+1)
	}
	f.finish("job-1.0", "succeeded", 0)
	at := tk.PB.Attempts
	if len(at) != limits.AttemptHistory || at[0].Number != 1 || at[1].Number != lost+1-(limits.AttemptHistory-2) ||
		at[len(at)-1].Number != lost+1 || at[len(at)-1].Outcome != "succeeded" {
		t.Fatalf("%d records kept: first %d, second %d, last %d %q", len(at), at[0].Number, at[1].Number,
			at[len(at)-1].Number, at[len(at)-1].Outcome)
	}
	if dropped := int(at[len(at)-1].Number) - len(at); dropped != lost+1-limits.AttemptHistory {
		t.Fatalf("dropped %d", dropped)
	}
	if j := f.s.JobView("job-1", false); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v", j.State)
	}
}

// Whatever an agent sends (an older agent, one with a larger message
// size), an attempt's error and tails are held to fixed bounds when applied.
func TestEventPayloadBoundedAtApply(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Retry: &pb.RetryPolicy{MaxAttempts: 1}}}})
	f.commitPlan()
	huge := strings.Repeat("z", 2<<20)
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 1, Kind: "finished", Outcome: "failed",
			ExitCode: 1, Error: huge, StdoutTail: huge, StderrTail: huge, UnixMs: f.now}}}}}}})
	a := f.s.task("job-1.0").PB.Attempts[0]
	if len(a.Error) > limits.ErrorBytes || len(a.StdoutTail) > limits.MaxTailBytes || len(a.StderrTail) > limits.MaxTailBytes ||
		!strings.Contains(a.StdoutTail, "bytes cut]") {
		t.Fatalf("attempt kept %d/%d/%d bytes", len(a.Error), len(a.StdoutTail), len(a.StderrTail))
	}
}
