package pool

import (
	"fmt"
	"strings"
)

// View is one scheduling pass's picture of the pools: the tree, each pool's
// usage and the cluster's capacity. The scheduler builds one per pass,
// records the placements and preemptions it makes with Add and Remove, and
// asks it for admission (Admit), fair order (Order) and preemption victims
// (Victims). A View never changes the Tree or the usage map it was built
// from; the tree must not change while the View is in use.
type View struct {
	tree     *Tree
	children map[string][]string  // "" lists the top-level pools
	eff      map[string]Resources // effective guarantees (see Tree.EffectiveGuarantee)
	own      map[string]Resources // each pool's own usage, not rolled up
	rolled   map[string]Resources // usage including descendants
	total    Resources
	cluster  Resources
}

// NewView returns the view of a pass. usage holds each pool's own usage
// (the tasks submitted to it, not rolled up: work is submitted to leaf
// pools); cluster is the total capacity of the agents that are up. The
// usage map is copied.
func NewView(t *Tree, usage map[string]Resources, cluster Resources) *View {
	v := &View{tree: t, children: t.childIndex(), eff: map[string]Resources{},
		own: map[string]Resources{}, rolled: map[string]Resources{}, cluster: cluster}
	for _, p := range t.Paths() {
		v.eff[p] = effectiveGuarantee(t, v.children, p)
	}
	for p, r := range usage {
		v.Add(p, r)
	}
	return v
}

// Rolled returns the usage of path including its descendants.
func (v *View) Rolled(path string) Resources { return v.rolled[path] }

// Idle returns the capacity no task uses: the cluster less the total usage
// (fields go negative when agents holding work went down).
func (v *View) Idle() Resources { return v.cluster.Sub(v.total) }

// Add records a placement made in this pass for a task of path.
func (v *View) Add(path string, r Resources) {
	v.own[path] = v.own[path].Add(r)
	for _, p := range Ancestors(path) {
		v.rolled[p] = v.rolled[p].Add(r)
	}
	v.total = v.total.Add(r)
}

// Remove records that a task of path stopped in this pass (a preemption).
func (v *View) Remove(path string, r Resources) {
	v.own[path] = v.own[path].Sub(r)
	for _, p := range Ancestors(path) {
		v.rolled[p] = v.rolled[p].Sub(r)
	}
	v.total = v.total.Sub(r)
}

// Decision says whether a task may start and on what terms.
type Decision struct {
	// OK is true when the task may start.
	OK bool
	// Borrowed is true when it starts on idle capacity beyond its pool's
	// guarantee, and so may be preempted to give that capacity back.
	Borrowed bool
	// Reason says why not, for people, when OK is false.
	Reason string
}

// Admit decides whether a task of pool path asking for ask may start now.
// It may when path and every ancestor stay within their max after adding
// ask (an unset max is unlimited; the same rule as Tree.Admits), and either
//   - the ask is within guarantee (see WithinGuarantee), or
//   - the cluster's idle capacity (Idle) fits the whole ask: the task then
//     borrows (Decision.Borrowed) and Lender names whose guarantee it uses.
//
// A task within guarantee is admitted even when no capacity is idle: the
// caller then places it, or preempts borrowed work for it. A pool missing
// from the tree has no guarantee and no ceiling.
func (v *View) Admit(path string, ask Resources) Decision {
	for _, p := range Ancestors(path) {
		q := v.tree.pools[p]
		if over := q.ExceedsMax(v.rolled[p].Add(ask)); len(over) > 0 {
			return Decision{Reason: fmt.Sprintf("pool %s at its max %s", p, formatSome(q.Max, over))}
		}
	}
	if v.WithinGuarantee(path, ask) {
		return Decision{OK: true}
	}
	idle := v.Idle()
	if ask.Fits(idle) {
		return Decision{OK: true, Borrowed: true}
	}
	short := ask.Exceeds(idle)
	return Decision{Reason: fmt.Sprintf("pool %s is beyond its guarantee and the cluster has too little idle %s (idle %s, ask %s)",
		path, strings.Join(short, ","), formatSome(idle, short), formatSome(ask, short))}
}

// WithinGuarantee reports whether ask fits in the guarantees of path and of
// its ancestors, counted on the resources the ask uses (a positive field):
//
//   - path itself: Rolled(path) + ask <= its guarantee (for a leaf; a
//     pool with children counts them as below). A pool that guarantees
//     nothing has no task within guarantee (a zero ask is).
//   - each ancestor A that guarantees something: A's own usage + ask + the
//     sum over A's children c of covered(c) <= A's guarantee, where
//     covered(c) is the part of c's usage that guarantees cover, per
//     resource: min(c's guarantee, c's own usage + the covered usage of
//     c's children); for a c that guarantees nothing, just the covered
//     usage of its children (0 for a leaf).
//   - an ancestor that guarantees nothing only groups its children (as
//     Tree.Put allows): it is not checked, and passes the covered usage of
//     its children up uncapped.
//
// Capping at each child's guarantee means that a sibling running on
// borrowed capacity does not use up the parent's guarantee: capacity it
// borrowed can be taken back for a pool within its guarantee.
func (v *View) WithinGuarantee(path string, ask Resources) bool {
	on := used(ask)
	prev := "" // the child of the current pool on the path to path
	var prevCovered Resources
	for i, p := range Ancestors(path) {
		g := v.tree.pools[p].Guaranteed
		var kids Resources // covered usage of p's children, with the ask
		if i > 0 {
			kids = prevCovered
		}
		for _, c := range v.children[p] {
			if c != prev {
				kids = kids.Add(v.covered(c))
			}
		}
		if i == 0 || !g.IsZero() {
			u := v.own[p].Add(kids)
			if i == 0 {
				u = u.Add(ask)
			}
			if !fitsOn(u, g, on) {
				return false
			}
			prevCovered = minVec(u, g)
		} else {
			prevCovered = kids
		}
		prev = p
	}
	return true
}

// covered is the usage of path's subtree that the guarantees inside it
// cover (see WithinGuarantee).
func (v *View) covered(path string) Resources {
	var kids Resources
	for _, c := range v.children[path] {
		kids = kids.Add(v.covered(c))
	}
	if g := v.tree.pools[path].Guaranteed; !g.IsZero() {
		return minVec(v.own[path].Add(kids), g)
	}
	return kids
}

// Lender names the pool whose unused guarantee a borrowed ask of path is
// counted against, for reporting and for taking it back: the nearest pool
// outside path's own line whose unused effective guarantee (effective
// guarantee minus Rolled, see Tree.EffectiveGuarantee) covers the ask on
// every resource it uses. Siblings of path come first (in path order), then
// the siblings of its parent, and so on up to the top-level pools. It
// returns "" when the ask is within guarantee (nothing is borrowed) or when
// no guarantee covers it (it runs on capacity nobody is guaranteed).
func (v *View) Lender(path string, ask Resources) string {
	if v.WithinGuarantee(path, ask) {
		return ""
	}
	on := used(ask)
	for _, p := range Ancestors(path) {
		for _, sib := range v.children[Parent(p)] {
			if sib == p {
				continue
			}
			if unused := v.eff[sib].Sub(v.rolled[sib]); fitsOn(ask, unused, on) && !v.eff[sib].IsZero() {
				return sib
			}
		}
	}
	return ""
}
