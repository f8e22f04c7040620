package server

import (
	"bytes"
	"io"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "fuzz" }
func (s *memSink) Close() error  { return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// snapshotOf takes a snapshot through the FSM's own API, as raft does.
func snapshotOf(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.cancelled {
		t.Fatalf("persist: %v (cancelled %v)", err, sink.cancelled)
	}
	return sink.Bytes()
}

// applyAll applies commands as raft log entries.
func applyAll(t testing.TB, f *FSM, cmds ...*fsmpb.Command) {
	t.Helper()
	for i, c := range cmds {
		data, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}).(*state.Result); ok && r.Err != nil {
			t.Fatalf("apply %v: %v", c, r.Err)
		}
	}
}

// busyFSM is an FSM with some of everything: a pool tree with warm
// reservations, two agents, jobs with fan-out, fallbacks, retries,
// exclusive keys, an opportunistic job, a cancelled job and costs.
func busyFSM(t testing.TB) *FSM {
	t.Helper()
	f := NewFSM(state.DefaultDefaults)
	now := int64(3_600_000)
	at := func(c *fsmpb.Command) *fsmpb.Command { c.NowUnixMs = now; return c }
	applyAll(t, f,
		at(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: &pb.Pool{
			Path: "studio", Max: &pb.Resources{CpuMillis: 8000}, MaxSet: []string{"cpu"}}}}}),
		at(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: &pb.Pool{
			Path: "studio/ingest", Guaranteed: &pb.Resources{CpuMillis: 1000}, Warm: map[string]int32{"thumb": 2}}}}}),
		at(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1", Address: "127.0.0.1:1",
			Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30, Gpus: 1, Nvenc: 2},
				Labels: map[string]string{"zone": "a"}}}}}),
		at(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a2",
			Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30}}}}}),
		at(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{
			{Name: "enc", Pool: "studio/ingest", IdempotencyKey: "title-1", Tasks: []*pb.TaskSpec{
				{Name: "plan", Command: []string{"plan"}, Resources: &pb.Resources{CpuMillis: 500}},
				{Name: "gpu", Command: []string{"enc"}, Resources: &pb.Resources{CpuMillis: 500, Nvenc: 1},
					ExclusiveKey: "title-1", FallbackAfterMs: 60_000, Fallback: &pb.TaskSpec{Command: []string{"cpu"}},
					Retry: &pb.RetryPolicy{MaxAttempts: 2, InitialBackoffMs: 10}},
				{Name: "publish", Command: []string{"publish"}, After: []string{"plan", "gpu"},
					Env: map[string]string{"K": "v"}, Constraints: []*pb.Constraint{{Label: "zone", Op: "=", Value: "a"}}},
			}},
			{Name: "later", Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC, Tasks: []*pb.TaskSpec{
				{Function: "thumb", Args: []string{"x"}, Resources: &pb.Resources{CpuMillis: 100}}}},
			{Name: "doomed", Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 100}}}},
		}}}}),
	)
	var plan *fsmpb.Assign
	f.Read(func(s *state.State) { plan = s.Plan(now, state.DefaultPlanLimits) })
	applyAll(t, f, at(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}}))
	agentOf := func(id string) (agent string, attempt int32) {
		f.Read(func(s *state.State) {
			if tk, ok := s.Task(id); ok {
				agent, attempt = tk.AgentID(), tk.Attempt()
			}
		})
		return agent, attempt
	}
	event := func(id, kind, outcome string, exit int32, result string) *fsmpb.Command {
		ag, att := agentOf(id)
		return at(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{ClassifyExitCodes: true,
			Agents: []*fsmpb.AgentEvents{{AgentId: ag, Events: []*pb.TaskEvent{{TaskId: id, Attempt: att, Kind: kind,
				Outcome: outcome, ExitCode: exit, UnixMs: now, Result: []byte(result), StderrTail: "tail\n"}}}}}}})
	}
	applyAll(t, f, event("job-1.0", "started", "", 0, ""))
	now += 90_000
	applyAll(t, f,
		event("job-1.0", "finished", "succeeded", 0,
			`{"tasks":[{"name":"c0","command":["enc","0"],"after":["plan"],"resources":{"cpuMillis":"100"}}]}`),
		event("job-1.1", "finished", "failed", 1, ""),
		at(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-3", Reason: "no"}}}),
		at(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: "a2", Reason: "lease"}}}),
	)
	return f
}

// restoreSeeds are snapshots taken through the FSM's own API, so that the
// seeds follow the snapshot format wherever it goes.
func restoreSeeds(t testing.TB) [][]byte {
	full := snapshotOf(t, busyFSM(t))
	return [][]byte{
		full,
		snapshotOf(t, NewFSM(state.DefaultDefaults)),
		full[:len(full)/2],
		full[:len(full)-1],
		{},
	}
}

// FuzzRestore hands arbitrary bytes to FSM.Restore, seeded with real
// snapshots that the fuzzer mutates. Restore must return an error (and
// keep the state it had) or give a usable state: one that can be read,
// scheduled, changed by commands and snapshotted again, with a snapshot
// that restores to the same snapshot. It must never panic or hang.
func FuzzRestore(f *testing.F) {
	for _, s := range restoreSeeds(f) {
		f.Add(s)
	}
	base := busyFSM(f)
	before := snapshotOf(f, base)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := busyFSM(t)
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if after := snapshotOf(t, fsm); !bytes.Equal(after, before) {
				t.Fatalf("failed restore (%v) changed the state", err)
			}
			return
		}
		exercise(t, fsm)
	})
}

// exercise reads every record of a restored FSM, checks that its
// snapshot is a fixed point of snapshot and restore, then schedules and
// applies commands to every record.
func exercise(t *testing.T, f *FSM) {
	t.Helper()
	snap := snapshotOf(t, f)
	again := NewFSM(state.DefaultDefaults)
	if err := again.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("a restored state's own snapshot does not restore: %v", err)
	}
	if snap2 := snapshotOf(t, again); !bytes.Equal(snap, snap2) {
		t.Fatal("snapshot, restore, snapshot gives different bytes")
	}
	var jobs, agents, pools []string
	now := int64(7_200_000)
	var plan *fsmpb.Assign
	f.Read(func(s *state.State) {
		jobs, agents, pools = s.JobIDs(), append([]string(nil), s.AgentIDs()...), s.Pools().Paths()
		for _, id := range jobs {
			j := s.JobView(id, true)
			for _, tk := range j.GetTasks() {
				_ = s.TaskView(tk.GetId())
			}
		}
		for _, id := range agents {
			_ = s.AgentView(id)
		}
		for _, p := range pools {
			_ = s.PoolView(p)
		}
		_ = s.DueFallbacks(now)
		plan = s.Plan(now, state.PlanLimits{MaxAssign: 64, MaxScan: 1024, PreemptBudget: 8, MinRuntimeMs: 1})
	})
	var cmds []*fsmpb.Command
	cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}})
	for _, id := range agents {
		cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: id}}})
	}
	cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{JobIds: jobs}}})
	for _, id := range jobs {
		cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: id}}})
	}
	for _, id := range agents {
		cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: id}}})
	}
	for _, p := range pools {
		cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: p}}})
	}
	cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{
		{Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1}}}}}}}})
	for i, c := range cmds {
		c.NowUnixMs = now
		data, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
	_ = snapshotOf(t, f)
}

// FuzzFSMApply hands arbitrary bytes to FSM.Apply as a raft log entry on a
// busy FSM: it must return a result (an error for an entry that does not
// decode) and never panic, and the FSM must stay usable (see exercise).
// The invariants of the state after arbitrary commands are checked by
// state's FuzzApply.
func FuzzFSMApply(f *testing.F) {
	add := func(c *fsmpb.Command) {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	add(&fsmpb.Command{NowUnixMs: 3_700_000, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{
		Agents: []*fsmpb.AgentEvents{{AgentId: "a1", Events: []*pb.TaskEvent{{TaskId: "job-1.3", Attempt: 1,
			Kind: "finished", Outcome: "succeeded"}}}}}}})
	add(&fsmpb.Command{Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: "studio/ingest"}}})
	add(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1",
		Known: []*fsmpb.Assignment{{TaskId: "job-1.3", Attempt: 1}}}}})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := busyFSM(t)
		r, ok := fsm.Apply(&raft.Log{Index: 100, Type: raft.LogCommand, Data: data}).(*state.Result)
		if !ok || r == nil {
			t.Fatalf("Apply returned %T", r)
		}
		exercise(t, fsm)
	})
}
