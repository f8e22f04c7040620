package placement

import (
	"maps"
	"math"
	"slices"
	"sort"
	"sync"
)

// Fleet is the placement view of a set of nodes kept from one scheduling
// pass to the next: the caller tells it what changed (Set) instead of
// handing every node over for each pass. Beside the nodes it keeps an index
// by free capacity, so that Place visits only nodes that can hold an ask.
//
// The index is a segment tree per capacity shape (the 16 most common; the
// rest share one tree for nodes with GPU resources and one for those
// without), over its nodes in ID order. Each subtree
// holds, per resource, the most any of its nodes has free, the most any of
// them uses and the largest score weight (see nodeState.scale). An ask that
// exceeds a subtree's free maximum on some resource fits none of its nodes;
// and since floating-point rounding is monotone, the score computed from
// the maxima of use and weight bounds the score of every node below. Place
// walks the trees in ID order and skips subtrees that cannot fit the ask or
// cannot beat the best node found so far, which leaves its decisions
// exactly those of a scan over every node (TestFleetMatchesScan checks it).
//
// A Fleet is safe for concurrent use: a Placer taken from it holds it until
// Close, and Set waits for that.
type Fleet struct {
	mu    sync.Mutex
	nodes []nodeState    // every node, up or not; sorted by ID unless reorder
	index map[string]int // node ID -> position in nodes
	// reorder is set when nodes were appended out of ID order: positions
	// and trees are rebuilt before the next pass.
	reorder bool
	trees   []capTree // by capacity shape (rebuildLocked)
	// cands caches, per constraint, the positions of the nodes (up or not)
	// whose labels match it; cleared when labels or positions change.
	cands   map[Constraint][]int32
	withCPU int    // up nodes with free cpu > 0
	epoch   uint64 // counts passes; marks the nodes a pass saved
}

// maxCachedConstraints bounds the candidate lists a Fleet keeps.
const maxCachedConstraints = 1024

// NewFleet returns a Fleet holding nodes. Later nodes with an ID already
// seen replace earlier ones.
func NewFleet(nodes []Node) *Fleet {
	f := &Fleet{index: make(map[string]int, len(nodes)), cands: map[Constraint][]int32{}}
	for i := range nodes {
		f.setLocked(&nodes[i])
	}
	f.rebuildLocked()
	return f
}

// Set adds the node, or replaces the node with its ID. Label maps are
// shared with the caller and must not change while the node is in the
// Fleet; devices are copied.
func (f *Fleet) Set(n Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(&n)
}

// Len returns the number of nodes in the Fleet, up or not.
func (f *Fleet) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nodes)
}

// Nodes returns the Fleet's nodes as Node values, sorted by ID: what a
// pass starts from. It is meant for checks, not for the scheduling path.
func (f *Fleet) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rebuildLocked()
	out := make([]Node, len(f.nodes))
	for i := range f.nodes {
		n := &f.nodes[i]
		out[i] = Node{ID: n.id, Capacity: fromVec(n.cap), Used: fromVec(n.used), Labels: n.labels, Up: n.up,
			NVENCSystemCap: n.sysCap, NVENCSystemUsed: n.sysUsed}
		for _, d := range n.devs {
			out[i].Devices = append(out[i].Devices, d.Device)
		}
	}
	return out
}

// Placer opens a scheduling pass over the Fleet. Placements and releases
// made through the Placer change the Fleet only until Close, which puts
// back what the pass changed; until then the Fleet is held.
func (f *Fleet) Placer() *Placer {
	f.mu.Lock()
	f.rebuildLocked()
	f.epoch++
	return &Placer{f: f, borrowed: true, withCPU0: f.withCPU, failed: map[uint64]int32{}}
}

// newNodeState builds the placement state of n, up or not.
func newNodeState(n *Node) nodeState {
	s := nodeState{id: n.ID, labels: n.Labels, up: n.Up}
	s.cap, s.used = vec(n.Capacity), vec(n.Used)
	s.gpu = hasGPU(n.Capacity)
	s.sysCap, s.sysUsed = n.NVENCSystemCap, n.NVENCSystemUsed
	if len(n.Devices) > 0 {
		s.devs = make([]devState, len(n.Devices))
		for d := range n.Devices {
			s.devs[d] = devState{Device: n.Devices[d], pos: d}
		}
	}
	var wsum float64
	for r := 0; r < numRes; r++ {
		s.free[r] = s.cap[r] - s.used[r]
		if s.cap[r] > 0 {
			wsum += resWeight[r]
		}
	}
	for r := 0; r < numRes; r++ {
		if s.cap[r] > 0 {
			s.scale[r] = resWeight[r] / (float64(s.cap[r]) * wsum)
		}
	}
	return s
}

// hasCPU reports whether n counts in Fleet.withCPU.
func (n *nodeState) hasCPU() bool { return n.up && n.free[0] > 0 }

func (f *Fleet) setLocked(n *Node) {
	s := newNodeState(n)
	pos, ok := f.index[n.ID]
	if !ok {
		f.index[n.ID] = len(f.nodes)
		f.nodes = append(f.nodes, s)
		if s.hasCPU() {
			f.withCPU++
		}
		f.reorder = true
		return
	}
	old := &f.nodes[pos]
	if old.hasCPU() {
		f.withCPU--
	}
	if s.hasCPU() {
		f.withCPU++
	}
	if !maps.Equal(old.labels, s.labels) {
		clear(f.cands)
	}
	if old.cap != s.cap {
		f.reorder = true // the node may move to another tree
	}
	s.tree, s.leaf = old.tree, old.leaf
	*old = s
	if !f.reorder {
		f.trees[s.tree].update(s.leaf, old)
	}
}

// maxShapeTrees bounds the capacity shapes that get an index tree of their
// own; nodes of rarer shapes share one tree per GPU kind.
const maxShapeTrees = 16

// rebuildLocked sorts the nodes by ID and rebuilds positions and trees if
// nodes were added or changed shape since the last rebuild.
func (f *Fleet) rebuildLocked() {
	if !f.reorder {
		return
	}
	f.reorder = false
	sort.Slice(f.nodes, func(i, j int) bool { return f.nodes[i].id < f.nodes[j].id })
	clear(f.cands)
	// One tree per common capacity shape: all its nodes weigh resources
	// alike, so the score bound of a subtree is close to its best score.
	count := map[[numRes]int64]int{}
	for i := range f.nodes {
		count[f.nodes[i].cap]++
	}
	shapes := make([][numRes]int64, 0, len(count))
	for c := range count {
		shapes = append(shapes, c)
	}
	sort.Slice(shapes, func(i, j int) bool {
		if count[shapes[i]] != count[shapes[j]] {
			return count[shapes[i]] > count[shapes[j]]
		}
		return slices.Compare(shapes[i][:], shapes[j][:]) < 0
	})
	treeOf := map[[numRes]int64]int{}
	f.trees = f.trees[:0]
	mixed := [2]int{-1, -1}
	for k, c := range shapes {
		gpu := hasGPU(fromVec(c))
		switch {
		case k < maxShapeTrees:
			treeOf[c] = len(f.trees)
			f.trees = append(f.trees, capTree{gpu: gpu})
		case mixed[b2i(gpu)] < 0:
			mixed[b2i(gpu)] = len(f.trees)
			f.trees = append(f.trees, capTree{gpu: gpu})
			fallthrough
		default:
			treeOf[c] = mixed[b2i(gpu)]
		}
	}
	leaves := make([]int, len(f.trees))
	for i := range f.nodes {
		n := &f.nodes[i]
		f.index[n.id] = i
		t := treeOf[n.cap]
		n.tree, n.leaf = int32(t), int32(leaves[t])
		leaves[t]++
	}
	for t := range f.trees {
		f.trees[t].reset(leaves[t])
	}
	for i := range f.nodes {
		n := &f.nodes[i]
		f.trees[n.tree].pos[n.leaf] = int32(i)
		f.trees[n.tree].setLeaf(n.leaf, n)
	}
	for t := range f.trees {
		f.trees[t].build()
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// candidates returns the sorted positions of the nodes (up or not) whose
// labels match c.
func (f *Fleet) candidates(c Constraint) []int32 {
	if l, ok := f.cands[c]; ok {
		return l
	}
	if len(f.cands) >= maxCachedConstraints {
		clear(f.cands)
	}
	l := []int32{}
	for i := range f.nodes {
		if c.Matches(f.nodes[i].labels) {
			l = append(l, int32(i))
		}
	}
	f.cands[c] = l
	return l
}

// allPositions returns 0..len(nodes)-1.
func (f *Fleet) allPositions() []int32 {
	l := make([]int32, len(f.nodes))
	for i := range l {
		l[i] = int32(i)
	}
	return l
}

// agg sums up a subtree: per resource, the largest free amount, the
// largest use and the largest score weight of its up nodes, and the largest
// utilization now (use clamped at zero) of those with at least
// utilLevel(k) cpu free, for each level k. An empty subtree has free and
// use at math.MinInt64, so that nothing fits it.
type agg struct {
	free, used [numRes]int64
	scale      [numRes]float64
	util       [utilLevels]float64
}

// utilLevels is how many free-cpu levels an agg keeps utilization for:
// level 0 is every node, level k >= 1 the nodes with at least
// 250 << k millicores free. Full nodes are the most utilized but fit
// nothing; leaving them out of the level an ask looks at keeps its bound
// close to the nodes that can take it.
const utilLevels = 9

// utilLevel returns the highest level whose nodes include every node with
// cpu free: the level an ask of cpu millicores uses.
func utilLevel(cpu int64) int {
	k := 0
	for k+1 < utilLevels && cpu >= 250<<(k+1) {
		k++
	}
	return k
}

var emptyAgg = func() agg {
	g := agg{free: [numRes]int64{math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64},
		used: [numRes]int64{math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64}}
	for k := range g.util {
		g.util[k] = math.Inf(-1)
	}
	return g
}()

// utilSlack covers the rounding of the additive bound in agg.bound: a few
// ulps of relative error, with a wide margin.
const utilSlack = 1 + 1e-12

// bound is at least the score (nodeState.score) of every node of the
// subtree for ask a. It is the lower of two bounds:
//
//   - score adds rounded products of non-negative factors, and rounding is
//     monotone, so the same sum over factors at least as large (use
//     clamped at zero) is at least as large: exact for a subtree of one
//     node, or of nodes alike;
//   - a node's score is its utilization now plus what the ask adds, so the
//     largest utilization plus the ask at the largest weights bounds it,
//     up to rounding (utilSlack): tight when use differs from node to node.
//     Only nodes with at least the ask's cpu free can take it, so the
//     utilization is the largest among nodes with about that much free.
func (g *agg) bound(a *[numRes]int64) float64 {
	var mono, add float64
	for i := 0; i < numRes; i++ {
		x := max(g.used[i]+a[i], 0)
		mono += float64(float64(x) * g.scale[i])
		add += float64(float64(a[i]) * g.scale[i])
	}
	return min(mono, (g.util[utilLevel(a[0])]+add)*utilSlack)
}

func (g *agg) merge(l, r *agg) {
	for i := 0; i < numRes; i++ {
		g.free[i] = max(l.free[i], r.free[i])
		g.used[i] = max(l.used[i], r.used[i])
		g.scale[i] = max(l.scale[i], r.scale[i])
	}
	for k := range g.util {
		g.util[k] = max(l.util[k], r.util[k])
	}
}

// capTree is a segment tree over some nodes in ID order: leaf i is the
// node at fleet position pos[i]; agg[1] is the root, agg[size+i] leaf i.
type capTree struct {
	gpu   bool // its nodes have GPU resources
	size  int  // leaves, a power of two (0 when empty)
	count int  // leaves in use
	pos   []int32
	agg   []agg
}

func (t *capTree) reset(count int) {
	t.count, t.size = count, 0
	if count > 0 {
		t.size = 1
		for t.size < count {
			t.size *= 2
		}
	}
	t.pos = slices.Grow(t.pos[:0], count)[:count]
	if cap(t.agg) >= 2*t.size {
		t.agg = t.agg[:2*t.size]
	} else {
		t.agg = make([]agg, 2*t.size)
	}
	for i := range t.agg {
		t.agg[i] = emptyAgg
	}
}

// setLeaf writes node n into leaf i without fixing the leaf's ancestors.
func (t *capTree) setLeaf(i int32, n *nodeState) {
	g := &t.agg[t.size+int(i)]
	if !n.up {
		*g = emptyAgg
		return
	}
	g.free, g.used, g.scale = n.free, n.used, n.scale
	var u float64
	for i := 0; i < numRes; i++ {
		u += float64(float64(max(n.used[i], 0)) * n.scale[i])
	}
	for k := range g.util {
		if k == 0 || n.free[0] >= 250<<k {
			g.util[k] = u
		} else {
			g.util[k] = math.Inf(-1)
		}
	}
}

func (t *capTree) build() {
	for k := t.size - 1; k >= 1; k-- {
		t.agg[k].merge(&t.agg[2*k], &t.agg[2*k+1])
	}
}

// update writes node n into leaf i and fixes its ancestors.
func (t *capTree) update(i int32, n *nodeState) {
	t.setLeaf(i, n)
	for k := (t.size + int(i)) / 2; k >= 1; k /= 2 {
		t.agg[k].merge(&t.agg[2*k], &t.agg[2*k+1])
	}
}
