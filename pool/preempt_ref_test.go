package pool

import (
	"cmp"
	"slices"
	"strings"
)

// This file keeps the first implementation of View.Victims, which planned
// every candidate node in full, as the reference the property test
// TestVictimsMatchesReference compares the fast one with.

// refVictims is Victims as first written. Victims picks the fewest, cheapest running tasks to stop so that ask, a
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
func (v *View) refVictims(path string, ask Resources, nodes []NodeFree, running RunningByNode, now int64, p PreemptPolicy) (Preemption, bool) {
	if !v.WithinGuarantee(path, ask) {
		return Preemption{}, false
	}
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(a, b NodeFree) int { return strings.Compare(a.Node, b.Node) })
	var best *refPlan
	for _, n := range sorted {
		plan, ok := v.refPlanNode(path, ask, n, running[n.Node], now, p)
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

// refPlan is the victims chosen on one node.
type refPlan struct {
	node    string
	victims []Running
}

func (n refPlan) cost() (nonOpp, count int, maxPrio int32) {
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
func (n refPlan) better(o *refPlan) bool {
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
func refCandidateOrder(a, b Running) int {
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
func (v *View) refPlanNode(path string, ask Resources, n NodeFree, running []Running, now int64, p PreemptPolicy) (refPlan, bool) {
	plan := refPlan{node: n.Node}
	if ask.Fits(n.Free) {
		return plan, true
	}
	var cands []Running
	for _, r := range running {
		if r.Pool != path && now-r.StartedMs >= p.MinRuntimeMs {
			cands = append(cands, r)
		}
	}
	slices.SortStableFunc(cands, refCandidateOrder)
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
		if !refHelps(r.Ask, ask.Sub(freed)) || !v.refMayStop(r, mine, removed) {
			continue
		}
		plan.victims = append(plan.victims, r)
		freed = freed.Add(r.Ask)
		for _, a := range Ancestors(r.Pool) {
			removed[a] = removed[a].Add(r.Ask)
		}
	}
	if !ask.Fits(freed) {
		return refPlan{}, false
	}
	for i := len(plan.victims) - 1; i >= 0; i-- {
		if without := freed.Sub(plan.victims[i].Ask); ask.Fits(without) {
			freed = without
			plan.victims = slices.Delete(plan.victims, i, i+1)
		}
	}
	if len(plan.victims) > p.MaxVictims {
		return refPlan{}, false
	}
	return plan, true
}

// helps reports whether stopping a task holding r frees some of missing
// (the positive fields of missing are what the ask still lacks).
func refHelps(r, missing Resources) bool {
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
func (v *View) refMayStop(r Running, mine map[string]bool, removed map[string]Resources) bool {
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
