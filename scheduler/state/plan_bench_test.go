package state

import (
	"fmt"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// planFleet describes the fleet the pass benchmarks build.
type planFleet struct {
	agents  int
	running int  // tasks placed before the pass
	full    bool // fill every agent's cpu
	queued  int  // tasks waiting for the pass
	// pools puts the running work in pool "batch" (no guarantee) and the
	// queue in pool "live", guaranteed 5% of the fleet's cpu, so that
	// the queue may preempt.
	pools bool
}

// gpuHost reports whether agent i of a bench fleet is a GPU host (one in ten).
func gpuHost(i int) bool { return i%10 == 3 }

// benchFleetState builds a farm: nine agents in ten CPU-only (32 or 64
// cores, 4 GiB per core), one in ten a 64-core host with four 24 GiB GPUs
// of 8 NVENC sessions each; a tenth of the CPU hosts serve function
// "thumb". Running work is mostly 1-2 core encodes (1.33 on average), with NVENC chunks (one
// session, 2 GiB of GPU memory) on the GPU hosts; it is placed round robin
// by explicit assignments, so the setup does not depend on Plan.
func benchFleetState(tb testing.TB, f planFleet) *State {
	tb.Helper()
	s := New(DefaultDefaults)
	runPool, queuePool := DefaultPool, DefaultPool
	if f.pools {
		runPool, queuePool = "batch", "live"
		for _, p := range []*pb.Pool{{Path: "batch"},
			{Path: "live", Guaranteed: &pb.Resources{CpuMillis: int64(f.agents) * 2000, MemoryBytes: int64(f.agents) * 8 << 30}}} {
			mustApply(tb, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true, Pool: p}}})
		}
	}
	for i := range f.agents {
		cores := int64(32)
		if i%3 == 0 {
			cores = 64
		}
		fp := &pb.Fingerprint{Hostname: fmt.Sprint(i), Labels: map[string]string{"zone": fmt.Sprintf("z%d", i%4)},
			Capacity: &pb.Resources{CpuMillis: cores * 1000, MemoryBytes: cores * 4 << 30}}
		if gpuHost(i) {
			fp.Capacity.CpuMillis, fp.Capacity.MemoryBytes = 64000, 256<<30
			fp.Capacity.Gpus, fp.Capacity.GpuMemoryBytes, fp.Capacity.Nvenc = 4, 96<<30, 32
			fp.Labels["gpu"] = "l4"
			for g := range 4 {
				fp.Gpus = append(fp.Gpus, &pb.GPU{Index: int32(g), Uuid: fmt.Sprintf("GPU-%d-%d", i, g), Model: "L4",
					MemoryBytes: 24 << 30, EncoderSessions: 8})
			}
		} else if i%10 == 7 {
			fp.Labels["fn.thumb"] = "1"
		}
		mustApply(tb, s, &fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
			AgentId: fmt.Sprintf("agent-%05d", i), Fingerprint: fp}}})
	}
	cpuTask := func(cpu int64) *pb.TaskSpec {
		return &pb.TaskSpec{Command: []string{"enc"}, Resources: &pb.Resources{CpuMillis: cpu, MemoryBytes: cpu * 2 << 20}}
	}
	nvencTask := func() *pb.TaskSpec {
		return &pb.TaskSpec{Command: []string{"nvenc"},
			Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 2 << 30, GpuMemoryBytes: 2 << 30, Nvenc: 1}}
	}
	submit := func(poolPath string, n int, spec func(k int) *pb.TaskSpec) []string {
		var ids []string
		for n > 0 {
			size := min(n, 10_000)
			js := &pb.JobSpec{Name: "bench", Pool: poolPath}
			for k := range size {
				js.Tasks = append(js.Tasks, spec(len(ids)+k))
			}
			r := mustApply(tb, s, &fsmpb.Command{NowUnixMs: 2, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{js}}}})
			ids = append(ids, s.job(r.Jobs[0].Id).TaskIDs()...)
			n -= size
		}
		return ids
	}
	// Running work: on each agent in turn, as long as it has room.
	var asg []*fsmpb.Assignment
	flush := func() {
		if len(asg) > 0 {
			r := mustApply(tb, s, &fsmpb.Command{NowUnixMs: 3, Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: asg}}})
			if len(r.Assigned) != len(asg) {
				tb.Fatalf("setup: %d of %d assignments applied", len(r.Assigned), len(asg))
			}
			asg = nil
		}
	}
	placed := 0
	ids := s.AgentIDs()
	for round := 0; placed < f.running; round++ {
		progress := false
		specs := make([]*pb.TaskSpec, 0, len(ids))
		var targets []string
		var gpus [][]*pb.GPUGrant
		for i, id := range ids {
			if placed+len(specs) >= f.running {
				break
			}
			ag := s.agents[id]
			free := ag.Capacity.Sub(ag.Used)
			switch {
			case gpuHost(i) && round < 32:
				specs = append(specs, nvencTask())
				gpus = append(gpus, []*pb.GPUGrant{{Index: int32(round % 4), Uuid: fmt.Sprintf("GPU-%d-%d", i, round%4)}})
			case free.CPUMillis >= 2000 && free.MemoryBytes >= 4<<30:
				cpu := int64(1000)
				if (i+round)%3 == 0 {
					cpu = 2000
				}
				specs = append(specs, cpuTask(cpu))
				gpus = append(gpus, nil)
			case free.CPUMillis >= 1000:
				specs = append(specs, cpuTask(free.CPUMillis))
				gpus = append(gpus, nil)
			default:
				continue
			}
			targets = append(targets, id)
		}
		if len(specs) == 0 {
			break
		}
		tids := submit(runPool, len(specs), func(k int) *pb.TaskSpec { return specs[k] })
		for k, tid := range tids {
			asg = append(asg, &fsmpb.Assignment{TaskId: tid, Attempt: 1, AgentId: targets[k], Gpus: gpus[k]})
			progress = true
		}
		placed += len(tids)
		flush()
		if !progress {
			break
		}
	}
	if placed < f.running {
		tb.Fatalf("setup: the fleet took %d of %d running tasks", placed, f.running)
	}
	if f.full {
		// Take what cpu is left on every agent.
		var specs []*pb.TaskSpec
		var targets []string
		for _, id := range ids {
			ag := s.agents[id]
			if free := ag.Capacity.Sub(ag.Used); free.CPUMillis > 0 {
				specs = append(specs, &pb.TaskSpec{Command: []string{"fill"}, Resources: &pb.Resources{CpuMillis: free.CPUMillis}})
				targets = append(targets, id)
			}
		}
		if len(specs) > 0 {
			tids := submit(runPool, len(specs), func(k int) *pb.TaskSpec { return specs[k] })
			for k, tid := range tids {
				asg = append(asg, &fsmpb.Assignment{TaskId: tid, Attempt: 1, AgentId: targets[k]})
			}
			flush()
		}
	}
	// The queue: encodes of a few shapes, NVENC chunks, some pinned to a
	// zone, some function calls.
	submit(queuePool, f.queued, func(k int) *pb.TaskSpec {
		switch k % 8 {
		case 0, 1, 2:
			return cpuTask(2000)
		case 3:
			return cpuTask(4000)
		case 4:
			return nvencTask()
		case 5:
			t := cpuTask(1000)
			t.Constraints = []*pb.Constraint{{Label: "zone", Op: "=", Value: "z2"}}
			return t
		case 6:
			t := cpuTask(500)
			t.Command, t.Function = nil, "thumb"
			return t
		default:
			return cpuTask(8000)
		}
	})
	return s
}

func mustApply(tb testing.TB, s *State, c *fsmpb.Command) *Result {
	tb.Helper()
	r := s.Apply(c)
	if r.Err != nil {
		tb.Fatal(r.Err)
	}
	return r
}

// BenchmarkPlanPass10k measures one scheduling pass over 10,000 agents
// with 300,000 running tasks:
//
//   - busy: about a third of the capacity free, 50,000 queued (the pass
//     places up to MaxAssign);
//
//   - full: every agent's cpu taken, 50,000 queued (nothing fits: the
//     common steady state);
//
//   - full-preempt: the same, with the queue in a pool below its guarantee
//     and a budget of 20 preemptions (the server's default burst);
//
//   - few: capacity free and 10 tasks queued;
//
//   - churn: the cluster full, and before each pass 100 tasks finish on
//     100 agents and the previous pass's placements are committed (not
//     timed): the pass brings those agents up to date and fills the room.
//
//     go test -run X -bench PlanPass10k -benchmem ./scheduler/state
func BenchmarkPlanPass10k(b *testing.B) {
	cases := []struct {
		name    string
		fleet   planFleet
		preempt int
		want    func(*fsmpb.Assign) bool
	}{
		{"busy", planFleet{agents: 10_000, running: 300_000, queued: 50_000}, 0,
			func(a *fsmpb.Assign) bool { return len(a.Assignments) == DefaultPlanLimits.MaxAssign }},
		{"full", planFleet{agents: 10_000, running: 300_000, full: true, queued: 50_000}, 0,
			func(a *fsmpb.Assign) bool { return len(a.Assignments) == 0 }},
		{"full-preempt", planFleet{agents: 10_000, running: 300_000, full: true, queued: 50_000, pools: true}, 20,
			func(a *fsmpb.Assign) bool { return len(a.Preemptions) > 0 && len(a.Assignments) > 0 }},
		{"few", planFleet{agents: 10_000, running: 300_000, queued: 10}, 0,
			func(a *fsmpb.Assign) bool { return len(a.Assignments) == 9 }}, // no agent has 8 cores free
	}
	b.Run("churn", benchPlanChurn)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := benchFleetState(b, c.fleet)
			lim := DefaultPlanLimits
			lim.PreemptBudget = c.preempt
			now := int64(4) // every running task started less than MinRuntimeMs ago
			if c.preempt > 0 {
				now += DefaultPlanLimits.MinRuntimeMs // every one may be preempted
			}
			if a := s.Plan(now, lim); !c.want(a) {
				b.Fatalf("pass placed %d and preempted %d: not the case meant", len(a.Assignments), len(a.Preemptions))
			}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				s.Plan(now, lim)
			}
		})
	}
}

// benchPlanChurn is BenchmarkPlanPass10k/churn.
func benchPlanChurn(b *testing.B) {
	s := benchFleetState(b, planFleet{agents: 10_000, running: 300_000, full: true, queued: 50_000})
	ids := s.AgentIDs()
	now, next, placed := int64(10), 0, 0
	s.Plan(now, DefaultPlanLimits)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		now++
		var aes []*fsmpb.AgentEvents
		for range 100 {
			id := ids[next%len(ids)]
			next += 101
			if running := sortedKeys(s.agents[id].Running); len(running) > 0 {
				t := s.task(running[0])
				aes = append(aes, &fsmpb.AgentEvents{AgentId: id, Events: []*pb.TaskEvent{{TaskId: t.PB.Id,
					Attempt: t.Attempt(), Kind: "finished", Outcome: "succeeded", UnixMs: now}}})
			}
		}
		mustApply(b, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: aes}}})
		b.StartTimer()
		plan := s.Plan(now, DefaultPlanLimits)
		b.StopTimer()
		placed += len(plan.Assignments)
		mustApply(b, s, &fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_Assign{Assign: plan}})
		b.StartTimer()
	}
	if placed == 0 {
		b.Fatal("no pass placed anything in the room freed")
	}
	b.ReportMetric(float64(placed)/float64(b.N), "placed/pass")
}
