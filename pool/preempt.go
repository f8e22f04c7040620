package pool

import (
	"cmp"
	"math"
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
// running holds the tasks on each node; their order does not matter. A
// caller that asks many times over the same tasks (a scheduling pass)
// builds a RunningIndex once and calls VictimsIn instead.
func (v *View) Victims(path string, ask Resources, nodes []NodeFree, running RunningByNode, now int64, p PreemptPolicy) (Preemption, bool) {
	hint := RunningHint{MinPriority: math.MaxInt32, NoOpportunistic: true}
	for _, n := range nodes {
		for _, r := range running[n.Node] {
			hint.MinPriority = min(hint.MinPriority, r.Priority)
			hint.NoOpportunistic = hint.NoOpportunistic && r.Class != ClassOpportunistic
		}
	}
	load := func(node string) []Running { return slices.Clone(running[node]) }
	return v.VictimsIn(path, ask, nodes, LoadRunningIndex(load, hint), now, p)
}

// VictimsIn is Victims over the running tasks held in idx; it decides
// exactly as Victims does. It uses buffers kept in idx, so calls on one
// index must not run at the same time.
//
// Nodes are tried in id order. A node is passed over, without looking at
// its tasks one by one, when its sums (see RunningIndex) show that no plan
// there could free enough within p.MaxVictims or be strictly better than
// the best one found on an earlier node, and without loading its tasks at
// all once the best plan is as cheap as the index's hint allows any plan
// with victims to be (then only a node where the ask fits as it is could
// still win); the scan ends at a node where the ask already fits.
func (v *View) VictimsIn(path string, ask Resources, nodes []NodeFree, idx *RunningIndex, now int64, p PreemptPolicy) (Preemption, bool) {
	if !v.WithinGuarantee(path, ask) {
		return Preemption{}, false
	}
	sorted := nodes
	if !slices.IsSortedFunc(nodes, compareNodeFree) {
		sorted = slices.Clone(nodes)
		slices.SortStableFunc(sorted, compareNodeFree)
	}
	s := &idx.scratch
	s.mine = s.mine[:0]
	for a := path; a != ""; a = Parent(a) {
		s.mine = append(s.mine, a)
	}
	var best planCost
	var bestNode string
	var bestTasks []Running
	found := false
	for _, n := range sorted {
		if ask.Fits(n.Free) {
			// No victims: nothing can beat it, so the scan ends here.
			if c := (planCost{maxPrio: math.MinInt32}); !found || c.less(best) {
				best, bestNode, bestTasks, found = c, n.Node, nil, true
				s.best = s.best[:0]
			}
			break
		}
		if found && !idx.floor.less(best) {
			continue // no plan with victims can be strictly better
		}
		nr := idx.node(n.Node)
		if len(nr.tasks) == 0 {
			continue // nothing runs there to stop
		}
		lb, ok := nr.bound(ask, n.Free, p.MaxVictims)
		if !ok || (found && !lb.less(best)) {
			continue
		}
		c, ok := v.planOn(path, ask, n.Free, nr.tasks, now, p, s)
		if ok && (!found || c.less(best)) {
			best, bestNode, bestTasks, found = c, n.Node, nr.tasks, true
			s.best, s.cur = s.cur, s.best
		}
	}
	if !found {
		return Preemption{}, false
	}
	ids := make([]string, len(s.best))
	for i, k := range s.best {
		ids[i] = bestTasks[k].TaskID
	}
	return Preemption{Node: bestNode, Victims: ids}, true
}

func compareNodeFree(a, b NodeFree) int { return strings.Compare(a.Node, b.Node) }

// topK is how many of the largest asks on each resource a RunningIndex
// keeps per node, to bound how few victims could free what is missing.
const topK = 4

// RunningIndex holds the running tasks of each node in the order Victims
// tries them, with sums over each node's tasks that let VictimsIn pass over
// nodes where no plan could be good enough. Build it once per scheduling
// pass, from all the tasks (NewRunningIndex) or loading each node's the
// first time a call needs them (LoadRunningIndex); Set replaces one node's
// tasks (after some were preempted). It is not safe for concurrent use.
type RunningIndex struct {
	nodes map[string]*nodeRunning
	load  func(node string) []Running // nil: nodes holds every node
	// floor is at most the cost of any plan with victims on any node: one
	// victim at least, of the lowest priority of any task, and a
	// non-opportunistic one when no task is opportunistic.
	floor   planCost
	scratch victimScratch
}

// RunningHint is what the caller of LoadRunningIndex knows of every task
// that runs on any node the index may load.
type RunningHint struct {
	// MinPriority is at most the priority of every task.
	MinPriority int32
	// NoOpportunistic is true when no task is opportunistic.
	NoOpportunistic bool
}

// nodeRunning is one node's tasks and their sums. The sums count only the
// positive part of each ask (what stopping the task can free at most),
// whatever the task's pool, class or age, so they bound every plan.
type nodeRunning struct {
	tasks   []Running // in CandidateOrder
	all     Resources // what stopping every task would free at most
	opp     Resources // the same over opportunistic tasks
	nOpp    int       // opportunistic tasks
	minPrio int32     // lowest priority of any task
	// top[i][j] is the most that j+1 tasks free of resource i (the sum of
	// the j+1 largest asks).
	top [numResources][topK]int64
}

// victimScratch holds the buffers one VictimsIn call reuses.
type victimScratch struct {
	mine    []string // the requesting pool and its ancestors
	removed []poolAmount
	cur     []int // victims chosen on the node being planned, as indexes
	best    []int // victims of the best plan so far
}

// poolAmount is what the victims chosen so far free in one pool, rolled up.
type poolAmount struct {
	pool string
	r    Resources
}

// NewRunningIndex indexes running; the index owns the slices of running
// from then on and may reorder them.
func NewRunningIndex(running RunningByNode) *RunningIndex {
	x := &RunningIndex{nodes: make(map[string]*nodeRunning, len(running)),
		floor: planCost{nonOpp: 1, count: 1, maxPrio: math.MaxInt32}}
	for node, tasks := range running {
		x.Set(node, tasks)
	}
	return x
}

// LoadRunningIndex returns an index that calls load for the tasks running
// on a node (in any order; the index owns the slice) the first time a call
// needs them. hint must hold for every task load can return: VictimsIn
// relies on it to leave nodes unloaded.
func LoadRunningIndex(load func(node string) []Running, hint RunningHint) *RunningIndex {
	x := &RunningIndex{nodes: map[string]*nodeRunning{}, load: load,
		floor: planCost{count: 1, maxPrio: hint.MinPriority}}
	if hint.NoOpportunistic {
		x.floor.nonOpp = 1
	}
	return x
}

// node returns the tasks and sums of node, loading them if need be.
func (x *RunningIndex) node(node string) *nodeRunning {
	if nr, ok := x.nodes[node]; ok {
		return nr
	}
	if x.load == nil {
		return &nodeRunning{}
	}
	x.Set(node, x.load(node))
	return x.nodes[node]
}

// Set replaces the tasks running on node. The index owns tasks from then
// on and sorts it into the order Victims tries candidates in, unless it is
// already in that order.
func (x *RunningIndex) Set(node string, tasks []Running) {
	if !slices.IsSortedFunc(tasks, CandidateOrder) {
		slices.SortStableFunc(tasks, CandidateOrder)
	}
	nr := &nodeRunning{tasks: tasks, minPrio: math.MaxInt32}
	for _, r := range tasks {
		pos := positive(r.Ask)
		nr.all = nr.all.Add(pos)
		if r.Class == ClassOpportunistic {
			nr.opp = nr.opp.Add(pos)
			nr.nOpp++
		}
		nr.minPrio = min(nr.minPrio, r.Priority)
		// Keep the floor below every task (it only ever loosens).
		x.floor.maxPrio = min(x.floor.maxPrio, r.Priority)
		if r.Class == ClassOpportunistic {
			x.floor.nonOpp = 0
		}
		for i, a := range pos.values() {
			top := &nr.top[i]
			// Insert a among the largest (top holds running sums, so
			// keep the single amounts in the differences).
			var amounts [topK + 1]int64
			prev := int64(0)
			for j := range topK {
				amounts[j], prev = top[j]-prev, top[j]
			}
			amounts[topK] = a
			for j := topK; j > 0 && amounts[j] > amounts[j-1]; j-- {
				amounts[j], amounts[j-1] = amounts[j-1], amounts[j]
			}
			sum := int64(0)
			for j := range topK {
				sum += amounts[j]
				top[j] = sum
			}
		}
	}
	x.nodes[node] = nr
}

// Tasks returns the tasks running on node, in the order Victims tries
// them, loading them if need be. The slice belongs to the index: a caller
// that changes it gives it back with Set.
func (x *RunningIndex) Tasks(node string) []Running {
	return x.node(node).tasks
}

// positive returns r with its negative fields set to zero.
func positive(r Resources) Resources {
	v := r.values()
	for i := range v {
		v[i] = max(v[i], 0)
	}
	return fromValues(v)
}

// bound returns the least cost any plan on the node could have for an ask
// that does not fit free, and ok false when no plan there can free enough
// within maxVictims.
func (nr *nodeRunning) bound(ask, free Resources, maxVictims int) (lb planCost, ok bool) {
	if !ask.Fits(free.Add(nr.all)) {
		return planCost{}, false
	}
	// Victims needed: on each resource still missing, at least as many as
	// the largest asks there take to cover it.
	count := 1
	for i, m := range ask.Sub(free).values() {
		if m <= 0 {
			continue
		}
		need := topK + 1
		for j, sum := range nr.top[i] {
			if sum >= m {
				need = j + 1
				break
			}
		}
		count = max(count, need)
	}
	if count > maxVictims {
		return planCost{}, false
	}
	// Non-opportunistic victims: one at least when the opportunistic tasks
	// cannot free enough, and whatever count they cannot make up.
	nonOpp := max(count-nr.nOpp, 0)
	if !ask.Fits(free.Add(nr.opp)) {
		nonOpp = max(nonOpp, 1)
	}
	return planCost{nonOpp: nonOpp, count: max(count, nonOpp), maxPrio: nr.minPrio}, true
}

// planCost orders plans (see Victims): fewest non-opportunistic victims,
// then fewest victims, then the lowest highest victim priority.
type planCost struct {
	nonOpp, count int
	maxPrio       int32
}

// less reports whether c is strictly cheaper than o.
func (c planCost) less(o planCost) bool {
	if x := cmp.Compare(c.nonOpp, o.nonOpp); x != 0 {
		return x < 0
	}
	if x := cmp.Compare(c.count, o.count); x != 0 {
		return x < 0
	}
	return c.maxPrio < o.maxPrio
}

// CandidateOrder is the order Victims tries victims in: opportunistic
// first, then lowest priority, most recently started, task id. It is a
// total order, so callers may sort by it beforehand.
func CandidateOrder(a, b Running) int {
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

// planOn chooses victims on one node among its tasks, sorted in
// CandidateOrder, for an ask that does not fit free (see Victims). It
// leaves them in s.cur as indexes into tasks.
func (v *View) planOn(path string, ask, free Resources, tasks []Running, now int64, p PreemptPolicy, s *victimScratch) (planCost, bool) {
	s.cur, s.removed = s.cur[:0], s.removed[:0]
	freed := free
	for k := range tasks {
		if ask.Fits(freed) {
			break
		}
		r := &tasks[k]
		if r.Pool == path || now-r.StartedMs < p.MinRuntimeMs {
			continue // not a candidate
		}
		if !helps(r.Ask, ask.Sub(freed)) || !v.mayStop(r, s) {
			continue
		}
		s.cur = append(s.cur, k)
		freed = freed.Add(r.Ask)
		for a := r.Pool; a != ""; a = Parent(a) {
			s.addRemoved(a, r.Ask)
		}
	}
	if !ask.Fits(freed) {
		return planCost{}, false
	}
	for i := len(s.cur) - 1; i >= 0; i-- {
		if without := freed.Sub(tasks[s.cur[i]].Ask); ask.Fits(without) {
			freed = without
			s.cur = slices.Delete(s.cur, i, i+1)
		}
	}
	if len(s.cur) > p.MaxVictims {
		return planCost{}, false
	}
	c := planCost{count: len(s.cur), maxPrio: math.MinInt32}
	for _, k := range s.cur {
		if tasks[k].Class != ClassOpportunistic {
			c.nonOpp++
		}
		c.maxPrio = max(c.maxPrio, tasks[k].Priority)
	}
	return c, true
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

// removedOf returns what the victims chosen so far free in pool, rolled up.
func (s *victimScratch) removedOf(pool string) Resources {
	for _, e := range s.removed {
		if e.pool == pool {
			return e.r
		}
	}
	return Resources{}
}

// addRemoved adds r to what the victims free in pool.
func (s *victimScratch) addRemoved(pool string, r Resources) {
	for i := range s.removed {
		if s.removed[i].pool == pool {
			s.removed[i].r = s.removed[i].r.Add(r)
			return
		}
	}
	s.removed = append(s.removed, poolAmount{pool: pool, r: r})
}

// mayStop reports whether r may be preempted given the victims already
// chosen (s.removed); s.mine holds the requesting pool and its ancestors.
func (v *View) mayStop(r *Running, s *victimScratch) bool {
	if r.Class == ClassOpportunistic {
		return true
	}
	on := used(r.Ask)
	for a := r.Pool; a != ""; a = Parent(a) {
		if slices.Contains(s.mine, a) {
			break
		}
		after := v.rolled[a].Sub(s.removedOf(a)).Sub(r.Ask)
		if !fitsOn(v.tree.pools[a].Guaranteed, after, on) {
			return false
		}
	}
	return true
}
