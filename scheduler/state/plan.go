package state

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
	"github.com/banyan-sched/banyan/scheduler/queue"
)

// PlanLimits bound one scheduling pass so that it never holds the state for
// long, and carry the leader's preemption policy.
type PlanLimits struct {
	// MaxAssign is the most tasks one pass places.
	MaxAssign int
	// MaxScan is the most queued tasks one pass looks at.
	MaxScan int
	// PreemptBudget is how many running tasks this pass may preempt (the
	// leader's rate limiter decides it); 0 disables preemption.
	PreemptBudget int
	// MinRuntimeMs protects tasks that started less than this long ago.
	MinRuntimeMs int64
	// Held is capacity held back for pools within their guarantee that
	// gave it back a moment ago (State.HeldBack; hold.go): a task of
	// another pool that would borrow (outside its guarantee with the task)
	// is placed only where the agents keep that much free besides. What a
	// pool's own tasks take of it is no longer held. Nil holds nothing.
	Held map[string]pool.Resources
}

// DefaultPlanLimits are the leader's limits per pass.
var DefaultPlanLimits = PlanLimits{MaxAssign: 4096, MaxScan: 65536, PreemptBudget: 0, MinRuntimeMs: 5000}

// Plan is one scheduling pass. It changes nothing: the leader commits the
// returned Assign through raft, where Apply re-checks every placement.
//
// The pass has two phases. First every non-opportunistic queued task is
// considered, one at a time, from the pool that pool.View.Order puts first
// (pools below their guarantee, then the lowest weighted dominant share), so
// sibling pools share idle capacity instead of the first submitter taking it
// all. Inside a pool the queue order holds: class, priority, submit order.
// A task must be due (retry backoff), hold no busy exclusive key and keep
// its pool and every ancestor within max; then placement picks an agent. A
// task of a pool within its guarantee that fits nowhere may preempt running
// work (pool.View.Victims chooses), and the capacity freed is assigned to it
// in the same entry. Capacity held for a guaranteed pool (lim.Held) is not
// lent to pools that borrow. Second, opportunistic tasks run on what is
// left; they never preempt.
func (s *State) Plan(now int64, lim PlanLimits) *fsmpb.Assign {
	placer, cluster := s.openPass()
	defer s.closePass(placer)
	p := s.newPass(now, lim, placer, cluster)
	if p.cluster.IsZero() {
		return p.out // no agent is up: nothing can be placed or preempted
	}
	p.run(false)
	if len(p.out.Preemptions) > 0 {
		// A preemption may free more than its task needs: regular tasks the
		// phase passed over get a second look before opportunistic work.
		p.run(false)
	}
	p.run(true)
	return p.out
}

// pass is the working state of one Plan call.
type pass struct {
	s       *State
	now     int64
	lim     PlanLimits
	placer  *placement.Placer
	view    *pool.View
	held    map[string]bool    // exclusive keys taken in this pass
	placed  map[string]bool    // tasks assigned in this pass
	victims map[string]bool    // tasks preempted in this pass
	running *pool.RunningIndex // built on first use
	out     *fsmpb.Assign
	scanned int
	cluster pool.Resources // capacity of the up agents
	reserve *reserve       // what lim.Held still holds (nil: nothing)
	// noVictims remembers (pool, ask) pairs for which no preemption could
	// make room, so a queue of identical asks asks the policy once per pass.
	// (Placements made later in the pass could make a few more running tasks
	// fair game; the next pass, a moment later, sees them.)
	noVictims map[string]bool
}

// newPass sets up a pass over a placer opened on the agent index
// (agentindex.go). The capacity pools share, cluster, is every up agent's,
// cordoned ones too: the work running there counts in the pools' usage.
func (s *State) newPass(now int64, lim PlanLimits, placer *placement.Placer, cluster pool.Resources) *pass {
	// Warm workers a pool reserves count against its guarantee.
	usage := s.poolUsage
	if len(s.poolWarm) > 0 {
		usage = make(map[string]pool.Resources, len(s.poolUsage)+len(s.poolWarm))
		for p, u := range s.poolUsage {
			usage[p] = u
		}
		for p, w := range s.warmUsage() {
			usage[p] = usage[p].Add(w)
		}
	}
	return &pass{s: s, now: now, lim: lim, placer: placer, cluster: cluster,
		noVictims: map[string]bool{}, reserve: s.newReserve(lim.Held),
		view: pool.NewView(s.pools, usage, cluster), held: map[string]bool{}, placed: map[string]bool{}, victims: map[string]bool{},
		out: &fsmpb.Assign{}}
}

func (p *pass) full() bool {
	return len(p.out.Assignments) >= p.lim.MaxAssign || p.scanned >= p.lim.MaxScan
}

// run takes tasks one at a time from the pool first in fair order until
// every pool's queue (of this phase) is exhausted or a limit is hit.
func (p *pass) run(opportunistic bool) {
	cursors := map[string]*queue.Item{}
	misses := map[string]int{} // tasks in a row a pool could not place
	active := p.s.queue.Pools()
	sort.Strings(active)
	for len(active) > 0 && !p.full() {
		if opportunistic && p.placer.Full() {
			return
		}
		first := active[0]
		if len(active) > 1 {
			first = p.view.Order(active)[0] // Order of one pool is that pool
		}
		it, ok := p.next(first, cursors[first], opportunistic)
		if !ok {
			active = remove(active, first)
			continue
		}
		cursors[first] = &it
		p.scanned++
		if p.consider(it, opportunistic) {
			misses[first] = 0
		} else if misses[first]++; misses[first] >= maxMissesPerPool {
			active = remove(active, first) // let other pools have the rest of the pass
		}
	}
}

// maxMissesPerPool is how many queued tasks in a row a pool may fail to
// place before the pass moves on to other pools.
const maxMissesPerPool = 256

// firstOpportunistic sorts before every opportunistic task of a pool and
// after every other (the queue orders by class first).
var firstOpportunistic = queue.Item{Key: queue.Key{Class: int32(pb.JobClass_JOB_CLASS_OPPORTUNISTIC), Priority: math.MaxInt32}}

// next returns the pool's next queued task of the phase after cur.
func (p *pass) next(poolPath string, cur *queue.Item, opportunistic bool) (queue.Item, bool) {
	var found queue.Item
	ok := false
	if opportunistic && cur == nil {
		// Start past the pool's regular tasks (a backlog of a million of
		// them would cost a walk over all of them).
		cur = &firstOpportunistic
	}
	p.s.queue.AscendPoolAfter(poolPath, cur, func(it queue.Item) bool {
		isOpp := it.Key.Class == int32(pb.JobClass_JOB_CLASS_OPPORTUNISTIC)
		if isOpp != opportunistic {
			return !isOpp // regular tasks sort before opportunistic ones
		}
		found, ok = it, true
		return false
	})
	return found, ok
}

func remove(list []string, v string) []string {
	for i, x := range list {
		if x == v {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// consider tries to place one queued task and reports whether it did.
func (p *pass) consider(it queue.Item, opportunistic bool) bool {
	t := p.s.task(it.TaskID)
	if p.placed[it.TaskID] || t.PB.NotBeforeUnixMs > p.now {
		return false
	}
	key := t.spec.GetExclusiveKey()
	if key != "" && (p.s.exclusive[key] != "" || p.held[key]) {
		return false
	}
	ask := askOf(t)
	// The checks below are ordered cheapest first; each only rules the
	// task out, so the order does not change what the pass decides. In a
	// full cluster most tasks fail the first two (MayFit and
	// mayPreempt are O(1) in the agents and the queue).
	mayFit := p.placer.MayFit(ask) && !p.takesHeld(it.Pool, t) // false: Place would fail, or may not
	if !mayFit && !p.mayPreempt(it.Pool, t, opportunistic) {
		return false // no room anywhere, and no preemption to make some
	}
	if !p.view.Admit(it.Pool, t.Ask()).OK {
		return false
	}
	if mayFit {
		if agent, grants, ok := p.placer.Place(ask); ok {
			p.assign(t, agent, it.Pool, grants)
			return true
		}
		if !p.mayPreempt(it.Pool, t, opportunistic) {
			return false
		}
	}
	vkey := it.Pool + "|" + askKey(t)
	if p.noVictims[vkey] {
		return false
	}
	if !p.preemptFor(t, it.Pool, ask) {
		p.noVictims[vkey] = true
		return false
	}
	return true
}

// takesHeld reports whether t, of pool poolPath, would take capacity held
// for other pools (PlanLimits.Held) while its pool borrows.
func (p *pass) takesHeld(poolPath string, t *Task) bool {
	return p.reserve.blocks(poolPath, t.Ask()) && !p.view.WithinGuarantee(poolPath, t.Ask())
}

// mayPreempt reports whether t, of pool poolPath, may preempt running work
// in this pass: a regular task, a budget left, and its pool within its
// guarantee with t added (pool.View.VictimsIn answers only then).
func (p *pass) mayPreempt(poolPath string, t *Task, opportunistic bool) bool {
	return !opportunistic && p.lim.PreemptBudget > 0 && p.view.WithinGuarantee(poolPath, t.Ask())
}

func (p *pass) assign(t *Task, agent, poolPath string, grants []placement.Grant) {
	p.placed[t.PB.Id] = true
	p.view.Add(poolPath, t.Ask())
	p.reserve.took(poolPath, t.Ask())
	if k := t.spec.GetExclusiveKey(); k != "" {
		p.held[k] = true
	}
	p.out.Assignments = append(p.out.Assignments, &fsmpb.Assignment{TaskId: t.PB.Id, Attempt: t.Attempt(), AgentId: agent,
		Gpus: grantsPB(grants)})
}

// preemptFor asks the pool policy for victims that make room for t on one
// node, and if it finds some, records them and places t there.
func (p *pass) preemptFor(t *Task, poolPath string, ask placement.Ask) bool {
	var nodes []pool.NodeFree
	for _, n := range p.placer.Matching(ask) {
		nodes = append(nodes, pool.NodeFree{Node: n.ID, Free: n.Free})
	}
	policy := pool.PreemptPolicy{MinRuntimeMs: p.lim.MinRuntimeMs, MaxVictims: p.lim.PreemptBudget}
	pre, ok := p.view.VictimsIn(poolPath, t.Ask(), nodes, p.runningTasks(), p.now, policy)
	if !ok || len(pre.Victims) == 0 {
		return false
	}
	for _, id := range pre.Victims {
		v := p.s.task(id)
		vpool := p.s.job(v.PB.JobId).PB.Pool
		p.placer.Release(pre.Node, v.Ask(), grantsOf(v.current().GetGpus()))
		p.view.Remove(vpool, v.Ask())
		p.reserve.freed(v.Ask())
		p.victims[id] = true
		p.out.Preemptions = append(p.out.Preemptions, &fsmpb.Preemption{ForTaskId: t.PB.Id,
			Victim: &fsmpb.Assignment{TaskId: id, Attempt: v.Attempt(), AgentId: pre.Node}})
	}
	// Victims are no longer candidates (all of them ran on pre.Node).
	p.running.Set(pre.Node, slices.DeleteFunc(p.running.Tasks(pre.Node), func(r pool.Running) bool { return p.victims[r.TaskID] }))
	p.lim.PreemptBudget -= len(pre.Victims)
	grants, ok := p.placer.PlaceOn(pre.Node, ask)
	if !ok {
		return false
	}
	p.assign(t, pre.Node, poolPath, grants)
	return true
}

// runningTasks indexes placed tasks (not already preempted) by agent, for
// the policy: made once per pass, it loads an agent's tasks the first time
// the policy looks at that agent, and preemptFor keeps it up to date.
func (p *pass) runningTasks() *pool.RunningIndex {
	if p.running == nil {
		p.running = pool.LoadRunningIndex(p.agentRunning, p.runningHint())
	}
	return p.running
}

// agentRunning lists the tasks placed on an agent that is up, less those
// preempted in this pass, in the order the policy tries them.
func (p *pass) agentRunning(agentID string) []pool.Running {
	a := p.s.agents[agentID]
	if a == nil || !a.Up() || len(a.Running) == 0 {
		return nil
	}
	list := make([]pool.Running, 0, len(a.Running))
	for id := range a.Running {
		if p.victims[id] {
			continue
		}
		t := p.s.task(id)
		j := p.s.job(t.PB.JobId)
		started := t.current().StartedUnixMs
		if started == 0 {
			started = t.current().PlacedUnixMs
		}
		list = append(list, pool.Running{TaskID: id, Pool: j.PB.Pool, Node: agentID, Ask: t.Ask(),
			Class: pool.Class(j.PB.Class), Priority: j.PB.Priority, StartedMs: started})
	}
	// The index keeps each agent's tasks in the order the policy tries
	// them; sorted here, it finds them in place.
	slices.SortFunc(list, pool.CandidateOrder)
	return list
}

// maxHintJobs is the most jobs runningHint looks at; past it the hint is
// the loosest (any priority, some opportunistic).
const maxHintJobs = 1 << 16

// runningHint bounds every running task for the policy, from the jobs
// that have tasks placed: the lowest priority and whether any is
// opportunistic. With it the policy leaves agents unloaded once it has
// found a plan no other can beat. (Jobs with nothing placed, a backlog of
// opportunistic work waiting for room for instance, do not loosen it.)
func (p *pass) runningHint() pool.RunningHint {
	if p.s.jobs.len() > maxHintJobs {
		return pool.RunningHint{MinPriority: math.MinInt32}
	}
	h := pool.RunningHint{MinPriority: MaxPriority, NoOpportunistic: true}
	for _, j := range p.s.jobs.all {
		if p.s.countsOf(j).running == 0 {
			continue // nothing of it runs: the policy never sees it
		}
		h.MinPriority = min(h.MinPriority, j.PB.Priority)
		if pool.Class(j.PB.Class) == pool.ClassOpportunistic {
			h.NoOpportunistic = false
		}
	}
	return h
}

// nodes returns the agents as placement sees them.
func (s *State) nodes() []placement.Node {
	out := make([]placement.Node, 0, len(s.agents))
	for _, id := range s.AgentIDs() {
		out = append(out, s.agents[id].node(id))
	}
	return out
}

// Cluster returns the total capacity of the agents that are up.
func (s *State) Cluster() pool.Resources {
	var c pool.Resources
	for _, a := range s.agents {
		if a.Up() {
			c = c.Add(a.Capacity)
		}
	}
	return c
}

// FunctionLabel is the agent label that says it serves a function.
func FunctionLabel(name string) string { return "fn." + name }

func askOf(t *Task) placement.Ask {
	a := placement.Ask{Resources: t.Ask()}
	if fn := t.spec.GetFunction(); fn != "" {
		a.Constraints = append(a.Constraints, placement.Constraint{Label: FunctionLabel(fn), Op: placement.OpExists})
	}
	for _, c := range t.spec.GetConstraints() {
		op := c.Op
		if op == "==" {
			op = "="
		}
		a.Constraints = append(a.Constraints, placement.Constraint{Label: c.Label, Op: op, Value: c.Value})
	}
	return a
}

func askKey(t *Task) string {
	var b strings.Builder
	fmt.Fprint(&b, t.Ask(), "|fn:", t.spec.GetFunction())
	for _, c := range t.spec.GetConstraints() {
		fmt.Fprintf(&b, "|%s%s%s", c.Label, c.Op, c.Value)
	}
	return b.String()
}

func explainBlocked(nodes []placement.Node, t *Task) string {
	return placement.Explain(nodes, askOf(t))
}

// PromoteFraction is how much of an opportunistic job's max wait may pass
// before it is promoted to batch, leaving the rest of the wait to run it.
const PromoteFraction = 0.9

// DuePromotions returns the opportunistic jobs that still have queued work
// and whose wait has reached PromoteFraction of its bound, in id order.
func (s *State) DuePromotions(now int64) []string {
	var out []string
	for id := range s.opportunistic {
		j := s.job(id)
		due := j.PB.SubmittedUnixMs + int64(float64(j.PB.MaxWaitMs)*PromoteFraction)
		if c := s.countsOf(j); now >= due && c.queued+c.waiting > 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
