package agent

import (
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// Draining on shutdown: an agent told to stop (SIGTERM) asks the leader to
// drain it (no new work), lets its running tasks finish for a grace, and
// only then stops; what still runs at the end of the grace is stopped and
// requeued by the leader without using a retry.

// Drain asks the leader to drain this agent with the given grace, on the
// current session and again on every session opened until the agent
// stops. It returns at once; Running says when the tasks are done.
func (a *Agent) Drain(grace time.Duration) {
	a.mu.Lock()
	if a.drainUntil.IsZero() {
		a.drainUntil = a.cfg.Clock().Add(grace)
	}
	a.mu.Unlock()
	select {
	case a.drainSignal <- struct{}{}:
	default:
	}
	a.log.Info("draining: no new work; running tasks may finish", "grace", grace, "running", a.Running())
}

// drainMessage is the DrainSelf message for the time left of the drain's
// grace, or nil when the agent is not draining.
func (a *Agent) drainMessage() *pb.AgentMessage {
	a.mu.Lock()
	until := a.drainUntil
	a.mu.Unlock()
	if until.IsZero() {
		return nil
	}
	left := max(until.Sub(a.cfg.Clock()), 0)
	return &pb.AgentMessage{Msg: &pb.AgentMessage_Drain{Drain: &pb.DrainSelf{GraceMs: left.Milliseconds()}}}
}
