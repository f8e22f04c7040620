package state

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// planEager is Plan with the running tasks of every agent indexed before
// the pass starts, as the pass did before it loaded agents on demand.
func planEager(s *State, now int64, lim PlanLimits) *fsmpb.Assign {
	placer, cluster := s.openPass()
	defer s.closePass(placer)
	p := s.newPass(now, lim, placer, cluster)
	if p.cluster.IsZero() {
		return p.out
	}
	all := pool.RunningByNode{}
	for id := range s.agents {
		if list := p.agentRunning(id); len(list) > 0 {
			all[id] = list
		}
	}
	p.running = pool.NewRunningIndex(all)
	p.run(false)
	if len(p.out.Preemptions) > 0 {
		p.run(false)
	}
	p.run(true)
	return p.out
}

// TestPlanPreemptLoadedIndex checks that a pass that loads agents' running
// tasks on demand, and stops loading once the jobs' priorities and classes
// show no better plan can exist, decides exactly as one that indexed every
// agent first; and that the hint it uses holds for every running task.
func TestPlanPreemptLoadedIndex(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	s := New(DefaultDefaults)
	for _, p := range []*pb.Pool{{Path: "batch"}, {Path: "live", Guaranteed: &pb.Resources{CpuMillis: 200_000, MemoryBytes: 800 << 30}}} {
		mustApply(t, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: p}}})
	}
	for i := range 60 {
		mustApply(t, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
			AgentId: fmt.Sprintf("agent-%03d", i), Fingerprint: &pb.Fingerprint{Hostname: fmt.Sprint(i),
				Capacity: &pb.Resources{CpuMillis: 8000, MemoryBytes: 32 << 30}}}}})
	}
	submit := func(now int64, poolPath string, class pb.JobClass, prio int32, n int) []string {
		js := &pb.JobSpec{Name: "j", Pool: poolPath, Class: class, Priority: prio}
		for range n {
			cpu := int64(500 * (1 + rng.Intn(6)))
			js.Tasks = append(js.Tasks, &pb.TaskSpec{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: cpu, MemoryBytes: cpu << 20}})
		}
		r := mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{js}}}})
		return s.job(r.Jobs[0].Id).TaskIDs()
	}
	now := int64(10)
	preempted := 0
	for round := range 12 {
		now += 1000
		// Running work of mixed priorities (and, from round 4, classes) fills the agents.
		for range 4 {
			class := pb.JobClass_JOB_CLASS_BATCH
			if round >= 4 && rng.Intn(3) == 0 {
				class = pb.JobClass_JOB_CLASS_OPPORTUNISTIC
			}
			submit(now, "batch", class, int32(rng.Intn(5))-2, 40)
		}
		lim := DefaultPlanLimits
		mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Assign{Assign: s.Plan(now, lim)}})
		// The guaranteed pool asks for room; tasks older than MinRuntimeMs may go.
		submit(now, "live", pb.JobClass_JOB_CLASS_LATENCY, int32(rng.Intn(3)), 30)
		now += lim.MinRuntimeMs / 2
		lim.PreemptBudget = 25
		got, want := s.Plan(now, lim), planEager(s, now, lim)
		if !proto.Equal(got, want) {
			t.Fatalf("round %d: the pass decides\n%v\nindexing every agent first decides\n%v", round, got, want)
		}
		preempted += len(got.Preemptions)
		// The hint bounds every running task.
		placer, cluster := s.openPass()
		p := s.newPass(now, lim, placer, cluster)
		hint := p.runningHint()
		for id := range s.agents {
			for _, r := range p.agentRunning(id) {
				if r.Priority < hint.MinPriority || (hint.NoOpportunistic && r.Class == pool.ClassOpportunistic) {
					t.Fatalf("round %d: hint %+v does not hold for %+v", round, hint, r)
				}
			}
		}
		s.closePass(placer)
		mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Assign{Assign: got}})
		// The guaranteed pool's work finishes, so that it stays within
		// its guarantee round after round.
		var aes []*fsmpb.AgentEvents
		for _, a := range got.Assignments {
			aes = append(aes, &fsmpb.AgentEvents{AgentId: a.AgentId, Events: []*pb.TaskEvent{{TaskId: a.TaskId,
				Attempt: a.Attempt, Kind: "finished", Outcome: "succeeded", UnixMs: now}}})
		}
		mustApply(t, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: aes}}})
	}
	if preempted < 20 {
		t.Fatalf("only %d preemptions in all: the test does not exercise the policy", preempted)
	}
}

// TestRunningHintIgnoresQueuedJobs pins the hint of a full cluster with a
// backlog: jobs with nothing placed (a low-priority opportunistic backlog)
// do not loosen it, so a pass stops loading agents at the first plan of
// the cheapest kind; and the pass still decides as one that indexed every
// agent first.
func TestRunningHintIgnoresQueuedJobs(t *testing.T) {
	s := priorityFleetState(t, 20, 300)
	// A backlog below everything running, and opportunistic: it never runs
	// while the cluster is full.
	js := &pb.JobSpec{Name: "low", Pool: "batch", Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC, Priority: -5,
		Tasks: []*pb.TaskSpec{{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}}}}
	mustApply(t, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{js}}}})
	now := int64(1) + 2*DefaultPlanLimits.MinRuntimeMs
	lim := DefaultPlanLimits
	placer, cluster := s.openPass()
	hint := s.newPass(now, lim, placer, cluster).runningHint()
	s.closePass(placer)
	if want := (pool.RunningHint{MinPriority: 0, NoOpportunistic: true}); hint != want {
		t.Fatalf("hint %+v, want %+v (from the running batch jobs only)", hint, want)
	}
	lat := submitLatency(t, s, now)
	lim.PreemptBudget = 20
	got, want := s.Plan(now, lim), planEager(s, now, lim)
	if !proto.Equal(got, want) {
		t.Fatalf("the pass decides\n%v\nindexing every agent first decides\n%v", got, want)
	}
	// One victim, on the first agent in id order (every agent is alike),
	// the first of its tasks in candidate order (all alike and placed
	// together: the lowest task id), and the latency task placed there in
	// the same entry.
	if len(got.Preemptions) != 1 || len(got.Assignments) != 1 || got.Assignments[0].TaskId != lat {
		t.Fatalf("plan %v: want one preemption for %s", got, lat)
	}
	v := got.Preemptions[0].Victim
	if v.AgentId != "agent-00000" || got.Assignments[0].AgentId != v.AgentId {
		t.Fatalf("victim %v, placed on %s: want both on agent-00000", v, got.Assignments[0].AgentId)
	}
	var onAgent []string
	for id := range s.agents["agent-00000"].Running {
		onAgent = append(onAgent, id)
	}
	slices.Sort(onAgent)
	if v.TaskId != onAgent[0] {
		t.Fatalf("victim %s, want %s (the lowest id of equals)", v.TaskId, onAgent[0])
	}
}
