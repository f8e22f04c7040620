package state

import (
	"fmt"
	"maps"
	"reflect"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
)

// checkAgentIndex brings the agent index up to date (building it the first
// time) and compares it with the agents listed afresh: every command that
// changes placement's view of an agent must have marked it. It returns a
// description of each difference.
func checkAgentIndex(s *State) []string {
	x := &s.agentIdx
	x.mu.Lock()
	defer x.mu.Unlock()
	x.syncLocked(s)
	var errs []string
	got, want := x.fleet.Nodes(), s.nodes()
	if len(got) != len(want) {
		return []string{fmt.Sprintf("agent index has %d nodes, the agents %d", len(got), len(want))}
	}
	for i := range got {
		g, w := got[i], want[i]
		if !maps.Equal(g.Labels, w.Labels) {
			errs = append(errs, fmt.Sprintf("agent index: node %s labels %v, agent %v", w.ID, g.Labels, w.Labels))
		}
		g.Labels, w.Labels = nil, nil
		if !reflect.DeepEqual(g, w) {
			errs = append(errs, fmt.Sprintf("agent index: node %+v, agent %+v", g, w))
		}
	}
	if c := s.Cluster(); x.cluster != c {
		errs = append(errs, fmt.Sprintf("agent index: cluster %v, agents %v", x.cluster, c))
	}
	return errs
}

// TestPlanKeepsIndex plans on a state whose agents change between passes
// (placements, a drain, an agent down and back, a new agent, new GPUs) and
// wants each pass to decide as one over a Placer built afresh from the
// agents, and the index to match the agents after each command.
func TestPlanKeepsIndex(t *testing.T) {
	s := benchFleetState(t, planFleet{agents: 60, running: 600, queued: 400})
	now := int64(10)
	apply := func(c *fsmpb.Command) *Result {
		t.Helper()
		now++
		c.NowUnixMs = now
		r := s.Apply(c)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if errs := checkInvariants(s, true); len(errs) > 0 {
			t.Fatalf("after %T: %v", c.Cmd, errs)
		}
		return r
	}
	for step := 0; step < 12; step++ {
		plan := s.Plan(now, DefaultPlanLimits)
		if want := s.planFresh(now, DefaultPlanLimits); !reflect.DeepEqual(plan, want) {
			t.Fatalf("step %d: plan over the index differs from one built afresh:\n%v\n%v", step, plan, want)
		}
		if len(plan.Assignments) == 0 && step > 0 {
			t.Fatalf("step %d: nothing placed", step)
		}
		// Commit half of it, finish some running work, change agents.
		plan.Assignments = plan.Assignments[:len(plan.Assignments)/2]
		r := apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}})
		var evs []*pb.TaskEvent
		for i, a := range r.Assigned {
			if i%3 == 0 {
				evs = append(evs, &pb.TaskEvent{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "finished", Outcome: "succeeded", UnixMs: now})
			}
		}
		if len(r.Assigned) > 0 {
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
				AgentId: r.Assigned[0].AgentId, Events: evs[:1]}}}}})
		}
		ids := s.AgentIDs()
		switch step % 4 {
		case 0:
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentScheduling{AgentScheduling: &fsmpb.AgentScheduling{
				AgentId: ids[step], Ineligible: true}}})
		case 1:
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: ids[step], Reason: "test"}}})
		case 2:
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: fmt.Sprintf("new-%d", step),
				Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 48000, MemoryBytes: 96 << 30}}}}})
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: ids[step-1],
				Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 8000, MemoryBytes: 16 << 30}}}}})
		default:
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDevices{AgentDevices: &fsmpb.AgentDevices{AgentId: ids[3],
				Update: &pb.DeviceUpdate{Gpus: []*pb.GPU{{Index: 0, Uuid: fmt.Sprint("GPU-x", step), MemoryBytes: 24 << 30,
					EncoderSessions: 8, Unhealthy: map[bool]string{true: "xid 79"}[step%8 == 3]}}}}}})
		}
	}
}

// planFresh is Plan over a Placer built from every agent afresh, as
// before the index: the reference TestPlanKeepsIndex compares with.
func (s *State) planFresh(now int64, lim PlanLimits) *fsmpb.Assign {
	x := &s.agentIdx
	x.mu.Lock()
	saved, savedDirty, savedCluster := x.fleet, maps.Clone(x.dirty), x.cluster
	x.fleet, x.dirty, x.cluster = placement.NewFleet(s.nodes()), nil, s.Cluster()
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.fleet, x.dirty, x.cluster = saved, savedDirty, savedCluster
		x.mu.Unlock()
	}()
	return s.Plan(now, lim)
}

// TestPlanConcurrentReaders runs passes from several goroutines at once, as
// readers under the FSM's read lock may: each must decide as a pass alone
// does (run under -race, this also checks that passes do not race on the
// index).
func TestPlanConcurrentReaders(t *testing.T) {
	s := benchFleetState(t, planFleet{agents: 40, running: 300, queued: 200})
	want := s.Plan(10, DefaultPlanLimits)
	if len(want.Assignments) == 0 {
		t.Fatal("nothing placed")
	}
	errs := make(chan string, 8)
	for range 4 {
		go func() {
			for range 5 {
				if got := s.Plan(10, DefaultPlanLimits); !reflect.DeepEqual(got, want) {
					errs <- fmt.Sprintf("a concurrent pass placed %d, alone %d", len(got.Assignments), len(want.Assignments))
					return
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
}
