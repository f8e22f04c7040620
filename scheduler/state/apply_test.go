package state

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
	"google.golang.org/protobuf/encoding/protodelim"
)

// fsm wraps a State with helpers that fail the test on errors and check
// the invariants after every command.
type fsm struct {
	t   *testing.T
	s   *State
	now int64
}

func newFSM(t *testing.T, d Defaults) *fsm { return &fsm{t: t, s: New(d), now: 1000} }

func (f *fsm) apply(c *fsmpb.Command) *Result {
	f.t.Helper()
	c.NowUnixMs = f.now
	r := f.s.Apply(c)
	if errs := checkInvariants(f.s, true); len(errs) > 0 {
		f.t.Fatalf("invariants broken:\n  %s", strings.Join(errs, "\n  "))
	}
	return r
}

func (f *fsm) agentUp(id string, cap *pb.Resources, labels map[string]string) {
	f.t.Helper()
	if cap != nil && cap.MemoryBytes == 0 {
		// Tasks that name no resources ask for pool.DefaultAsk, memory
		// included: agents here have memory enough for any test.
		cap.MemoryBytes = 1 << 40
	}
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
		AgentId: id, Fingerprint: &pb.Fingerprint{Capacity: cap, Labels: labels}}}})
}

func (f *fsm) submit(specs ...*pb.JobSpec) *Result {
	f.t.Helper()
	r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: specs}}})
	if r.Err != nil {
		f.t.Fatalf("submit: %v", r.Err)
	}
	return r
}

func (f *fsm) commitPlan() []*fsmpb.Assignment {
	f.t.Helper()
	plan := f.s.Plan(f.now, DefaultPlanLimits).Assignments
	r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: plan}}})
	return r.Assigned
}

func (f *fsm) finish(taskID, outcome string, exit int32) *Result {
	f.t.Helper()
	tk := f.s.task(taskID)
	return f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: tk.AgentID(), Events: []*pb.TaskEvent{{TaskId: taskID, Attempt: tk.Attempt(), Kind: "finished",
			Outcome: outcome, ExitCode: exit, UnixMs: f.now}}}}, ClassifyExitCodes: true}}})
}

// The backoff doubles up to the ceiling and stays there however many
// retries a task has used; the shift must not overflow back to zero.
func TestRetryBackoffStaysAtCeiling(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000},
		Retry: &pb.RetryPolicy{MaxAttempts: 100, InitialBackoffMs: 1000, MaxBackoffMs: 60000}}}})
	for n := int64(1); n < 100; n++ {
		if got := f.commitPlan(); len(got) != 1 {
			t.Fatalf("retry %d: placed %v", n, got)
		}
		f.finish("job-1.0", "failed", 1)
		tk := f.s.task("job-1.0")
		want := int64(60000)
		if n <= 6 {
			want = 1000 << (n - 1)
		}
		if got := tk.PB.NotBeforeUnixMs - f.now; got != want {
			t.Fatalf("after failure %d: backoff %dms, want %dms", n, got, want)
		}
		if plan := f.s.Plan(f.now+want-1, DefaultPlanLimits).Assignments; len(plan) != 0 {
			t.Fatalf("after failure %d: placed before its backoff ended: %v", n, plan)
		}
		f.now += want
	}
	f.commitPlan()
	f.finish("job-1.0", "failed", 1)
	j := f.s.JobView("job-1", false)
	if j.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.Reason, "failed after 100 attempts") {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}
}

// A huge initial backoff is capped, not wrapped to a negative number.
func TestRetryBackoffHuge(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
	const big = int64(1) << 61
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"},
		Retry: &pb.RetryPolicy{MaxAttempts: 5, InitialBackoffMs: big, MaxBackoffMs: big + 1}}}})
	for n := 1; n <= 3; n++ {
		f.commitPlan()
		f.finish("job-1.0", "failed", 1)
		got := f.s.task("job-1.0").PB.NotBeforeUnixMs - f.now
		want := big
		if n > 1 {
			want = big + 1
		}
		if got != want {
			t.Fatalf("failure %d: backoff %d, want %d", n, got, want)
		}
		f.now += got
	}
}

// "==" passes validation as a spelling of "="; such a task must be
// placeable, not stuck forever behind an "invalid constraint".
func TestDoubleEqualsConstraintPlaces(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 4000}, map[string]string{"zone": "a"})
	f.agentUp("a2", &pb.Resources{CpuMillis: 4000}, map[string]string{"zone": "b"})
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000},
		Constraints: []*pb.Constraint{{Label: "zone", Op: "==", Value: "b"}}}}})
	if v := f.s.TaskView("job-1.0"); v.BlockedReason != "" {
		t.Fatalf("blocked: %s", v.BlockedReason)
	}
	got := f.commitPlan()
	if len(got) != 1 || got[0].AgentId != "a2" {
		t.Fatalf("assigned %v, want job-1.0 on a2", got)
	}
}

// Apply re-checks the pool max: of two plans made against the same state,
// the second must not push the pool over its max when it commits.
func TestStalePlanRespectsPoolMax(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true,
		Pool: &pb.Pool{Path: "capped", Max: &pb.Resources{CpuMillis: 2000}, MaxSet: []string{"cpu"}}}}})
	f.agentUp("a1", &pb.Resources{CpuMillis: 16000}, nil)
	f.submit(&pb.JobSpec{Pool: "capped", Tasks: []*pb.TaskSpec{
		{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 2000}},
		{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 2000}},
	}})
	first := f.s.Plan(f.now, DefaultPlanLimits).Assignments
	if len(first) != 1 {
		t.Fatalf("plan %v", first)
	}
	// The second plan leaves out the first task, as if the first plan's
	// entry had committed while the second was planned on an older state.
	r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: first}}})
	if len(r.Assigned) != 1 {
		t.Fatalf("first plan: assigned %v", r.Assigned)
	}
	stale := []*fsmpb.Assignment{{TaskId: "job-1.1", Attempt: 1, AgentId: "a1"}}
	r = f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: stale}}})
	if len(r.Assigned) != 0 {
		t.Fatalf("stale assignment over the pool max took effect: %v", r.Assigned)
	}

	// Within one Assign entry the check counts the earlier assignments.
	f.finish("job-1.0", "succeeded", 0)
	f.submit(&pb.JobSpec{Pool: "capped", Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 2000}}}})
	both := []*fsmpb.Assignment{{TaskId: "job-1.1", Attempt: 1, AgentId: "a1"}, {TaskId: "job-2.0", Attempt: 1, AgentId: "a1"}}
	r = f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: both}}})
	if len(r.Assigned) != 1 || r.Assigned[0].TaskId != "job-1.1" {
		t.Fatalf("assigned %v, want only job-1.1", r.Assigned)
	}
}

// Stale, foreign and malformed assignments and events change nothing.
func TestApplyIgnoresStaleInput(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 2000}, nil)
	f.agentUp("a2", &pb.Resources{CpuMillis: 2000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 2000}}}})
	for _, a := range []*fsmpb.Assignment{
		{TaskId: "job-1.0", Attempt: 2, AgentId: "a1"},   // wrong attempt
		{TaskId: "job-9.0", Attempt: 1, AgentId: "a1"},   // unknown task
		{TaskId: "job-1.0", Attempt: 1, AgentId: "nope"}, // unknown agent
	} {
		if r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: []*fsmpb.Assignment{a}}}}); len(r.Assigned) != 0 {
			t.Fatalf("%v took effect", a)
		}
	}
	// Two assignments of the same attempt in one entry: only the first.
	r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: []*fsmpb.Assignment{
		{TaskId: "job-1.0", Attempt: 1, AgentId: "a1"}, {TaskId: "job-1.0", Attempt: 1, AgentId: "a2"}}}}})
	if len(r.Assigned) != 1 || r.Assigned[0].AgentId != "a1" {
		t.Fatalf("assigned %v", r.Assigned)
	}
	before := f.s.JobView("job-1", true)
	for _, ae := range []*fsmpb.AgentEvents{
		{AgentId: "a2", Events: []*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 1, Kind: "finished", Outcome: "succeeded"}}},
		{AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 2, Kind: "finished", Outcome: "succeeded"}}},
		{AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: "job-7.0", Attempt: 1, Kind: "finished", Outcome: "succeeded"}}},
		{AgentId: "ghost", Events: []*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 1, Kind: "started"}}},
		{AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 1, Kind: "bogus"}}},
	} {
		f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{ae}}}})
		if after := f.s.JobView("job-1", true); !equalJobs(before, after) {
			t.Fatalf("event %v changed the job:\n%v\n%v", ae, before, after)
		}
	}
	if r := f.apply(&fsmpb.Command{}); !errors.Is(r.Err, ErrUnknownCommand) {
		t.Fatalf("empty command: %v", r.Err)
	}
	if r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-9"}}}); !errors.Is(r.Err, ErrJobNotFound) {
		t.Fatalf("cancel unknown job: %v", r.Err)
	}
	if r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: DefaultPool}}}); !errors.Is(r.Err, ErrPoolBusy) {
		t.Fatalf("delete busy pool: %v", r.Err)
	}
}

func equalJobs(a, b *pb.Job) bool { return a.String() == b.String() }

// EventChanges, which lets the leader acknowledge an agent's resent
// events without a log entry, says false exactly for the events whose
// apply leaves the job as it was.
func TestEventChangesMatchesApply(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 2000}, nil)
	f.agentUp("a2", &pb.Resources{CpuMillis: 2000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 2000}}}})
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: []*fsmpb.Assignment{
		{TaskId: "job-1.0", Attempt: 1, AgentId: "a1"}}}}})
	for _, step := range []struct {
		agent string
		ev    *pb.TaskEvent
		want  bool
	}{
		{"a2", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "started", UnixMs: 10}, false},                        // another agent
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 2, Kind: "started", UnixMs: 10}, false},                        // an attempt never placed
		{"a1", &pb.TaskEvent{TaskId: "job-9.0", Attempt: 1, Kind: "started", UnixMs: 10}, false},                        // no such task
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "bogus", UnixMs: 10}, false},                          // no such kind
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "started", UnixMs: 10}, true},                         // the start
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "started", UnixMs: 10}, false},                        // its copy
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "started", UnixMs: 12}, true},                         // a start at another time
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "finished", UnixMs: 20, Outcome: "succeeded"}, true},  // the end
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "finished", UnixMs: 20, Outcome: "succeeded"}, false}, // its copy
		{"a1", &pb.TaskEvent{TaskId: "job-1.0", Attempt: 1, Kind: "started", UnixMs: 12}, false},                        // a start after the end
	} {
		got := f.s.EventChanges(step.agent, step.ev)
		before := f.s.JobView("job-1", true)
		f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{
			Agents: []*fsmpb.AgentEvents{{AgentId: step.agent, Events: []*pb.TaskEvent{step.ev}}}}}})
		changed := !equalJobs(before, f.s.JobView("job-1", true))
		if got != step.want || changed != step.want {
			t.Fatalf("%s %v: EventChanges %v, the job changed %v; want %v", step.agent, step.ev, got, changed, step.want)
		}
	}
}

// Plan never assigns more than MaxAssign tasks nor looks past MaxScan.
func TestPlanLimits(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 100000}, nil)
	var tasks []*pb.TaskSpec
	for i := 0; i < 10; i++ {
		tasks = append(tasks, &pb.TaskSpec{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}})
	}
	// The first task can never be placed; it uses up one scan.
	tasks[0].Resources.CpuMillis = 1000000
	f.submit(&pb.JobSpec{Tasks: tasks})
	if got := f.s.Plan(f.now, PlanLimits{MaxAssign: 3, MaxScan: 100}).Assignments; len(got) != 3 || got[0].TaskId != "job-1.1" {
		t.Fatalf("MaxAssign 3: %v", got)
	}
	if got := f.s.Plan(f.now, PlanLimits{MaxAssign: 100, MaxScan: 4}).Assignments; len(got) != 3 || got[2].TaskId != "job-1.3" {
		t.Fatalf("MaxScan 4: %v", got)
	}
	if got := f.s.Plan(f.now, DefaultPlanLimits).Assignments; len(got) != 9 {
		t.Fatalf("default limits: %v", got)
	}
}

func TestReadSnapshotRejectsBadInput(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 2000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}}, {Command: []string{"y"}}}})
	var buf bytes.Buffer
	if err := f.s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if _, err := ReadSnapshot(bytes.NewReader(full[:len(full)-3]), DefaultDefaults); err == nil {
		t.Fatal("truncated snapshot read without error")
	}

	var bad bytes.Buffer
	if _, err := protodelim.MarshalTo(&bad, &fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Header{
		Header: &fsmpb.SnapshotHeader{Version: 99}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSnapshot(&bad, DefaultDefaults); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("wrong version: %v", err)
	}

	var orphan bytes.Buffer
	for _, rec := range []*fsmpb.SnapshotRecord{
		{Rec: &fsmpb.SnapshotRecord_Header{Header: &fsmpb.SnapshotHeader{Version: snapshotVersion}}},
		{Rec: &fsmpb.SnapshotRecord_Task{Task: &pb.Task{Id: "job-1.0", JobId: "job-1"}}},
	} {
		if _, err := protodelim.MarshalTo(&orphan, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ReadSnapshot(&orphan, DefaultDefaults); err == nil || !strings.Contains(err.Error(), "outside its job") {
		t.Fatalf("orphan task: %v", err)
	}

	// An empty state round-trips, default pool included.
	s2, err := roundTrip(New(DefaultDefaults))
	if err != nil {
		t.Fatal(err)
	}
	if diffs := compareStates(New(DefaultDefaults), s2, 0); len(diffs) > 0 {
		t.Fatal(strings.Join(diffs, "\n"))
	}
}

// Replaying the same commands on two states gives the same state: Apply
// depends on nothing but the commands.
func TestApplyIsDeterministic(t *testing.T) {
	run := func() *State {
		h := newHarness()
		for _, c := range []struct {
			cmd   string
			input []string
		}{
			{"agent-up id=a1 cpu=4 memory=8Gi labels=zone=a", nil},
			{"agent-up id=a2 cpu=4 memory=8Gi gpu=1 labels=zone=b", nil},
			{"submit name=x", []string{"task count=6 cpu=1", "task name=g gpu=1 after=t0"}},
			{"commit-plan", nil},
			{"event task=job-1.0,job-1.1 outcome=succeeded", nil},
			{"event task=job-1.2 outcome=failed exit=1", nil},
			{"agent-down id=a2", nil},
			{"now +5000", nil},
			{"commit-plan", nil},
		} {
			if _, err := h.run(c.cmd, c.input); err != nil {
				t.Fatalf("%s: %v", c.cmd, err)
			}
		}
		return h.s
	}
	a, b := run(), run()
	if diffs := compareStates(a, b, 10000); len(diffs) > 0 {
		t.Fatal(strings.Join(diffs, "\n"))
	}
}

func TestValidateGPUs(t *testing.T) {
	for _, tc := range []struct {
		gpus []*pb.GPU
		want string
	}{
		{[]*pb.GPU{{Uuid: "GPU-a"}, {Uuid: "GPU-b"}, {}}, ""},
		{[]*pb.GPU{{Uuid: "GPU-a"}, {Index: 1, Uuid: "GPU-a"}}, "GPU 1 (entry 1): UUID GPU-a listed twice"},
		{[]*pb.GPU{{Uuid: "GPU-a", MigEnabled: true, Mig: []*pb.MIGInstance{{Uuid: "GPU-a"}}}}, "listed twice"},
		{[]*pb.GPU{{Uuid: "GPU-a", MemoryBytes: -1}}, "negative memory"},
		{[]*pb.GPU{{Uuid: "GPU-a", EncoderSessions: -3}}, "negative NVENC sessions"},
		{make([]*pb.GPU, MaxGPUs+1), "more than the limit"},
	} {
		err := ValidateGPUs(tc.gpus)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateGPUs(%d GPUs) = %v, want %q", len(tc.gpus), err, tc.want)
		}
	}
}

// A submit entry's trace ids go to its jobs, and an assignment names the
// attempt's run span; a job past the ids (or an entry written before
// traces) has no trace.
func TestSubmitRecordsTraceIDs(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 4000}, nil)
	tr, sp := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	spec := func() *pb.JobSpec { return &pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}} }
	r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{
		Jobs: []*pb.JobSpec{spec(), spec()}, TraceIds: []string{tr}, TraceSpanIds: []string{sp}}}})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	a, b := f.s.JobView(r.Jobs[0].Id, false), f.s.JobView(r.Jobs[1].Id, false)
	if a.TraceId != tr || a.TraceSpanId != sp || b.TraceId != "" || b.TraceSpanId != "" {
		t.Fatalf("trace ids: a %q/%q, b %q/%q", a.TraceId, a.TraceSpanId, b.TraceId, b.TraceSpanId)
	}
	f.commitPlan()
	ta := f.s.AssignmentFor("job-1.0", 1, "a1")
	if want := jobtrace.RunTraceparent(tr, "job-1.0", 1); ta == nil || want == "" || ta.Traceparent != want {
		t.Fatalf("assignment %v, want traceparent %q", ta, want)
	}
	if tb := f.s.AssignmentFor("job-2.0", 1, "a1"); tb == nil || tb.Traceparent != "" {
		t.Fatalf("assignment of a job without a trace: %v", tb)
	}
}
