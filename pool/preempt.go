package pool

import (
	"cmp"
	"slices"
	"strings"
)

// Class is a job's class, numbered as on the wire.
type Class int32

// The job classes.
const (
	// ClassLatency is interactive work that should start at once.
	ClassLatency Class = 1
	// ClassBatch is ordinary queued work.
	ClassBatch Class = 2
	// ClassOpportunistic runs on idle capacity and is the first to yield.
	ClassOpportunistic Class = 3
)

// Running is a task that holds capacity on a node, as the preemption
// policy sees it.
type Running struct {
	// TaskID names the task.
	TaskID string
	// Pool is the pool of the task's job.
	Pool string
	// Node is the agent the task runs on.
	Node string
	// Ask is what the task holds.
	Ask Resources
	// Class is its job's class.
	Class Class
	// Priority is its job's priority; higher is more important.
	Priority int32
	// StartedMs is when it started (unix ms).
	StartedMs int64
}

// RunningByNode holds running tasks by the node they run on.
type RunningByNode map[string][]Running

// GroupByNode groups running tasks by Node.
func GroupByNode(running []Running) RunningByNode {
	out := RunningByNode{}
	for _, r := range running {
		out[r.Node] = append(out[r.Node], r)
	}
	return out
}

// NodeFree is the free capacity of one node that the pending task could
// run on (the caller has already applied its constraints).
type NodeFree struct {
	// Node is the agent id.
	Node string
	// Free is its capacity less what its tasks hold.
	Free Resources
}

// PreemptPolicy bounds what one Victims call may stop.
type PreemptPolicy struct {
	// MinRuntimeMs protects tasks that have run less than this long.
	MinRuntimeMs int64
	// MaxVictims is the most victims one call may return; 0 or less
	// allows none.
	MaxVictims int
}

// Preemption is the answer of Victims: the node to run the pending task on
// and the tasks to stop there first.
type Preemption struct {
	// Node is the chosen node.
	Node string
	// Victims are the task ids to stop, in the order they were chosen.
	Victims []string
}

// Victims picks the fewest, cheapest running tasks to stop so that ask, a
// task of pool path, fits on one of nodes. It answers only for a pool
// within its guarantee (see WithinGuarantee), and ok is false otherwise or
// when nothing legal frees enough within p.MaxVictims.
//
// A running task on one of nodes is a candidate when it has run at least
// p.MinRuntimeMs before now, its pool is not path, and either
//   - it is opportunistic (always the first to yield), or
//   - it runs on borrowed capacity: its pool, and each ancestor of its pool
//     below the lowest ancestor it shares with path, stays at or above its
//     guarantee, on every resource the task uses, after this and the
//     victims already chosen stop. A pool at or under its guarantee keeps
//     all its tasks, and victims never take a pool below it.
//
// On each node the candidates are taken opportunistic first, then by
// lowest priority, most recently started, task id, skipping those that are
// not legal or free nothing still missing, until the ask fits; then every
// victim not needed for the fit is dropped (latest chosen first), so
// stopping any one fewer would leave the ask unfitted. Among the nodes
// where that works the answer is the one with the fewest non-opportunistic
// victims, then the fewest victims, then the lowest highest victim
// priority, then the lowest node id. A node where the ask already fits is
// returned with no victims.
//
// Victims changes nothing: the caller records each victim with Remove.
//
// running holds the tasks on each node; their order does not matter.
func (v *View) Victims(path string, ask Resources, nodes []NodeFree, running RunningByNode, now int64, p PreemptPolicy) (Preemption, bool) {
	if !v.WithinGuarantee(path, ask) {
		return Preemption{}, false
	}
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(a, b NodeFree) int { return strings.Compare(a.Node, b.Node) })
	var best *nodePlan
	for _, n := range sorted {
		plan, ok := v.planNode(path, ask, n, running[n.Node], now, p)
		if ok && (best == nil || plan.better(best)) {
			best = &plan
		}
	}
	if best == nil {
		return Preemption{}, false
	}
	ids := make([]string, len(best.victims))
	for i, r := range best.victims {
		ids[i] = r.TaskID
	}
	return Preemption{Node: best.node, Victims: ids}, true
}

// nodePlan is the victims chosen on one node.
type nodePlan struct {
	node    string
	victims []Running
}

func (n nodePlan) cost() (nonOpp, count int, maxPrio int32) {
	maxPrio = -1 << 31
	for _, r := range n.victims {
		if r.Class != ClassOpportunistic {
			nonOpp++
		}
		maxPrio = max(maxPrio, r.Priority)
	}
	return nonOpp, len(n.victims), maxPrio
}

// better reports whether n is a better answer than o (see Victims); nodes
// are tried in id order, so a tie keeps the earlier node.
func (n nodePlan) better(o *nodePlan) bool {
	a1, a2, a3 := n.cost()
	b1, b2, b3 := o.cost()
	if c := cmp.Compare(a1, b1); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(a2, b2); c != 0 {
		return c < 0
	}
	return a3 < b3
}

// candidateOrder sorts victims: opportunistic first, then lowest priority,
// most recently started, task id.
func candidateOrder(a, b Running) int {
	ao, bo := a.Class == ClassOpportunistic, b.Class == ClassOpportunistic
	if ao != bo {
		if ao {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(b.StartedMs, a.StartedMs); c != 0 {
		return c
	}
	return strings.Compare(a.TaskID, b.TaskID)
}

// planNode chooses victims on one node among the tasks running there (see
// Victims).
func (v *View) planNode(path string, ask Resources, n NodeFree, running []Running, now int64, p PreemptPolicy) (nodePlan, bool) {
	plan := nodePlan{node: n.Node}
	if ask.Fits(n.Free) {
		return plan, true
	}
	var cands []Running
	for _, r := range running {
		if r.Pool != path && now-r.StartedMs >= p.MinRuntimeMs {
			cands = append(cands, r)
		}
	}
	slices.SortStableFunc(cands, candidateOrder)
	mine := map[string]bool{}
	for _, a := range Ancestors(path) {
		mine[a] = true
	}
	removed := map[string]Resources{} // by pool, rolled up
	freed := n.Free
	for _, r := range cands {
		if ask.Fits(freed) {
			break
		}
		if !helps(r.Ask, ask.Sub(freed)) || !v.mayStop(r, mine, removed) {
			continue
		}
		plan.victims = append(plan.victims, r)
		freed = freed.Add(r.Ask)
		for _, a := range Ancestors(r.Pool) {
			removed[a] = removed[a].Add(r.Ask)
		}
	}
	if !ask.Fits(freed) {
		return nodePlan{}, false
	}
	for i := len(plan.victims) - 1; i >= 0; i-- {
		if without := freed.Sub(plan.victims[i].Ask); ask.Fits(without) {
			freed = without
			plan.victims = slices.Delete(plan.victims, i, i+1)
		}
	}
	if len(plan.victims) > p.MaxVictims {
		return nodePlan{}, false
	}
	return plan, true
}

// helps reports whether stopping a task holding r frees some of missing
// (the positive fields of missing are what the ask still lacks).
func helps(r, missing Resources) bool {
	rv, mv := r.values(), missing.values()
	for i := range rv {
		if rv[i] > 0 && mv[i] > 0 {
			return true
		}
	}
	return false
}

// mayStop reports whether r may be preempted given the victims already
// chosen (removed, rolled up by pool); mine holds the requesting pool and
// its ancestors.
func (v *View) mayStop(r Running, mine map[string]bool, removed map[string]Resources) bool {
	if r.Class == ClassOpportunistic {
		return true
	}
	on := used(r.Ask)
	for _, a := range Ancestors(r.Pool) {
		if mine[a] {
			break
		}
		after := v.rolled[a].Sub(removed[a]).Sub(r.Ask)
		if !fitsOn(v.tree.pools[a].Guaranteed, after, on) {
			return false
		}
	}
	return true
}
