package state

import (
	"fmt"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// priorityFleetState builds the shape of the priority benchmark: agents of
// 8 cpu all taken by 1-cpu batch tasks (started at 1), queued more batch
// work in jobs of 10,000 (9 in 10 batch, the rest opportunistic) in pool
// "batch", and pool "latency" guaranteed a tenth of the cpu, with nothing
// queued yet.
func priorityFleetState(tb testing.TB, agents, queued int) *State {
	tb.Helper()
	s := New(DefaultDefaults)
	for _, p := range []*pb.Pool{{Path: "batch"},
		{Path: "latency", Guaranteed: &pb.Resources{CpuMillis: int64(agents) * 800}}} {
		mustApply(tb, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: p}}})
	}
	for i := range agents {
		fp := &pb.Fingerprint{Hostname: fmt.Sprint(i), Capacity: &pb.Resources{CpuMillis: 8000, MemoryBytes: 64 << 30}}
		mustApply(tb, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
			AgentId: fmt.Sprintf("agent-%05d", i), Fingerprint: fp}}})
	}
	submit := func(n int, class pb.JobClass) []string {
		var ids []string
		for n > 0 {
			size := min(n, 10_000)
			js := &pb.JobSpec{Name: "backlog", Pool: "batch", Class: class}
			for range size {
				js.Tasks = append(js.Tasks, &pb.TaskSpec{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}})
			}
			r := mustApply(tb, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{js}}}})
			ids = append(ids, s.job(r.Jobs[0].Id).TaskIDs()...)
			n -= size
		}
		return ids
	}
	running := submit(agents*8, pb.JobClass_JOB_CLASS_BATCH)
	var asg []*fsmpb.Assignment
	for k, id := range running {
		asg = append(asg, &fsmpb.Assignment{TaskId: id, Attempt: 1, AgentId: fmt.Sprintf("agent-%05d", k/8)})
	}
	if r := mustApply(tb, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: asg}}}); len(r.Assigned) != len(asg) {
		tb.Fatalf("setup: %d of %d assignments applied", len(r.Assigned), len(asg))
	}
	submit(queued*9/10, pb.JobClass_JOB_CLASS_BATCH)
	submit(queued-queued*9/10, pb.JobClass_JOB_CLASS_OPPORTUNISTIC)
	return s
}

// submitLatency queues one latency-class task of 1 cpu in pool "latency".
func submitLatency(tb testing.TB, s *State, now int64) string {
	tb.Helper()
	js := &pb.JobSpec{Name: "lat", Pool: "latency", Class: pb.JobClass_JOB_CLASS_LATENCY,
		Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}}}}
	r := mustApply(tb, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{js}}}})
	return s.job(r.Jobs[0].Id).TaskIDs()[0]
}

// BenchmarkPlanPriority measures the passes of the priority benchmark's
// steady state: 200 agents full, 200,000 queued in a pool without a
// guarantee, and
//
//   - idle: nothing else queued (the pass an event commit triggers);
//
//   - preempt: one latency task queued in a pool below its guarantee, with
//     a budget of 20 preemptions;
//
//   - nobudget: the same with the preemption budget spent.
//
//     go test -run X -bench PlanPriority -benchmem ./scheduler/state
func BenchmarkPlanPriority(b *testing.B) {
	s := priorityFleetState(b, 200, 200_000)
	now := int64(1) + 10*DefaultPlanLimits.MinRuntimeMs
	b.Run("idle", func(b *testing.B) {
		lim := DefaultPlanLimits
		lim.PreemptBudget = 20
		for b.Loop() {
			if p := s.Plan(now, lim); len(p.Assignments) != 0 {
				b.Fatalf("idle pass placed %d", len(p.Assignments))
			}
		}
	})
	submitLatency(b, s, now)
	for _, c := range []struct {
		name   string
		budget int
		want   int
	}{{"preempt", 20, 1}, {"nobudget", 0, 0}} {
		b.Run(c.name, func(b *testing.B) {
			lim := DefaultPlanLimits
			lim.PreemptBudget = c.budget
			for b.Loop() {
				if p := s.Plan(now, lim); len(p.Preemptions) != c.want {
					b.Fatalf("pass preempted %d, want %d", len(p.Preemptions), c.want)
				}
			}
		})
	}
}

// BenchmarkPlanOpportunisticRoom measures a pass that finds a little room
// (one cpu free) on a full cluster with 200,000 queued, all but the last
// tenth regular tasks that may not take it: the opportunistic phase starts
// at the pool's first opportunistic task instead of walking the regular
// ones.
func BenchmarkPlanOpportunisticRoom(b *testing.B) {
	s := priorityFleetState(b, 200, 200_000)
	now := int64(1) + 10*DefaultPlanLimits.MinRuntimeMs
	// Free one cpu: a running task ends.
	finishOneOn(b, s, "agent-00000", now)
	lim := DefaultPlanLimits
	lim.Held = map[string]pool.Resources{"latency": {CPUMillis: 1000}} // held for the latency pool
	for b.Loop() {
		if p := s.Plan(now, lim); len(p.Assignments) != 0 {
			b.Fatalf("the backlog took held capacity: %v", p)
		}
	}
}

// finishOneOn reports one of the tasks running on agent as succeeded at
// now, freeing its capacity.
func finishOneOn(tb testing.TB, s *State, agent string, now int64) {
	tb.Helper()
	for id := range s.agents[agent].Running {
		mustApply(tb, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
			AgentId: agent, Events: []*pb.TaskEvent{{TaskId: id, Attempt: s.task(id).Attempt(), Kind: "finished",
				Outcome: "succeeded", UnixMs: now}}}}}}})
		return
	}
	tb.Fatalf("nothing runs on %s", agent)
}
