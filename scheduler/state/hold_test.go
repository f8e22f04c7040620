package state

import (
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// TestUsagePeaksHold is the decision table of what a pool with a guarantee
// of 4 cpu has held for it as its usage moves, with a window of 1,000 ms.
func TestUsagePeaksHold(t *testing.T) {
	g := pool.Resources{CPUMillis: 4000}
	cpu := func(m int64) pool.Resources { return pool.Resources{CPUMillis: m} }
	u := NewUsagePeaks(1000)
	for i, step := range []struct {
		now       int64
		cur, want pool.Resources
	}{
		{0, cpu(0), cpu(0)},          // nothing used yet
		{10, cpu(2000), cpu(0)},      // using what it peaked at
		{20, cpu(1000), cpu(1000)},   // gave 1 cpu back: held
		{500, cpu(0), cpu(2000)},     // gave all back, peak 2 cpu at 10
		{1009, cpu(0), cpu(2000)},    // still within the window
		{1010, cpu(0), cpu(0)},       // the window since 10 is over
		{1100, cpu(6000), cpu(0)},    // above its guarantee
		{1200, cpu(1000), cpu(3000)}, // held up to the guarantee only
		{1300, cpu(5000), cpu(0)},    // at its guarantee again, at 1300
		{2200, cpu(3000), cpu(1000)}, // its guarantee, used at 1300
		{2300, cpu(3000), cpu(0)},    // the window since 1300 is over
	} {
		if got := u.observe("p", step.cur, g, step.now); got != step.want {
			t.Fatalf("step %d (now %d, using %v): held %v, want %v", i, step.now, step.cur, got, step.want)
		}
	}
}

// TestPlanHoldsGivenBack plays the priority benchmark's steady state: a
// latency task of a guaranteed pool ends on a full cluster with a batch
// backlog. With the hold the backlog does not take the freed cpu, and the
// next latency task takes it without preempting; once the window is over,
// or without the hold, the backlog takes it.
func TestPlanHoldsGivenBack(t *testing.T) {
	s := priorityFleetState(t, 4, 100)
	now := int64(1) + 2*DefaultPlanLimits.MinRuntimeMs
	lim := DefaultPlanLimits
	lim.PreemptBudget = 20
	peaks := NewUsagePeaks(1000)
	plan := func() *fsmpb.Assign {
		l := lim
		l.Held = s.HeldBack(peaks, now)
		return s.Plan(now, l)
	}
	// A latency task preempts its way in (the cluster is full).
	lat := submitLatency(t, s, now)
	got := plan()
	if len(got.Preemptions) != 1 || len(got.Assignments) != 1 || got.Assignments[0].TaskId != lat {
		t.Fatalf("first latency task: plan %v, want one preemption for %s", got, lat)
	}
	mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Assign{Assign: got}})
	agent := got.Assignments[0].AgentId
	if got := plan(); len(got.Assignments) != 0 {
		t.Fatalf("a full cluster placed %v", got)
	}
	// It ends 200 ms later: its cpu is held for its pool.
	now += 200
	finish := func(a *fsmpb.Assignment) {
		mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
			AgentId: a.AgentId, Events: []*pb.TaskEvent{{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "finished", Outcome: "succeeded", UnixMs: now}}}}}}})
	}
	finish(got.Assignments[0])
	if held := s.HeldBack(peaks, now); held["latency"] != (pool.Resources{CPUMillis: 1000}) {
		t.Fatalf("held %v, want 1 cpu for latency", held)
	}
	if got := plan(); len(got.Assignments) != 0 {
		t.Fatalf("the backlog took held capacity: %v", got)
	}
	without := lim
	if got := s.Plan(now, without); len(got.Assignments) != 1 || got.Assignments[0].AgentId != agent {
		t.Fatalf("without the hold the backlog takes the freed cpu on %s: plan %v", agent, got)
	}
	// The next latency task takes it, no preemption needed.
	now += 30
	lat = submitLatency(t, s, now)
	got = plan()
	if len(got.Preemptions) != 0 || len(got.Assignments) != 1 || got.Assignments[0].TaskId != lat || got.Assignments[0].AgentId != agent {
		t.Fatalf("second latency task: plan %v, want %s on %s without preemption", got, lat, agent)
	}
	mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Assign{Assign: got}})
	now += 200
	finish(got.Assignments[0])
	// A window after the pool last used it, the backlog may borrow it.
	now += 1000
	if got := plan(); len(got.Assignments) != 1 || got.Assignments[0].AgentId != agent || got.Assignments[0].TaskId == lat {
		t.Fatalf("after the window: plan %v, want a backlog task on %s", got, agent)
	}
}

// TestPlanHeldOnlyFromBorrowers checks who may take capacity held for a
// pool: not a pool that would borrow, but another pool within its
// guarantee may (a hold is no guarantee of its own).
func TestPlanHeldOnlyFromBorrowers(t *testing.T) {
	s := priorityFleetState(t, 4, 100)
	mustApply(t, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true,
		Pool: &pb.Pool{Path: "live", Guaranteed: &pb.Resources{CpuMillis: 2000}}}}})
	now := int64(1) + 2*DefaultPlanLimits.MinRuntimeMs
	// A batch task ends: one cpu free, held for "latency" in this pass.
	finishOneOn(t, s, "agent-00002", now)
	lim := DefaultPlanLimits
	lim.Held = map[string]pool.Resources{"latency": {CPUMillis: 1000}}
	if got := s.Plan(now, lim); len(got.Assignments) != 0 {
		t.Fatalf("the batch backlog (borrowing) took held capacity: %v", got)
	}
	js := &pb.JobSpec{Name: "live", Pool: "live", Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}}}}
	r := mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{js}}}})
	live := s.job(r.Jobs[0].Id).TaskIDs()[0]
	got := s.Plan(now, lim)
	if len(got.Preemptions) != 0 || len(got.Assignments) != 1 || got.Assignments[0].TaskId != live || got.Assignments[0].AgentId != "agent-00002" {
		t.Fatalf("plan %v: want %s (pool within its guarantee) on agent-00002 without preemption", got, live)
	}
}
