package state

import (
	"fmt"
	"strings"

	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
	"github.com/banyan-sched/banyan/scheduler/queue"
)

// PlanLimits bound one scheduling pass so that it never holds the state for
// long: a pass places at most MaxAssign tasks and looks at most at MaxScan
// queued tasks.
type PlanLimits struct {
	MaxAssign int
	MaxScan   int
}

// DefaultPlanLimits are the leader's limits per pass.
var DefaultPlanLimits = PlanLimits{MaxAssign: 4096, MaxScan: 65536}

// Plan is one scheduling pass: it walks the queue in order (class, priority,
// submit order, merged over pools) and places each task that is due, whose
// exclusive key is free and whose pool stays within its max, on the agent
// that placement picks. It changes nothing; the leader commits the result
// through raft, where Apply re-checks every assignment.
func (s *State) Plan(now int64, lim PlanLimits) []*fsmpb.Assignment {
	placer := placement.NewPlacer(s.nodes())
	usage := s.PoolUsage()
	held := map[string]bool{}
	var out []*fsmpb.Assignment
	scanned := 0
	s.queue.Ascend(func(it queue.Item) bool {
		if len(out) >= lim.MaxAssign || scanned >= lim.MaxScan || placer.Full() {
			return false
		}
		scanned++
		t := s.tasks[it.TaskID]
		if t.PB.NotBeforeUnixMs > now {
			return true
		}
		key := t.PB.Spec.ExclusiveKey
		if key != "" && (s.exclusive[key] != "" || held[key]) {
			return true
		}
		if !s.pools.Admits(it.Pool, usage, t.Ask) {
			return true
		}
		agent, ok := placer.Place(askOf(t))
		if !ok {
			return true
		}
		for _, p := range pool.Ancestors(it.Pool) {
			usage[p] = usage[p].Add(t.Ask)
		}
		if key != "" {
			held[key] = true
		}
		out = append(out, &fsmpb.Assignment{TaskId: t.PB.Id, Attempt: t.Attempt(), AgentId: agent})
		return true
	})
	return out
}

// nodes returns the agents as placement sees them.
func (s *State) nodes() []placement.Node {
	out := make([]placement.Node, 0, len(s.agents))
	for _, id := range s.AgentIDs() {
		a := s.agents[id]
		out = append(out, placement.Node{ID: id, Capacity: a.Capacity, Used: a.Used,
			Labels: a.PB.GetFingerprint().GetLabels(), Up: a.Up()})
	}
	return out
}

func askOf(t *Task) placement.Ask {
	a := placement.Ask{Resources: t.Ask}
	for _, c := range t.PB.Spec.Constraints {
		op := c.Op
		if op == "==" { // accepted by ValidateConstraint as a spelling of "="
			op = placement.OpEqual
		}
		a.Constraints = append(a.Constraints, placement.Constraint{Label: c.Label, Op: op, Value: c.Value})
	}
	return a
}

func askKey(t *Task) string {
	var b strings.Builder
	fmt.Fprint(&b, t.Ask)
	for _, c := range t.PB.Spec.Constraints {
		fmt.Fprintf(&b, "|%s%s%s", c.Label, c.Op, c.Value)
	}
	return b.String()
}

func explainBlocked(nodes []placement.Node, t *Task) string {
	return placement.Explain(nodes, askOf(t))
}
