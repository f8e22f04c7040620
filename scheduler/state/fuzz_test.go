package state

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// fuzzNow is the clock of the fuzz base state.
const fuzzNow = 10_000

// fuzzBase is a small farm: pools studio (max 6 cpu) and its leaf
// studio/ingest (max 4 cpu), two agents, and job-1 in studio/ingest whose
// "plan" task (job-1.0) runs on an agent while "publish" (job-1.1) waits
// for it.
func fuzzBase(t *testing.T) *State {
	t.Helper()
	s := New(DefaultDefaults)
	cmds := []*fsmpb.Command{
		{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: &pb.Pool{Path: "studio",
			Max: &pb.Resources{CpuMillis: 6000}, MaxSet: []string{"cpu"}}}}},
		{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: &pb.Pool{Path: "studio/ingest",
			Guaranteed: &pb.Resources{CpuMillis: 1000}, Max: &pb.Resources{CpuMillis: 4000}, MaxSet: []string{"cpu"},
			Warm: map[string]int32{"thumb": 1}}}}},
		{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1", Fingerprint: &pb.Fingerprint{
			Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30, Gpus: 1, Nvenc: 2},
			Labels:   map[string]string{"zone": "a"}}}}},
		{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a2", Fingerprint: &pb.Fingerprint{
			Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30}}}}},
		{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{Name: "enc", Pool: "studio/ingest",
			Tasks: []*pb.TaskSpec{
				{Name: "plan", Command: []string{"plan"}, Resources: &pb.Resources{CpuMillis: 500}},
				{Name: "publish", Command: []string{"publish"}, Resources: &pb.Resources{CpuMillis: 100},
					After: []string{"plan"}},
			}}}}}},
	}
	for _, c := range cmds {
		c.NowUnixMs = fuzzNow
		if r := s.Apply(c); r.Err != nil {
			t.Fatalf("fuzz base: %v", r.Err)
		}
	}
	commitPlanAt(s, fuzzNow)
	if tk := s.task("job-1.0"); !isPlaced(tk.PB.State) {
		t.Fatalf("fuzz base: plan is %v", tk.PB.State)
	}
	return s
}

// commitPlanAt runs a scheduling pass and applies its assignments.
func commitPlanAt(s *State, now int64) {
	p := s.Plan(now, DefaultPlanLimits)
	s.Apply(&fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Assign{Assign: p}})
}

// fuzzCheck fails the test on every broken invariant of s, and when a
// snapshot of s does not restore to the same state. An agent's use may
// exceed a capacity it reported smaller on reconnecting, and a pool's use
// its max lowered under running work, so those are not checked.
func fuzzCheck(t *testing.T, s *State, now int64, what string) {
	t.Helper()
	var errs []string
	for _, e := range checkInvariants(s, false) {
		if !strings.Contains(e, "exceeds capacity") {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		t.Fatalf("%s: invariants broken:\n  %s", what, strings.Join(errs, "\n  "))
	}
	back, err := roundTrip(s)
	if err != nil {
		t.Fatalf("%s: snapshot round trip: %v", what, err)
	}
	if diffs := compareStates(s, back, now); len(diffs) > 0 {
		t.Fatalf("%s: restored state differs:\n  %s", what, strings.Join(diffs, "\n  "))
	}
}

// expansionSeeds are results of the plan task, good and bad.
var expansionSeeds = []string{
	`{"tasks":[{"name":"c0","command":["enc","0"],"after":["plan"],"resources":{"cpuMillis":"1000"}},` +
		`{"name":"c1","command":["enc","1"],"resources":{"cpuMillis":"1000"}},` +
		`{"name":"join","command":["join"],"after":["c0","c1"],"resources":{"cpuMillis":"100"}}]}`,
	`{"tasks":[{"name":"g","command":["enc","--gpu"],"resources":{"cpuMillis":"500","nvenc":"1"},"fallbackAfterMs":"30000",` +
		`"fallback":{"command":["enc","--cpu"],"resources":{"cpuMillis":"1000"}},"exclusiveKey":"title-1",` +
		`"constraints":[{"label":"zone","op":"=","value":"a"}],"retry":{"maxAttempts":2,"initialBackoffMs":"10"}}]}`,
	`{"tasks":[{"name":"f","function":"thumb","args":["a"],"resources":{"cpuMillis":"100"},"env":{"A":"1"}}]}`,
	`{"tasks":[{"name":"big","command":["x"],"resources":{"cpuMillis":"5000"}}]}`,
	`{"tasks":[{"name":"a","command":["x"],"after":["b"]},{"name":"b","command":["x"],"after":["a"]}]}`,
	`{"tasks":[{"name":"plan","command":["x"]}]}`,
	`{"tasks":[{"name":"x","command":["x"],"after":["ghost"]}]}`,
	`{"tasks":[{"name":"z","command":["x"]}]}`,
	`{"tasks":[]}`,
	`nope`,
	`{"tasks":[{"name":"c","count":3,"command":["x","${INDEX}"],"after":["plan"]},{"name":"d","count":3,"command":["x"],"after":["c-${INDEX}"]},{"name":"j","command":["x"],"after":["d"]}]}`,
}

// FuzzExpansion reports the running plan task succeeded with an arbitrary
// result, which the state reads as tasks to add to the job (fan-out). It
// must never panic; afterwards, and after the next scheduling pass, every
// invariant holds (no pool above its max, no negative use, counts right)
// and the state survives a snapshot round trip.
func FuzzExpansion(f *testing.F) {
	for _, s := range expansionSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, result []byte) {
		// Marked as a leader marks it. A mutated count can ask for up to
		// 100,000 tasks, which makes each input take seconds: skipped,
		// so that the fuzzer explores.
		arrays := ResultHasArrays(result)
		if exp, err := parseExpansion(result); arrays && err == nil && taskarray.Tasks(exp.Tasks) > 1000 {
			t.Skip("more than 1,000 tasks")
		}
		s := fuzzBase(t)
		now := int64(fuzzNow + 1000)
		s.Apply(&fsmpb.Command{NowUnixMs: now, ResultArrays: arrays, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{
			ClassifyExitCodes: true, Agents: []*fsmpb.AgentEvents{{AgentId: s.task("job-1.0").AgentID(),
				Events: []*pb.TaskEvent{{TaskId: "job-1.0", Attempt: 1, Kind: "finished", Outcome: "succeeded",
					UnixMs: now, Result: result}}}}}}})
		checkStrict(t, s, "after the result")
		commitPlanAt(s, now)
		checkStrict(t, s, "after a scheduling pass")
		fuzzCheck(t, s, now, "after a scheduling pass")
	})
}

// checkStrict fails the test on every broken invariant of s, pool maxima
// included.
func checkStrict(t *testing.T, s *State, what string) {
	t.Helper()
	if errs := checkInvariants(s, true); len(errs) > 0 {
		t.Fatalf("%s: invariants broken:\n  %s", what, strings.Join(errs, "\n  "))
	}
}

// applySeeds are raft log entries of every command type, about the records
// of fuzzBase.
func applySeeds() []*fsmpb.Command {
	finished := func(outcome string, exit int32) *fsmpb.Command {
		return &fsmpb.Command{NowUnixMs: fuzzNow + 5, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{
			ClassifyExitCodes: true, Agents: []*fsmpb.AgentEvents{{AgentId: "a1", Events: []*pb.TaskEvent{
				{TaskId: "job-1.0", Attempt: 1, Kind: "started", UnixMs: fuzzNow + 1},
				{TaskId: "job-1.0", Attempt: 1, Kind: "finished", Outcome: outcome, ExitCode: exit, UnixMs: fuzzNow + 5,
					Result: []byte(expansionSeeds[0])}}}}}}}
	}
	return []*fsmpb.Command{
		finished("succeeded", 0),
		finished("failed", 66),
		finished("timeout", 0),
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{
			Pool: "studio/ingest", Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC, IdempotencyKey: "k",
			Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 3000},
				ExclusiveKey: "e", FallbackAfterMs: 1, Fallback: &pb.TaskSpec{Command: []string{"y"}}}}}}}}},
		{NowUnixMs: fuzzNow, TaskCounts: true, ArrayAfter: true, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{
			Pool: "studio/ingest", Tasks: []*pb.TaskSpec{
				{Name: "enc", Count: 3, Command: []string{"enc", "${INDEX}"}, Resources: &pb.Resources{CpuMillis: 500}},
				{Name: "check", Count: 3, Command: []string{"check"}, After: []string{"enc-${INDEX}"}},
				{Name: "cat", Command: []string{"cat"}, After: []string{"enc", "check"}}}}}}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{
			Assignments: []*fsmpb.Assignment{{TaskId: "job-1.1", Attempt: 1, AgentId: "a2"}},
			Preemptions: []*fsmpb.Preemption{{Victim: &fsmpb.Assignment{TaskId: "job-1.0", Attempt: 1, AgentId: "a1"},
				ForTaskId: "job-1.1"}}}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1",
			Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 100}},
			Known:       []*fsmpb.Assignment{{TaskId: "job-9.9", Attempt: 3}}}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: "a1", Reason: "lease"}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-1"}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: &pb.Pool{Path: "studio/ingest",
			Max: &pb.Resources{CpuMillis: 100}, MaxSet: []string{"cpu"}}}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true,
			Pool: &pb.Pool{Path: "studio/ingest/child"}}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: "studio/ingest"}}},
		{NowUnixMs: fuzzNow, Cmd: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{JobIds: []string{"job-1", "job-2"}}}},
		{NowUnixMs: fuzzNow + 60_000, Cmd: &fsmpb.Command_Fallback{Fallback: &fsmpb.Fallback{TaskIds: []string{"job-2.0"}}}},
		{},
	}
}

// FuzzApply applies two arbitrary raft log entries, decoded as FSM.Apply
// decodes them, to a small farm with work placed. Apply must never panic;
// an entry that does not decode changes nothing; after each entry, and
// after a scheduling pass, the invariants hold (use never negative, counts
// and queue right, every placed task on an up agent) and the state survives
// a snapshot round trip.
func FuzzApply(f *testing.F) {
	seeds := applySeeds()
	for i, a := range seeds {
		b := seeds[(i+3)%len(seeds)]
		ab, err := proto.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		bb, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ab, bb)
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		s := fuzzBase(t)
		now := int64(fuzzNow)
		for i, data := range [][]byte{first, second} {
			cmd := &fsmpb.Command{}
			if err := proto.Unmarshal(data, cmd); err != nil {
				continue
			}
			// A count mutated large makes an input that takes seconds to
			// check: the fuzzer looks for wrong logic, not for scale.
			if taskarray.JobTasks(cmd.GetSubmit().GetJobs()) > 1000 {
				continue
			}
			// The leader stamps every entry with its clock: never 0.
			cmd.NowUnixMs = max(cmd.NowUnixMs, 1)
			_ = s.Apply(cmd)
			now = max(now, cmd.NowUnixMs)
			fuzzCheck(t, s, now, "entry "+string(rune('1'+i)))
		}
		commitPlanAt(s, now)
		fuzzCheck(t, s, now, "after a scheduling pass")
	})
}

// TestReadSnapshotRejectsDamage: snapshots whose records do not fit
// together are errors; each of these panicked or looped in ReadSnapshot
// before restore checked them. The damage is done to a real state, which
// then writes its snapshot, so the test does not depend on the layout.
func TestReadSnapshotRejectsDamage(t *testing.T) {
	cases := map[string]struct {
		damage func(s *State)
		want   string
	}{
		"job id past the count": {func(s *State) { s.jobSeq = 0 }, "not one of job-1..job-0"},
		// A job's task list is written from its tasks' records.
		"task record renamed": {func(s *State) { s.task("job-1.1").PB.Id = "job-1.7" }, `task 1 is "job-1.7"`},
		"task of another job": {func(s *State) { s.task("job-1.1").PB.JobId = "job-2" }, "outside its job"},
		// job-1.1 waits for job-1.0: its spec is kept whole.
		"after names no task":    {func(s *State) { s.task("job-1.1").spec.After = []string{"ghost"} }, `unknown task "ghost"`},
		"negative ask":           {func(s *State) { s.task("job-1.1").spec.Resources = &pb.Resources{CpuMillis: -1} }, "negative cpu"},
		"placed without attempt": {func(s *State) { s.task("job-1.0").PB.Attempts = nil }, "without an attempt"},
		"fallbacks replace each other": {func(s *State) {
			s.task("job-1.0").PB.ReplacedBy = "job-1.1"
			s.task("job-1.1").PB.ReplacedBy = "job-1.0"
		}, "not a fallback of its job"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := fuzzBase(t)
			c.damage(s)
			var buf bytes.Buffer
			if err := s.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			_, err := ReadSnapshot(&buf, DefaultDefaults)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// rewriteSnapshot returns a snapshot with each of its records passed
// through edit: for records a state no longer writes.
func rewriteSnapshot(t *testing.T, snap []byte, edit func(rec *fsmpb.SnapshotRecord)) *bytes.Buffer {
	t.Helper()
	in := bufio.NewReader(bytes.NewReader(snap))
	head := make([]byte, len(SnapshotMagic)+4)
	if _, err := io.ReadFull(in, head); err != nil {
		t.Fatal(err)
	}
	out := bytes.NewBuffer(head)
	for {
		rec := &fsmpb.SnapshotRecord{}
		err := protodelim.UnmarshalFrom(in, rec)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		edit(rec)
		if _, err := protodelim.MarshalTo(out, rec); err != nil {
			t.Fatal(err)
		}
	}
}

// A task record without a spec (a state always writes one) is refused.
func TestReadSnapshotRejectsTaskWithoutSpec(t *testing.T) {
	var buf bytes.Buffer
	if err := fuzzBase(t).WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	out := rewriteSnapshot(t, buf.Bytes(), func(rec *fsmpb.SnapshotRecord) {
		if task := rec.GetTask(); task.GetId() == "job-1.0" {
			task.Spec = nil
		}
	})
	if _, err := ReadSnapshot(out, DefaultDefaults); err == nil || !strings.Contains(err.Error(), "without a spec") {
		t.Fatalf("error %v, want one naming a task without a spec", err)
	}
}
