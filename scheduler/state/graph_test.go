package state

import (
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/proto"
)

// finishWith reports a task's current attempt finished with a result, in
// an entry as a leader proposes it: marked when the result holds arrays.
func (f *fsm) finishWith(taskID, outcome string, result string) *Result {
	f.t.Helper()
	return f.finishEntry(taskID, outcome, result, ResultHasArrays([]byte(result)))
}

// finishEntry is finishWith with the entry's result_arrays as given.
func (f *fsm) finishEntry(taskID, outcome string, result string, arrays bool) *Result {
	f.t.Helper()
	tk := f.s.task(taskID)
	return f.apply(&fsmpb.Command{ResultArrays: arrays, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: tk.AgentID(), Events: []*pb.TaskEvent{{TaskId: taskID, Attempt: tk.Attempt(), Kind: "finished",
			UnixMs: f.now, Outcome: outcome, Result: []byte(result)}}}}, ClassifyExitCodes: true}}})
}

func taskByName(t *testing.T, s *State, jobID, name string) *Task {
	t.Helper()
	for _, id := range s.job(jobID).TaskIDs() {
		if s.task(id).PB.Name == name {
			return s.task(id)
		}
	}
	t.Fatalf("job %s has no task %s", jobID, name)
	return nil
}

func oneTask(name string, after ...string) *pb.TaskSpec {
	return &pb.TaskSpec{Name: name, Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 100}, After: after}
}

// planAndPublish is a state with one agent and job-1, whose "plan" task
// (job-1.0) is placed and whose "publish" step waits for it.
func planAndPublish(t *testing.T) *fsm {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 8000, MemoryBytes: 1 << 30}, nil)
	f.submit(&pb.JobSpec{Name: "enc", Tasks: []*pb.TaskSpec{oneTask("plan"), oneTask("publish", "plan")}})
	f.commitPlan()
	return f
}

// TestExpansionFansOutAndJoins: a plan task returns three chunk tasks and a
// join that waits for them and for an existing "publish" step's input.
func TestExpansionFansOutAndJoins(t *testing.T) {
	f := planAndPublish(t)
	result := `{"tasks":[
	  {"name":"c0","command":["true"],"after":["plan"]},
	  {"name":"c1","command":["true"]},
	  {"name":"c2","command":["true"]},
	  {"name":"join","command":["true"],"after":["c0","c1","c2"]}]}`
	f.finishWith("job-1.0", "succeeded", result)
	j := f.s.JobView("job-1", true)
	if j.Counts.Total != 6 || j.State == pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("after expansion: %d tasks, state %v", j.Counts.Total, j.State)
	}
	if got := f.commitPlan(); len(got) != 4 { // publish, c0, c1, c2; join waits
		t.Fatalf("placed %d tasks, want 4: %v", len(got), got)
	}
	for _, n := range []string{"publish", "c0", "c1"} {
		f.finishWith(taskByName(t, f.s, "job-1", n).PB.Id, "succeeded", "")
	}
	if join := taskByName(t, f.s, "job-1", "join"); join.PB.State != pb.TaskState_TASK_STATE_WAITING {
		t.Fatalf("join is %v before its last input finished", join.PB.State)
	}
	f.finishWith(taskByName(t, f.s, "job-1", "c2").PB.Id, "succeeded", "")
	f.commitPlan()
	f.finishWith(taskByName(t, f.s, "job-1", "join").PB.Id, "succeeded", "")
	if j := f.s.JobView("job-1", false); j.State != pb.JobState_JOB_STATE_SUCCEEDED || j.Counts.Succeeded != 6 {
		t.Fatalf("job %v, %d succeeded", j.State, j.Counts.Succeeded)
	}
	checkSnapshotRoundTrip(t, f.s)
}

// TestBadExpansionFailsTheTask: an invalid result fails the task that
// returned it, with the reason, and retries it like any failure.
func TestBadExpansionFailsTheTask(t *testing.T) {
	cases := map[string]struct{ result, want string }{
		"not json":      {`nope`, "not a job expansion"},
		"unknown after": {`{"tasks":[{"name":"x","command":["true"],"after":["ghost"]}]}`, `unknown task "ghost"`},
		"name taken":    {`{"tasks":[{"name":"plan","command":["true"]}]}`, "already has a task of that name"},
		"cycle":         {`{"tasks":[{"name":"a","command":["true"],"after":["b"]},{"name":"b","command":["true"],"after":["a"]}]}`, "cycle"},
		"no command":    {`{"tasks":[{"name":"a"}]}`, "command is empty"},
		// Arrays in a result, in an entry that does not say so: refused,
		// as every version before result_arrays applied it.
		"count, entry unmarked": {`{"tasks":[{"name":"a","command":["true"],"count":3}]}`, "count is for submitted jobs"},
		// In a marked entry (as a leader marks it).
		"array unnamed":     {`{"tasks":[{"command":["true"],"count":3}]}`, "an array (count 3) needs a name"},
		"array named taken": {`{"tasks":[{"name":"plan","command":["true"],"count":3}]}`, "array plan: the job already has a task of that name"},
		"array task taken": {`{"tasks":[{"name":"c","command":["true"],"count":3},{"name":"c-1","command":["true"]}]}`,
			"task c-1: named twice"},
		"array fallback named": {`{"tasks":[{"name":"c","command":["true"],"count":2,"fallback":{"name":"fb","command":["true"]}}]}`,
			`its fallback is named "fb"`},
		"array too large": {`{"tasks":[{"name":"c","command":["true"],"count":100001}]}`, "100001 tasks, arrays counted expanded"},
		"array negative":  {`{"tasks":[{"name":"c","command":["true"],"count":-2}]}`, "count -2 is negative"},
		"array edges": {`{"tasks":[{"name":"a","command":["true"],"count":50000},{"name":"b","command":["true"],"count":50000,"after":["a"]}]}`,
			"the after lists name 2500000000 tasks"},
		"array unknown after": {`{"tasks":[{"name":"c","command":["true"],"count":2,"after":["d-${INDEX}"]}]}`, `unknown task "d-0"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFSM(t, DefaultDefaults)
			f.agentUp("a1", &pb.Resources{CpuMillis: 8000}, nil)
			job := &pb.JobSpec{Tasks: []*pb.TaskSpec{oneTask("plan")}}
			job.Tasks[0].Retry = &pb.RetryPolicy{MaxAttempts: 1}
			f.submit(job)
			f.commitPlan()
			f.finishEntry("job-1.0", "succeeded", c.result, !strings.Contains(name, "unmarked"))
			j := f.s.JobView("job-1", true)
			if j.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.Reason, c.want) || j.Counts.Total != 1 {
				t.Fatalf("job %v %q (tasks %d), want failed naming %q", j.State, j.Reason, j.Counts.Total, c.want)
			}
		})
	}
}

// TestExpansionArrays: a plan task returns arrays, written out as in a
// submitted job: an array of encodes, an array of checks each waiting for
// its own encode ("${INDEX}" in its after list), and a join after the
// whole check array and an existing task. Each task runs only once what
// it waits for has succeeded, and the state survives a snapshot.
func TestExpansionArrays(t *testing.T) {
	f := planAndPublish(t)
	result := `{"tasks":[
	  {"name":"enc","count":3,"command":["enc","--chunk","${INDEX}"],"resources":{"cpu_millis":100},"after":["plan"]},
	  {"name":"check","count":3,"command":["check","${INDEX}"],"resources":{"cpu_millis":100},"after":["enc-${INDEX}"]},
	  {"name":"join","command":["true"],"resources":{"cpu_millis":100},"after":["check","publish"]}]}`
	if !ResultHasArrays([]byte(result)) {
		t.Fatal("ResultHasArrays: false for a result with arrays")
	}
	f.finishWith("job-1.0", "succeeded", result)
	j := f.s.JobView("job-1", true)
	if j.Counts.Total != 9 {
		t.Fatalf("after expansion: %d tasks (%s), want 9", j.Counts.Total, j.Reason)
	}
	enc1, check1, join := taskByName(t, f.s, "job-1", "enc-1"), taskByName(t, f.s, "job-1", "check-1"), taskByName(t, f.s, "job-1", "join")
	if got := strings.Join(enc1.Spec().Command, " "); got != "enc --chunk 1" {
		t.Fatalf("enc-1 runs %q, want the index in place of ${INDEX}", got)
	}
	if got := strings.Join(check1.Spec().After, ","); got != "enc-1" {
		t.Fatalf("check-1 waits for %q, want enc-1 alone", got)
	}
	if got := strings.Join(join.Spec().After, ","); got != "check-0,check-1,check-2,publish" {
		t.Fatalf("join waits for %q, want every check and publish", got)
	}
	if got := len(f.commitPlan()); got != 4 { // publish and the three encodes
		t.Fatalf("placed %d tasks, want 4", got)
	}
	f.finishWith(enc1.PB.Id, "succeeded", "")
	if got := f.commitPlan(); len(got) != 1 || got[0].TaskId != check1.PB.Id {
		t.Fatalf("after enc-1: placed %v, want check-1 alone", got)
	}
	checkSnapshotRoundTrip(t, f.s)
	for _, n := range []string{"publish", "enc-0", "enc-2"} {
		f.finishWith(taskByName(t, f.s, "job-1", n).PB.Id, "succeeded", "")
	}
	f.commitPlan()
	for _, n := range []string{"check-0", "check-1"} {
		f.finishWith(taskByName(t, f.s, "job-1", n).PB.Id, "succeeded", "")
	}
	if st := taskByName(t, f.s, "job-1", "join").PB.State; st != pb.TaskState_TASK_STATE_WAITING {
		t.Fatalf("join is %v before check-2 finished", st)
	}
	f.finishWith(taskByName(t, f.s, "job-1", "check-2").PB.Id, "succeeded", "")
	f.commitPlan()
	f.finishWith(join.PB.Id, "succeeded", "")
	if j := f.s.JobView("job-1", false); j.State != pb.JobState_JOB_STATE_SUCCEEDED || j.Counts.Succeeded != 9 {
		t.Fatalf("job %v, %d succeeded", j.State, j.Counts.Succeeded)
	}
}

// TestResultHasArrays: the leader's test for marking an entry reads a
// result as Apply does.
func TestResultHasArrays(t *testing.T) {
	for result, want := range map[string]bool{
		`{"tasks":[{"name":"a","command":["true"],"count":2}]}`: true,
		`{"tasks":[{"name":"a","command":["true"]}]}`:           false,
		`{"tasks":[{"name":"a","count":2}`:                      false, // not JSON: Apply fails the task
		``:                                                      false,
	} {
		if got := ResultHasArrays([]byte(result)); got != want {
			t.Errorf("ResultHasArrays(%s) = %v, want %v", result, got, want)
		}
	}
}

func gpuEncode(name string, waitMs int64) *pb.TaskSpec {
	return &pb.TaskSpec{Name: name, Command: []string{"enc", "--gpu"},
		Resources: &pb.Resources{CpuMillis: 500, Nvenc: 1}, FallbackAfterMs: waitMs,
		Fallback: &pb.TaskSpec{Command: []string{"enc", "--cpu"}, Resources: &pb.Resources{CpuMillis: 1000}}}
}

// TestFallbackAfterFailure: a GPU task that fails for good is replaced by
// its CPU fallback; the join that waited for it waits for the fallback, and
// the job succeeds.
func TestFallbackAfterFailure(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("gpu", &pb.Resources{CpuMillis: 4000, Nvenc: 2}, map[string]string{"encoder": "nvenc"})
	enc := gpuEncode("enc", 0)
	enc.Retry = &pb.RetryPolicy{MaxAttempts: 1}
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{enc, oneTask("join", "enc")}})
	f.commitPlan()
	f.finish("job-1.0", "failed", 1)
	orig, fb := f.s.task("job-1.0"), taskByName(t, f.s, "job-1", "enc-fallback")
	if orig.PB.State != pb.TaskState_TASK_STATE_FAILED || orig.PB.ReplacedBy != fb.PB.Id {
		t.Fatalf("original %v replaced_by %q", orig.PB.State, orig.PB.ReplacedBy)
	}
	if j := f.s.JobView("job-1", false); j.State == pb.JobState_JOB_STATE_FAILED {
		t.Fatalf("job failed despite the fallback: %s", j.Reason)
	}
	checkSnapshotRoundTrip(t, f.s)
	f.commitPlan()
	if fb.Ask().NVENC != 0 || fb.AgentID() != "gpu" {
		t.Fatalf("fallback ask %v on %q", fb.Ask(), fb.AgentID())
	}
	f.finish(fb.PB.Id, "succeeded", 0)
	f.commitPlan()
	f.finish("job-1.1", "succeeded", 0)
	if j := f.s.JobView("job-1", false); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}
}

// TestFallbackAfterWait: while the only NVENC session is busy, the GPU task
// waits; when its wait runs out it falls back to CPU, not before.
func TestFallbackAfterWait(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("gpu", &pb.Resources{CpuMillis: 4000, Nvenc: 1}, nil)
	f.agentUp("cpu", &pb.Resources{CpuMillis: 4000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "busy", Command: []string{"enc"},
		Resources: &pb.Resources{CpuMillis: 500, Nvenc: 1}}}})
	f.commitPlan()
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{gpuEncode("enc", 30_000)}})
	if got := f.commitPlan(); len(got) != 0 {
		t.Fatalf("GPU task placed while the session is busy: %v", got)
	}
	f.now += 29_999
	if due := f.s.DueFallbacks(f.now); len(due) != 0 {
		t.Fatalf("fallback due early: %v", due)
	}
	f.now++
	due := f.s.DueFallbacks(f.now)
	if len(due) != 1 || due[0] != "job-2.0" {
		t.Fatalf("due = %v", due)
	}
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Fallback{Fallback: &fsmpb.Fallback{TaskIds: due}}})
	got := f.commitPlan()
	if len(got) != 1 || got[0].TaskId != "job-2.1" {
		t.Fatalf("fallback not placed: %v", got)
	}
	orig := f.s.task("job-2.0")
	if a := orig.PB.Attempts[0]; a.Outcome != "fallback" || !strings.Contains(a.Error, "not placed within 30000ms") {
		t.Fatalf("original attempt %v", a)
	}
	if len(f.s.DueFallbacks(f.now+1_000_000)) != 0 {
		t.Fatal("a placed fallback must not fall back again")
	}
}

// TestFallbackAtOnceWhenNoAgentCouldHoldIt: with no NVENC agent at all,
// waiting is pointless: the fallback is due at once, with the reason.
func TestFallbackAtOnceWhenNoAgentCouldHoldIt(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("cpu", &pb.Resources{CpuMillis: 4000}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{gpuEncode("enc", 30_000)}})
	due := f.s.DueFallbacks(f.now)
	if len(due) != 1 {
		t.Fatalf("due = %v", due)
	}
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Fallback{Fallback: &fsmpb.Fallback{TaskIds: due}}})
	if got := f.commitPlan(); len(got) != 1 || got[0].AgentId != "cpu" {
		t.Fatalf("fallback not placed on the CPU agent: %v", got)
	}
	if a := f.s.task("job-1.0").PB.Attempts[0]; !strings.Contains(a.Error, "NVENC") {
		t.Fatalf("reason %q does not name the missing resource", a.Error)
	}
}

func checkSnapshotRoundTrip(t *testing.T, s *State) {
	t.Helper()
	var buf strings.Builder
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r, err := ReadSnapshot(strings.NewReader(buf.String()), s.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if diff := compareStates(s, r, 1<<40); len(diff) > 0 {
		t.Fatalf("snapshot round trip differs:\n%s", strings.Join(diff, "\n"))
	}
}

// TestArrayExpandsWhenApplied: a task spec with a count becomes that many
// tasks when the job is applied, each with its index in its name, command,
// env, workdir and exclusive key, and its own fallback named after it; a
// task after one of them waits for that one only. The entry holds one spec.
func TestArrayExpandsWhenApplied(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 8000, MemoryBytes: 1 << 30}, nil)
	chunk := &pb.TaskSpec{Name: "chunk", Count: 3, Command: []string{"enc", "--chunk", "${INDEX}"},
		Env: map[string]string{"PART": "p${INDEX}", "KEEP": "k"}, Workdir: "/w/${INDEX}", ExclusiveKey: "x${INDEX}",
		Resources: &pb.Resources{CpuMillis: 100}, TimeoutMs: 5000,
		Fallback: &pb.TaskSpec{Command: []string{"enc", "--cpu", "${INDEX}"}, Resources: &pb.Resources{CpuMillis: 100}}}
	spec := &pb.JobSpec{Name: "arr", Tasks: []*pb.TaskSpec{chunk, oneTask("join", "chunk-1")}}
	sent := spec.SizeVT()
	r := f.submit(spec)
	if got := r.Jobs[0].Counts.GetTotal(); got != 4 {
		t.Fatalf("job of %d tasks, want 3 chunks and a join", got)
	}
	if spec.Tasks[0].Count != 3 || len(spec.Tasks) != 2 || spec.Tasks[1] == nil {
		t.Fatalf("applying changed the command's specs: %v", spec.Tasks)
	}
	// Apply lets an array's expanded specs go as it adds them, never a
	// command's own (the caller may still read them).
	plain := &pb.JobSpec{Name: "plain", Tasks: []*pb.TaskSpec{oneTask("a"), oneTask("b")}}
	f.submit(plain)
	if plain.Tasks[0] == nil || plain.Tasks[1] == nil {
		t.Fatalf("applying a job without arrays cleared its specs: %v", plain.Tasks)
	}
	for i, idx := range []string{"0", "1", "2"} {
		tk := taskByName(t, f.s, "job-1", "chunk-"+idx)
		got := tk.Spec()
		want := &pb.TaskSpec{Name: "chunk-" + idx, Command: []string{"enc", "--chunk", idx},
			Env: map[string]string{"PART": "p" + idx, "KEEP": "k"}, Workdir: "/w/" + idx, ExclusiveKey: "x" + idx,
			Resources: &pb.Resources{CpuMillis: 100}, TimeoutMs: 5000,
			Fallback: &pb.TaskSpec{Name: "chunk-" + idx + "-fallback", Command: []string{"enc", "--cpu", idx},
				Resources: &pb.Resources{CpuMillis: 100}}}
		if !proto.Equal(got, want) {
			t.Errorf("task %d:\n%v\nwant\n%v", i, got, want)
		}
	}
	// join waits for chunk-1 alone.
	f.commitPlan()
	f.finishWith(taskByName(t, f.s, "job-1", "chunk-1").PB.Id, "succeeded", "")
	if join := taskByName(t, f.s, "job-1", "join"); join.PB.State != pb.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("join is %v once chunk-1 succeeded, want queued", join.PB.State)
	}
	checkSnapshotRoundTrip(t, f.s)

	// The same job with the array written out task by task encodes to more
	// than the array does (what the raft entry saves grows with the count).
	var out []*pb.TaskSpec
	for i := range 3 {
		out = append(out, taskarray.Task(chunk, i))
	}
	if full := (&pb.JobSpec{Name: "arr", Tasks: append(out, oneTask("join", "chunk-1"))}).SizeVT(); full <= sent {
		t.Fatalf("expanded job %d bytes, array %d", full, sent)
	}
}

// TestArrayDependencies: the chunk-encode pattern written with arrays. Each
// check-i waits for its own encode-i (${INDEX} in after), and concat waits
// for every task of both arrays (their names in after), through a snapshot
// taken halfway.
func TestArrayDependencies(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 8000, MemoryBytes: 1 << 30}, nil)
	enc := &pb.TaskSpec{Name: "encode", Count: 3, Command: []string{"enc", "${INDEX}"}, Resources: &pb.Resources{CpuMillis: 100}}
	check := &pb.TaskSpec{Name: "check", Count: 3, Command: []string{"check", "${INDEX}"}, Resources: &pb.Resources{CpuMillis: 100},
		After: []string{"encode-${INDEX}"}}
	spec := &pb.JobSpec{Name: "film", Tasks: []*pb.TaskSpec{enc, check, oneTask("concat", "encode", "check")}}
	if r := f.submit(spec); r.Jobs[0].Counts.GetTotal() != 7 {
		t.Fatalf("job of %d tasks, want 7", r.Jobs[0].Counts.GetTotal())
	}
	if got := spec.Tasks[2].After; len(got) != 2 || got[0] != "encode" {
		t.Fatalf("applying changed the command's after list: %v", got)
	}
	state := func(name string) pb.TaskState { return taskByName(t, f.s, "job-1", name).PB.State }
	const waiting, queued = pb.TaskState_TASK_STATE_WAITING, pb.TaskState_TASK_STATE_QUEUED
	wantStates := func(when string, want map[string]pb.TaskState) {
		t.Helper()
		for name, st := range want {
			if got := state(name); got != st {
				t.Errorf("%s: %s is %v, want %v", when, name, got, st)
			}
		}
	}
	wantStates("submitted", map[string]pb.TaskState{"encode-0": queued, "check-0": waiting, "check-2": waiting, "concat": waiting})
	if got := taskByName(t, f.s, "job-1", "concat").Spec().After; len(got) != 6 {
		t.Fatalf("concat waits for %v, want the 6 tasks of both arrays", got)
	}

	f.commitPlan()
	f.finishWith(taskByName(t, f.s, "job-1", "encode-1").PB.Id, "succeeded", "")
	wantStates("encode-1 done", map[string]pb.TaskState{"check-0": waiting, "check-1": queued, "check-2": waiting, "concat": waiting})
	checkSnapshotRoundTrip(t, f.s)

	for _, name := range []string{"encode-0", "encode-2"} {
		f.finishWith(taskByName(t, f.s, "job-1", name).PB.Id, "succeeded", "")
	}
	f.commitPlan()
	for _, name := range []string{"check-0", "check-1"} {
		f.finishWith(taskByName(t, f.s, "job-1", name).PB.Id, "succeeded", "")
	}
	wantStates("all but check-2 done", map[string]pb.TaskState{"concat": waiting})
	f.finishWith(taskByName(t, f.s, "job-1", "check-2").PB.Id, "succeeded", "")
	wantStates("both arrays done", map[string]pb.TaskState{"concat": queued})
}
