// Package placement decides which agent a task goes to. It is pure logic: no
// I/O, no clock, no goroutines and no randomness. Given the same nodes and the
// same sequence of calls it always makes the same decisions, so a decision can
// be replayed and tested as data.
//
// Placement works in three steps:
//
//  1. filter: only nodes that are up and match every constraint of the ask;
//  2. fit: the ask must fit in what the node has free (capacity minus use) on
//     every resource; a resource a node has zero capacity of cannot be given;
//  3. score: bin-packing (best fit). Among the nodes that fit, the one that is
//     most utilized after the placement wins, so that big holes are kept for
//     big tasks. Ties are broken by the smallest node ID.
//
// Utilization of a node is the weighted average, over the resources the node
// has (capacity > 0), of used/capacity after placement. GPU resources (gpu,
// gpu_memory, nvenc) weigh GPUWeight times as much as cpu and memory, so GPU
// tasks pack tightly onto GPU hosts. On top of the score, a task that asks no
// GPU resource at all (no gpu, gpu_memory or nvenc) always prefers a node
// without GPU resources when one fits: GPU hosts are not spent on CPU work
// while a CPU-only host can take it.
//
// A scheduler that places work many times a second over thousands of
// nodes keeps them in a Fleet (fleet.go): it tells the Fleet which nodes
// changed, and each pass borrows a Placer from it. The Fleet indexes the
// nodes by free capacity, so that a pass costs what it places, not the
// size of the fleet: an ask that no node has room for fails at once, and
// one that fits looks at a few subtrees of the index, with the decisions a
// scan over every node would make.
package placement

import (
	"errors"
	"fmt"
	"slices"

	"github.com/banyan-sched/banyan/pool"
)

// Constraint operators. An empty Op means OpEqual.
const (
	// OpEqual matches nodes that have the label with exactly Value.
	OpEqual = "="
	// OpNotEqual matches nodes that lack the label or have another value.
	OpNotEqual = "!="
	// OpExists matches nodes that have the label, whatever its value.
	OpExists = "exists"
	// OpNotExists matches nodes that do not have the label.
	OpNotExists = "not_exists"
)

// GPUWeight is how much more each GPU resource (gpu, gpu_memory, nvenc)
// counts than cpu or memory in a node's utilization score.
const GPUWeight = 2

// numRes is the number of resources in a pool.Resources vector.
const numRes = 5

// Node is an agent as placement sees it.
type Node struct {
	// ID names the node; it must be unique. Ties are broken by it.
	ID string
	// Capacity is what the node offers in total.
	Capacity pool.Resources
	// Used is what tasks placed on the node use now.
	Used pool.Resources
	// Labels are matched by constraints.
	Labels map[string]string
	// Up is false for nodes that must not get work.
	Up bool
	// Devices, when listed, are the node's GPUs and MIG instances: GPU
	// asks are placed on them (devices.go). Without them a GPU ask is
	// judged on the node's totals.
	Devices []Device
	// NVENCSystemCap caps NVENC sessions across the node's SystemCapped
	// devices (0: no cap); NVENCSystemUsed is what placed tasks hold of it.
	NVENCSystemCap, NVENCSystemUsed int64
}

// Constraint restricts a task to nodes whose label matches.
type Constraint struct {
	// Label is the label key; it must not be empty.
	Label string
	// Op is one of OpEqual (or ""), OpNotEqual, OpExists, OpNotExists.
	Op string
	// Value is compared for OpEqual and OpNotEqual and ignored otherwise.
	Value string
}

// String renders c for people: "zone=a", "zone!=a", "exists(ssd)",
// "not_exists(spot)".
func (c Constraint) String() string {
	switch c.Op {
	case OpEqual, "":
		return c.Label + "=" + c.Value
	case OpNotEqual:
		return c.Label + "!=" + c.Value
	default:
		return c.Op + "(" + c.Label + ")"
	}
}

// Matches reports whether a node with the given labels satisfies c. An
// invalid constraint (see ValidateConstraint) matches nothing.
func (c Constraint) Matches(labels map[string]string) bool {
	v, ok := labels[c.Label]
	switch c.Op {
	case OpEqual, "":
		return ok && v == c.Value && c.Label != ""
	case OpNotEqual:
		return (!ok || v != c.Value) && c.Label != ""
	case OpExists:
		return ok && c.Label != ""
	case OpNotExists:
		return !ok && c.Label != ""
	}
	return false
}

// Ask is what one task needs.
type Ask struct {
	// Resources must all fit in one node's free capacity.
	Resources pool.Resources
	// Constraints must all match the node's labels.
	Constraints []Constraint
}

// ValidateConstraint returns an error naming the problem for an unknown op or
// an empty label, and nil for a valid constraint.
func ValidateConstraint(c Constraint) error {
	if c.Label == "" {
		return errors.New("constraint has an empty label")
	}
	switch c.Op {
	case OpEqual, "", OpNotEqual, OpExists, OpNotExists:
		return nil
	}
	return fmt.Errorf("constraint on label %q: unknown op %q (known: =, !=, exists, not_exists)", c.Label, c.Op)
}

// vec returns the fields of r in pool.ResourceNames order.
func vec(r pool.Resources) [numRes]int64 {
	return [numRes]int64{r.CPUMillis, r.MemoryBytes, r.GPUs, r.GPUMemoryBytes, r.NVENC}
}

// fromVec is the inverse of vec.
func fromVec(v [numRes]int64) pool.Resources {
	return pool.Resources{CPUMillis: v[0], MemoryBytes: v[1], GPUs: v[2], GPUMemoryBytes: v[3], NVENC: v[4]}
}

// resWeight is the score weight of each resource, in vec order.
var resWeight = [numRes]float64{1, 1, GPUWeight, GPUWeight, GPUWeight}

// hasGPU reports whether r has any GPU resource (gpu, gpu_memory, nvenc).
func hasGPU(r pool.Resources) bool {
	return r.GPUs != 0 || r.GPUMemoryBytes != 0 || r.NVENC != 0
}

// fits reports whether ask fits in free on every resource.
func fits(ask, free *[numRes]int64) bool {
	return ask[0] <= free[0] && ask[1] <= free[1] && ask[2] <= free[2] &&
		ask[3] <= free[3] && ask[4] <= free[4]
}

// nodeState is one node inside a Fleet.
type nodeState struct {
	free  [numRes]int64   // capacity - used
	scale [numRes]float64 // weight/(capacity*sum of weights), 0 where capacity <= 0
	used  [numRes]int64
	cap   [numRes]int64
	gpu   bool // node has some GPU resource
	id    string
	// labels is the caller's map; the Placer only reads it.
	labels map[string]string
	// devs are the node's devices (copied), sysCap/sysUsed its NVENC
	// system cap and its use.
	devs            []devState
	sysCap, sysUsed int64
	// up is false for a node that takes no work; tree and leaf place the
	// node in its Fleet's index; mark is the last pass that saved it.
	up   bool
	tree int32
	leaf int32
	mark uint64
}

// score is the node's utilization after adding ask, in [0, 1] when ask fits.
// Each product is rounded explicitly so results do not depend on whether the
// platform fuses multiply-add: placement is the same on every machine.
func (n *nodeState) score(ask *[numRes]int64) float64 {
	var s float64
	for i := 0; i < numRes; i++ {
		s += float64(float64(n.used[i]+ask[i]) * n.scale[i])
	}
	return s
}

// Placer places tasks on a set of nodes during one scheduling pass, tracking
// what it has placed so later tasks in the same pass see it. A Placer is not
// safe for concurrent use.
//
// A Placer works on a Fleet (fleet.go): its own, from NewPlacer, or one
// kept by the caller across passes, from Fleet.Placer; then Close puts the
// Fleet back as it was. The Fleet's index by free capacity lets Place skip
// nodes that cannot hold the ask, and fail at once when none can. Two
// caches make repeated asks cheaper still; neither changes any decision:
//
//   - candidate lists per constraint: the nodes (sorted by ID) matching a
//     constraint are computed once and kept by the Fleet until labels
//     change; an ask whose constraint matches few nodes scans just those;
//   - failed shapes: an ask (resources and constraints, compared exactly) that
//     found no node is remembered. Place only ever lowers free capacity, so
//     an ask that found no room cannot find room later in the pass; an
//     identical ask fails at once. Release raises free capacity and so
//     forgets every failed shape.
type Placer struct {
	f *Fleet
	// borrowed is set for a Placer from Fleet.Placer: saved holds the
	// nodes as they were before the pass changed them, for Close.
	borrowed, closed bool
	saved            []savedNode
	withCPU0         int
	// scanAll makes Place scan every node instead of walking the index
	// (tests compare the two).
	scanAll bool
	// visits counts the index subtrees Place looked at (tests read it).
	visits int
	// failed maps the hash of a failed ask to the head of a chain in fails.
	failed map[uint64]int32
	fails  []failEntry
}

// savedNode is a node as it was before a pass first changed it.
type savedNode struct {
	pos int32
	n   nodeState
}

// failEntry is one remembered failed ask; next chains entries with the same
// hash (-1 ends the chain).
type failEntry struct {
	res  pool.Resources
	cons []Constraint
	next int32
}

// NewPlacer returns a Placer over the up nodes among nodes. It copies the
// IDs, capacity and use it needs; label maps are shared and must not change
// while the Placer is in use. Down nodes are ignored. If an ID repeats, the
// first up node with it is used.
func NewPlacer(nodes []Node) *Placer {
	f := &Fleet{index: make(map[string]int, len(nodes)), cands: map[Constraint][]int32{}}
	for i := range nodes {
		n := &nodes[i]
		if _, dup := f.index[n.ID]; dup || !n.Up {
			continue
		}
		f.setLocked(n)
	}
	f.rebuildLocked()
	return &Placer{f: f, failed: map[uint64]int32{}}
}

// Close ends a pass opened with Fleet.Placer: every node the pass changed
// is put back as it was and the Fleet is released. The Placer must not be
// used afterwards. For a Placer from NewPlacer, Close does nothing.
func (p *Placer) Close() {
	if !p.borrowed || p.closed {
		return
	}
	p.closed = true
	f := p.f
	for i := len(p.saved) - 1; i >= 0; i-- {
		sv := &p.saved[i]
		n := &f.nodes[sv.pos]
		*n = sv.n
		f.trees[n.tree].update(n.leaf, n)
	}
	f.withCPU = p.withCPU0
	p.saved = nil
	f.mu.Unlock()
}

// save keeps node pos as it is, the first time a borrowed Placer changes it.
func (p *Placer) save(pos int32) {
	if !p.borrowed {
		return
	}
	n := &p.f.nodes[pos]
	if n.mark == p.f.epoch {
		return
	}
	n.mark = p.f.epoch
	c := *n
	if len(n.devs) > 0 {
		c.devs = slices.Clone(n.devs)
	}
	p.saved = append(p.saved, savedNode{pos: pos, n: c})
}

// lookup returns the position of the up node nodeID.
func (p *Placer) lookup(nodeID string) (int32, bool) {
	pos, ok := p.f.index[nodeID]
	if !ok || p.closed || !p.f.nodes[pos].up {
		return 0, false
	}
	return int32(pos), true
}

// scanFraction: an ask whose constraints leave at most one node in
// scanFraction scans those candidates instead of walking the index.
const scanFraction = 8

// query is one Place call's ask, as the search needs it.
type query struct {
	a       [numRes]int64
	ask     *Ask
	devAsk  bool
	cpuOnly bool
	// budget is how many more subtrees the walk may visit (-1: no limit);
	// at 0 it gives up.
	budget int
}

// best is the node a search has chosen so far.
type best struct {
	found bool
	pos   int32
	score float64
	picks []int
}

// Place picks a node for ask, records the use and returns the node ID and,
// for a GPU ask on a node that lists its devices, the devices granted.
// ok is false when no up node matching the constraints has room for ask now,
// and also when ask has a negative resource or an invalid constraint.
func (p *Placer) Place(ask Ask) (nodeID string, grants []Grant, ok bool) {
	q := query{a: vec(ask.Resources), ask: &ask, devAsk: needsDevice(&ask), cpuOnly: !hasGPU(ask.Resources)}
	for _, v := range q.a {
		if v < 0 {
			return "", nil, false
		}
	}
	if p.closed {
		return "", nil, false
	}
	h := hashAsk(&ask)
	if p.knownFailure(h, &ask) {
		return "", nil, false
	}

	var list []int32
	pick := -1 // constraint whose candidate list is scanned
	for i, c := range ask.Constraints {
		if ValidateConstraint(c) != nil {
			return "", nil, false
		}
		if q.devAsk && IsDeviceLabel(c.Label) {
			continue // checked on each device of nodes that list them
		}
		if l := p.f.candidates(c); pick < 0 || len(l) < len(list) {
			list, pick = l, i
		}
	}
	var b best
	if p.scanAll { // tests: the reference the index must agree with
		list, pick = p.f.allPositions(), -1
	}
	if p.scanAll || pick >= 0 && len(list)*scanFraction <= len(p.f.nodes) {
		p.scan(list, pick, &q, &b)
	} else {
		q.budget = -1
		if pick >= 0 {
			// The index does not know labels: should the walk meet many
			// nodes that fit but do not match, scanning the candidates of
			// the constraint is cheaper, and decides the same.
			q.budget = 2*len(list) + 64
		}
		p.searchTrees(&q, &b)
		if q.budget == 0 {
			b = best{}
			p.scan(list, pick, &q, &b)
		}
	}
	if !b.found {
		p.rememberFailure(h, &ask)
		return "", nil, false
	}
	return p.f.nodes[b.pos].id, p.take(b.pos, &q.a, b.picks), true
}

// MayFit reports whether Place might find a node for ask now: false when
// an identical ask failed since the last release, or when ask exceeds what
// every node of the index has free on some resource. It changes nothing
// and costs O(1) in the number of nodes, so a caller can skip work for an
// ask that cannot be placed; true does not promise that Place succeeds.
func (p *Placer) MayFit(ask Ask) bool {
	if p.closed || p.knownFailure(hashAsk(&ask), &ask) {
		return false
	}
	a := vec(ask.Resources)
	for i := range p.f.trees {
		if t := &p.f.trees[i]; t.count > 0 && fits(&a, &t.agg[1].free) {
			return true
		}
	}
	return false
}

// scan looks at every node of list (all matching constraint pick), in ID
// order. Among the nodes that fit, the best score wins, ties going to the
// earlier node; for a CPU-only ask any node without GPU resources beats
// every node with some.
func (p *Placer) scan(list []int32, pick int, q *query, b *best) {
	bestGPU := false
	for _, pos := range list {
		n := &p.f.nodes[pos]
		if !n.up || !fits(&q.a, &n.free) {
			continue
		}
		if q.cpuOnly && b.found && n.gpu && !bestGPU {
			continue // a CPU-only node already fits; GPU hosts lose
		}
		if !p.matchesOthers(n, q.ask.Constraints, pick, q.devAsk) {
			continue
		}
		s := n.score(&q.a)
		better := !b.found || q.cpuOnly && bestGPU && !n.gpu || s > b.score // equal scores keep the earlier (smaller) ID
		if !better {
			continue
		}
		var picks []int
		if q.devAsk && len(n.devs) > 0 {
			var ok bool
			if picks, ok = n.pickDevices(q.ask, &q.a); !ok {
				continue
			}
		}
		*b = best{found: true, pos: pos, score: s, picks: picks}
		bestGPU = n.gpu
	}
}

// searchTrees makes the choice scan would make over every node, through
// the Fleet's index: a CPU-only ask looks at the nodes without GPU
// resources first and at the others only if none of those takes it.
func (p *Placer) searchTrees(q *query, b *best) {
	if q.cpuOnly {
		p.searchKind(false, q, b)
		if !b.found {
			p.searchKind(true, q, b)
		}
		return
	}
	p.searchKind(true, q, b)
	p.searchKind(false, q, b) // nodes without GPU capacity only fit if their use is negative
}

// searchKind searches the trees of nodes with GPU resources (gpu) or
// without, the one with the highest score bound first.
func (p *Placer) searchKind(gpu bool, q *query, b *best) {
	type root struct {
		t  *capTree
		ub float64
	}
	var buf [maxShapeTrees + 2]root
	roots := buf[:0]
	for i := range p.f.trees {
		t := &p.f.trees[i]
		if t.gpu != gpu || t.count == 0 || !fits(&q.a, &t.agg[1].free) {
			continue
		}
		roots = append(roots, root{t, t.agg[1].bound(&q.a)})
	}
	for i := 1; i < len(roots); i++ { // insertion sort: a few entries
		for j := i; j > 0 && roots[j].ub > roots[j-1].ub; j-- {
			roots[j], roots[j-1] = roots[j-1], roots[j]
		}
	}
	for _, r := range roots {
		p.visit(r.t, 1, 0, r.t.size, r.ub, q, b)
	}
}

// visit walks the subtree at k, which covers leaves lo..lo+width-1 and
// fits q with score bound ub, skipping it when none of its nodes can beat
// b: ub below b's score, or equal to it with every node after b's (ties go
// to the smaller ID). Of its two halves, the one with the higher bound goes
// first, so that a good node is found early and the rest skipped.
func (p *Placer) visit(t *capTree, k, lo, width int, ub float64, q *query, b *best) {
	if q.budget == 0 {
		return
	}
	q.budget--
	p.visits++
	if b.found && (ub < b.score || ub == b.score && t.pos[lo] > b.pos) {
		return
	}
	if width == 1 {
		p.tryNode(t.pos[lo], q, b)
		return
	}
	half := width / 2
	l, r := 2*k, 2*k+1
	lok := fits(&q.a, &t.agg[l].free)
	rok := lo+half < t.count && fits(&q.a, &t.agg[r].free)
	switch {
	case lok && rok:
		lub, rub := t.agg[l].bound(&q.a), t.agg[r].bound(&q.a)
		if rub > lub {
			p.visit(t, r, lo+half, half, rub, q, b)
			p.visit(t, l, lo, half, lub, q, b)
		} else {
			p.visit(t, l, lo, half, lub, q, b)
			p.visit(t, r, lo+half, half, rub, q, b)
		}
	case lok:
		p.visit(t, l, lo, half, t.agg[l].bound(&q.a), q, b)
	case rok:
		p.visit(t, r, lo+half, half, t.agg[r].bound(&q.a), q, b)
	}
}

// tryNode makes node pos the best if it fits q, matches its constraints
// (and has the devices) and beats b.
func (p *Placer) tryNode(pos int32, q *query, b *best) {
	n := &p.f.nodes[pos]
	if !n.up || !fits(&q.a, &n.free) || !p.matchesOthers(n, q.ask.Constraints, -1, q.devAsk) {
		return
	}
	s := n.score(&q.a)
	if b.found && !(s > b.score || s == b.score && pos < b.pos) {
		return
	}
	var picks []int
	if q.devAsk && len(n.devs) > 0 {
		var ok bool
		if picks, ok = n.pickDevices(q.ask, &q.a); !ok {
			return
		}
	}
	*b = best{found: true, pos: pos, score: s, picks: picks}
}

// take records a placement of a on the node at pos (and on its devices at
// picks) and returns the device grants.
func (p *Placer) take(pos int32, a *[numRes]int64, picks []int) []Grant {
	p.save(pos)
	n := &p.f.nodes[pos]
	hadCPU := n.free[0] > 0
	for i := 0; i < numRes; i++ {
		n.used[i] += a[i]
		n.free[i] -= a[i]
	}
	if hadCPU && n.free[0] <= 0 {
		p.f.withCPU--
	}
	p.f.trees[n.tree].update(n.leaf, n)
	if len(picks) == 0 {
		return nil
	}
	return n.takeDevices(picks, a)
}

// PlaceOn places ask on one given node if it is up, matches the
// constraints and has room (on its devices too); preemption uses it to put
// a task where it freed capacity. It returns the device grants.
func (p *Placer) PlaceOn(nodeID string, ask Ask) ([]Grant, bool) {
	pos, ok := p.lookup(nodeID)
	if !ok {
		return nil, false
	}
	n := &p.f.nodes[pos]
	a := vec(ask.Resources)
	devAsk := needsDevice(&ask)
	if !fits(&a, &n.free) || !p.matchesOthers(n, ask.Constraints, -1, devAsk) {
		return nil, false
	}
	var picks []int
	if devAsk && len(n.devs) > 0 {
		if picks, ok = n.pickDevices(&ask, &a); !ok {
			return nil, false
		}
	}
	return p.take(pos, &a, picks), true
}

// Matching returns the up nodes whose labels satisfy every constraint of
// ask, with their free capacity, sorted by ID.
func (p *Placer) Matching(ask Ask) []NodeFree {
	var out []NodeFree
	if p.closed {
		return nil
	}
	devAsk := needsDevice(&ask)
	for i := range p.f.nodes {
		n := &p.f.nodes[i]
		if n.up && p.matchesOthers(n, ask.Constraints, -1, devAsk) {
			out = append(out, NodeFree{ID: n.id, Free: fromVec(n.free)})
		}
	}
	return out
}

// NodeFree is a node's free capacity during a pass.
type NodeFree struct {
	ID   string
	Free pool.Resources
}

// matchesOthers checks every constraint except the one at skip against the
// node's labels; for a device ask (devAsk) on a node that lists devices,
// device constraints are left to the devices.
func (p *Placer) matchesOthers(n *nodeState, cs []Constraint, skip int, devAsk bool) bool {
	onDevices := devAsk && len(n.devs) > 0
	for i := range cs {
		if i == skip || onDevices && IsDeviceLabel(cs[i].Label) {
			continue
		}
		if !cs[i].Matches(n.labels) {
			return false
		}
	}
	return true
}

// Release gives back r on nodeID, and on its granted devices (e.g. for a
// task placed then dropped in the same pass, or a preemption victim). Use
// never drops below zero on any resource. Unknown and down nodes are
// ignored. Releasing anything forgets the remembered failed asks.
func (p *Placer) Release(nodeID string, r pool.Resources, grants []Grant) {
	pos, ok := p.lookup(nodeID)
	if !ok {
		return
	}
	p.save(pos)
	n := &p.f.nodes[pos]
	if len(grants) > 0 {
		n.releaseDevices(grants, r)
		if len(p.fails) > 0 {
			clear(p.failed)
			p.fails = p.fails[:0]
		}
	}
	hadCPU := n.free[0] > 0
	rv := vec(r)
	changed := false
	for i := 0; i < numRes; i++ {
		d := min(rv[i], n.used[i])
		if d <= 0 {
			continue
		}
		n.used[i] -= d
		n.free[i] += d
		changed = true
	}
	if !hadCPU && n.free[0] > 0 {
		p.f.withCPU++
	}
	p.f.trees[n.tree].update(n.leaf, n)
	if changed && len(p.fails) > 0 {
		clear(p.failed)
		p.fails = p.fails[:0]
	}
}

// Full reports whether no up node has any free cpu left: for every up node,
// capacity cpu minus used cpu is zero or less (true as well when no node is
// up). When Full is true no ask with cpu > 0 can be placed until something is
// released; asks with zero cpu might still fit. It costs O(1).
func (p *Placer) Full() bool { return p.f.withCPU == 0 }

// Used returns what the Placer counts as used on nodeID: the node's initial
// use plus what was placed minus what was released. ok is false for unknown
// and down nodes.
func (p *Placer) Used(nodeID string) (used pool.Resources, ok bool) {
	pos, ok := p.lookup(nodeID)
	if !ok {
		return pool.Resources{}, false
	}
	return fromVec(p.f.nodes[pos].used), true
}

// knownFailure reports whether an ask identical to ask failed since the last
// release.
func (p *Placer) knownFailure(h uint64, ask *Ask) bool {
	i, ok := p.failed[h]
	if !ok {
		return false
	}
	for ; i >= 0; i = p.fails[i].next {
		e := &p.fails[i]
		if e.res == ask.Resources && sameConstraints(e.cons, ask.Constraints) {
			return true
		}
	}
	return false
}

// rememberFailure records ask as failed. It copies the constraints, since
// the caller may reuse its slice.
func (p *Placer) rememberFailure(h uint64, ask *Ask) {
	next, ok := p.failed[h]
	if !ok {
		next = -1
	}
	var cons []Constraint
	if len(ask.Constraints) > 0 {
		cons = append([]Constraint(nil), ask.Constraints...)
	}
	p.fails = append(p.fails, failEntry{res: ask.Resources, cons: cons, next: next})
	p.failed[h] = int32(len(p.fails) - 1)
}

func sameConstraints(a, b []Constraint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FNV-1a, 64 bit.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashInt(h uint64, v int64) uint64 {
	u := uint64(v)
	for i := 0; i < 8; i++ {
		h ^= u & 0xff
		h *= fnvPrime
		u >>= 8
	}
	return h
}

func hashString(h uint64, s string) uint64 {
	h = hashInt(h, int64(len(s)))
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// hashAsk hashes the resources and constraints of ask, without allocating.
func hashAsk(ask *Ask) uint64 {
	h := uint64(fnvOffset)
	for _, v := range vec(ask.Resources) {
		h = hashInt(h, v)
	}
	for _, c := range ask.Constraints {
		h = hashString(h, c.Label)
		h = hashString(h, c.Op)
		h = hashString(h, c.Value)
	}
	return h
}
