package state

import (
	"fmt"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// Drain and eligibility. A cordoned (ineligible) agent gets no new work;
// a draining one is cordoned and its running tasks may finish until the
// drain's deadline, when the leader commits AgentDrainDeadline and what is
// left is stopped and requeued without using a retry (opportunistic work
// is left running when the drain keeps it). Placement leaves both out.

// AgentSelfDrain is AgentDrain.by for an agent that drains itself on
// SIGTERM: its next session (a restart) ends that drain.
const AgentSelfDrain = "agent"

// schedulable reports whether new work may be placed on the agent.
func (a *Agent) schedulable() bool { return a.Up() && !a.PB.Ineligible && a.PB.Drain == nil }

func (s *State) applyAgentScheduling(now int64, c *fsmpb.AgentScheduling, r *Result) {
	ag, ok := s.agents[c.AgentId]
	if !ok {
		r.Err = fmt.Errorf("%w: %s", ErrAgentNotFound, c.AgentId)
		return
	}
	s.wAgent(ag)
	ag.PB.Ineligible = c.Ineligible
	s.agentChanged(c.AgentId)
	defer func() {
		what := "eligible"
		switch {
		case ag.PB.Drain != nil:
			what = "draining"
		case ag.PB.Ineligible:
			what = "ineligible"
		}
		s.noteAgent(ag, KindSchedule, ag.PB.State, what)
	}()
	if c.Drain == nil {
		ag.PB.Drain = nil
		return
	}
	d := clone(c.Drain)
	d.Complete = false
	if prev := ag.PB.Drain; prev != nil && prev.StartedUnixMs != 0 {
		d.StartedUnixMs = prev.StartedUnixMs // a new deadline keeps the drain's start
	} else {
		d.StartedUnixMs = now
	}
	ag.PB.Drain, ag.PB.Ineligible = d, true
}

// drainWaitsFor reports whether a drain of ag waits for task t (and stops
// it at the deadline).
func (s *State) drainWaitsFor(ag *Agent, t *Task) bool {
	if d := ag.PB.Drain; d != nil && d.KeepOpportunistic {
		return s.job(t.PB.JobId).PB.Class != pb.JobClass_JOB_CLASS_OPPORTUNISTIC
	}
	return true
}

// drainComplete reports whether no task a drain waits for runs on ag.
func (s *State) drainComplete(ag *Agent) bool {
	for id := range ag.Running {
		if s.drainWaitsFor(ag, s.task(id)) {
			return false
		}
	}
	return true
}

func (s *State) applyAgentDrainDeadline(now int64, c *fsmpb.AgentDrainDeadline, r *Result) {
	ag, ok := s.agents[c.AgentId]
	if !ok || ag.PB.Drain == nil {
		return // the drain ended (or the agent went) before this entry
	}
	reason := fmt.Sprintf("agent %s drained: its deadline passed", c.AgentId)
	for _, id := range sortedKeys(ag.Running) {
		t := s.task(id)
		if !s.drainWaitsFor(ag, t) {
			continue
		}
		s.wTask(t)
		t.current().Error = reason
		r.Cancels = append(r.Cancels, Cancel{AgentID: c.AgentId, TaskID: id, Attempt: t.Attempt(), Reason: reason})
		s.finish(now, t, "preempted", failure.Preempted, r)
	}
}

// DrainsDue lists the agents whose drain deadline has passed at now and
// that still run tasks the drain stops, sorted.
func (s *State) DrainsDue(now int64) []string {
	var out []string
	for _, id := range s.AgentIDs() {
		ag := s.agents[id]
		d := ag.PB.Drain
		if d == nil || d.DeadlineUnixMs == 0 || now < d.DeadlineUnixMs || s.drainComplete(ag) {
			continue
		}
		out = append(out, id)
	}
	return out
}
