package state

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
)

// TestPoolPropertyRandomHistories drives the state with random but
// reproducible histories over random pool trees (depth 2 to 3, guarantees
// that fit their parents, some ceilings), agents with and without GPUs and
// encoder sessions, and jobs of every class and a range of priorities in
// random leaf pools. Plans are committed with random preemption budgets and
// min_runtime; tasks start, finish, fail and get lost; agents go down and
// come back; opportunistic jobs get promoted. After every step it checks:
//
//   - no pool, rolled up, is above its max;
//   - the usage of all pools fits the capacity of the up agents, and no
//     agent holds more than its capacity (a down agent holds nothing);
//   - each committed plan: no opportunistic task preempts; no victim is of
//     the requesting pool; no victim's pool (nor an ancestor not shared with
//     a requester of the pass) ends up under its guarantee on the resources
//     the victim held, unless the victim is opportunistic; every victim was
//     needed (the ask would not fit on the node with any one fewer); the
//     victims of a pass stay within its budget; victims are requeued with
//     a new attempt, outcome "preempted" and retries_used unchanged;
//   - no opportunistic task is placed on a node while a regular task left
//     unplaced in that pass could have been placed there instead;
//   - the guarantee probe (see probeGuarantee) places work for every pool
//     that has a task within its guarantee and room to be made for it;
//
// and at the end, with every agent up, every job reaches a final state.
func TestPoolPropertyRandomHistories(t *testing.T) {
	for seed := int64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runPoolHistory(t, seed, 300)
		})
	}
}

// poolAgents are the hosts of the pool histories.
var poolAgents = []agentShape{
	{&pb.Resources{CpuMillis: 8000, MemoryBytes: 16 * gi}, map[string]string{"zone": "a"}},
	{&pb.Resources{CpuMillis: 8000, MemoryBytes: 16 * gi}, map[string]string{"zone": "b"}},
	{&pb.Resources{CpuMillis: 16000, MemoryBytes: 64 * gi, Gpus: 2, GpuMemoryBytes: 48 * gi, Nvenc: 4},
		map[string]string{"zone": "a", "encoder": "nvenc"}},
	{&pb.Resources{CpuMillis: 16000, MemoryBytes: 32 * gi, Gpus: 1, GpuMemoryBytes: 24 * gi, Nvenc: 2},
		map[string]string{"zone": "b", "encoder": "nvenc"}},
	{&pb.Resources{CpuMillis: 4000, MemoryBytes: 8 * gi}, map[string]string{"zone": "b"}},
}

type poolHistory struct {
	t      *testing.T
	rng    *rand.Rand
	s      *State
	now    int64
	step   int
	last   string
	leaves []string
	stale  []*fsmpb.Assign // plans committed late, oldest first
	// counters for the log line
	preempted, probes, oppPlaced int
}

func runPoolHistory(t *testing.T, seed int64, steps int) *poolHistory {
	h := &poolHistory{t: t, rng: rand.New(rand.NewSource(seed)), now: 1000,
		s: New(Defaults{MaxAttempts: 3, InitialBackoffMs: 100, MaxBackoffMs: 400,
			OpportunisticMaxWaitMs: 20000, Prices: pool.DefaultPrices()})}
	h.last = "pools"
	h.makePools()
	for i := range poolAgents {
		if h.rng.Intn(4) > 0 {
			h.agentUp(i)
		}
	}
	for h.step = 0; h.step < steps; h.step++ {
		h.randomStep()
	}
	h.drain()
	jobs := map[pb.JobState]int{}
	for _, j := range h.s.jobs.all {
		jobs[j.PB.State]++
	}
	t.Logf("seed %d: pools %v; %d jobs (%d succeeded, %d failed), %d preempted, %d opportunistic placed, %d probes",
		seed, h.s.pools.Paths(), h.s.jobs.len(), jobs[pb.JobState_JOB_STATE_SUCCEEDED], jobs[pb.JobState_JOB_STATE_FAILED],
		h.preempted, h.oppPlaced, h.probes)
	return h
}

func (h *poolHistory) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("step %d (%s): %s", h.step, h.last, fmt.Sprintf(format, args...))
}

func (h *poolHistory) apply(c *fsmpb.Command) *Result {
	h.t.Helper()
	c.NowUnixMs = h.now
	r := h.s.Apply(c)
	errs := checkInvariants(h.s, true)
	errs = append(errs, checkCapacity(h.s)...)
	if len(errs) > 0 {
		h.fatalf("invariants broken:\n  %s", strings.Join(errs, "\n  "))
	}
	return r
}

// checkCapacity checks pool ceilings (rolled up) and that the work placed
// fits the agents that hold it.
func checkCapacity(s *State) []string {
	var errs []string
	rolled := s.PoolUsage()
	for _, p := range s.pools.Paths() {
		q, _ := s.pools.Get(p)
		if over := q.ExceedsMax(rolled[p]); len(over) > 0 {
			errs = append(errs, fmt.Sprintf("pool %s uses %v, above its max %s", p, rolled[p], q.MaxString()))
		}
	}
	var total pool.Resources
	for _, u := range s.poolUsage {
		total = total.Add(u)
	}
	if !total.Fits(s.Cluster()) {
		errs = append(errs, fmt.Sprintf("pools use %v, more than the up agents' %v", total, s.Cluster()))
	}
	for _, id := range s.AgentIDs() {
		a := s.agents[id]
		if !a.Used.Fits(a.Capacity) {
			errs = append(errs, fmt.Sprintf("agent %s holds %v of %v", id, a.Used, a.Capacity))
		}
		if !a.Up() && (!a.Used.IsZero() || len(a.Running) > 0) {
			errs = append(errs, fmt.Sprintf("agent %s is down but holds %v", id, a.Used))
		}
	}
	return errs
}

// makePools builds a random tree: two or three top-level pools, each with
// up to three children, some of which have children of their own. A
// pool's children's guarantees fit in its own when it has one.
func (h *poolHistory) makePools() {
	r := h.rng
	bound := pool.Resources{CPUMillis: 24000, GPUs: 2, NVENC: 4}
	var grow func(path string, g pool.Resources, depth int)
	grow = func(path string, g pool.Resources, depth int) {
		h.putPool(path, g)
		kids := 0
		if depth < 3 {
			kids = r.Intn(4)
			if depth == 2 && r.Intn(2) == 0 {
				kids = 0
			}
		}
		if kids == 0 {
			h.leaves = append(h.leaves, path)
			return
		}
		left := g
		for c := 0; c < kids; c++ {
			var cg pool.Resources
			if g.IsZero() {
				cg = randomGuarantee(r, bound)
			} else {
				cg = pool.Resources{CPUMillis: r.Int63n(left.CPUMillis/500+1) * 500,
					GPUs: r.Int63n(left.GPUs + 1), NVENC: r.Int63n(left.NVENC + 1)}
				left = left.Sub(cg)
			}
			grow(fmt.Sprintf("%s/c%d", path, c), cg, depth+1)
		}
	}
	for i, n := 0, 2+r.Intn(2); i < n; i++ {
		grow(fmt.Sprintf("p%d", i), randomGuarantee(r, bound), 1)
	}
	h.leaves = append(h.leaves, DefaultPool)
}

func randomGuarantee(r *rand.Rand, bound pool.Resources) pool.Resources {
	if r.Intn(4) == 0 {
		return pool.Resources{}
	}
	g := pool.Resources{CPUMillis: (1 + r.Int63n(bound.CPUMillis/2000)) * 2000}
	if r.Intn(2) == 0 {
		g.NVENC = 1 + r.Int63n(bound.NVENC)
		g.GPUs = r.Int63n(bound.GPUs + 1)
	}
	return g
}

func (h *poolHistory) putPool(path string, g pool.Resources) {
	p := &pb.Pool{Path: path, Guaranteed: pb.FromVector(g)}
	if h.rng.Intn(3) == 0 {
		p.Max = &pb.Resources{CpuMillis: max(g.CPUMillis, 4000) + int64(h.rng.Intn(3))*4000}
		p.MaxSet = []string{"cpu"}
	}
	if r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: p, Create: true}}}); r.Err != nil {
		h.fatalf("pool %s: %v", path, r.Err)
	}
}

func (h *poolHistory) agentUp(i int) {
	id := fmt.Sprintf("ag%d", i)
	var known []*fsmpb.Assignment
	if ag, ok := h.s.agents[id]; ok {
		for _, tid := range sortedKeys(ag.Running) {
			known = append(known, &fsmpb.Assignment{TaskId: tid, Attempt: ag.Running[tid], AgentId: id})
		}
	}
	sh := poolAgents[i]
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: id,
		Fingerprint: &pb.Fingerprint{Capacity: sh.cap, Labels: sh.labels}, Known: known}}})
}

func (h *poolHistory) randomStep() {
	switch n := h.rng.Intn(100); {
	case n < 14:
		h.last = "submit"
		h.submit()
	case n < 48:
		lim := DefaultPlanLimits
		lim.PreemptBudget = h.rng.Intn(4)
		lim.MinRuntimeMs = []int64{0, 0, 500, 3000}[h.rng.Intn(4)]
		h.last = fmt.Sprintf("commit plan preempt=%d min_runtime=%d", lim.PreemptBudget, lim.MinRuntimeMs)
		h.commitChecked(lim)
	case n < 52:
		if len(h.stale) < 2 && h.rng.Intn(2) == 0 {
			h.last = "plan for later"
			h.stale = append(h.stale, h.s.Plan(h.now, PlanLimits{MaxAssign: 4096, MaxScan: 65536, PreemptBudget: 2}))
		} else if len(h.stale) > 0 {
			h.last = "commit stale plan"
			h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: h.stale[0]}})
			h.stale = h.stale[1:]
		}
	case n < 62:
		h.last = "started"
		if p := h.placedTasks(); len(p) > 0 {
			h.event(p[h.rng.Intn(len(p))], "started", "")
		}
	case n < 76:
		outcome := []string{"succeeded", "succeeded", "succeeded", "succeeded", "failed", "lost"}[h.rng.Intn(6)]
		h.last = "finished " + outcome
		if p := h.placedTasks(); len(p) > 0 {
			h.event(p[h.rng.Intn(len(p))], "finished", outcome)
		}
	case n < 79:
		i := h.rng.Intn(len(poolAgents))
		h.last = fmt.Sprintf("agent ag%d down", i)
		h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{
			AgentId: fmt.Sprintf("ag%d", i), Reason: "test"}}})
	case n < 84:
		i := h.rng.Intn(len(poolAgents))
		h.last = fmt.Sprintf("agent ag%d up", i)
		h.agentUp(i)
	case n < 88:
		h.last = "promote"
		h.promote()
	case n < 95:
		h.last = "advance clock"
		h.now += int64(h.rng.Intn(1500))
	case n < 99:
		h.last = "guarantee probe"
		h.probeGuarantee()
	default:
		h.last = "snapshot"
		s2, err := roundTrip(h.s)
		if err != nil {
			h.fatalf("snapshot: %v", err)
		}
		if diffs := compareStates(h.s, s2, h.now); len(diffs) > 0 {
			h.fatalf("snapshot differs:\n%s", strings.Join(diffs, "\n"))
		}
		h.s = s2
	}
}

var poolClasses = []pb.JobClass{pb.JobClass_JOB_CLASS_LATENCY, pb.JobClass_JOB_CLASS_BATCH,
	pb.JobClass_JOB_CLASS_BATCH, pb.JobClass_JOB_CLASS_OPPORTUNISTIC, pb.JobClass_JOB_CLASS_OPPORTUNISTIC}

func (h *poolHistory) submit() {
	r := h.rng
	spec := &pb.JobSpec{Pool: h.leaves[r.Intn(len(h.leaves))], Class: poolClasses[r.Intn(len(poolClasses))],
		Priority: int32(r.Intn(5) - 2)}
	if spec.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC && r.Intn(2) == 0 {
		spec.MaxWaitMs = 2000 + int64(r.Intn(10000))
	}
	for i, n := 0, 1+r.Intn(4); i < n; i++ {
		res := &pb.Resources{CpuMillis: (1 + int64(r.Intn(8))) * 500}
		if r.Intn(4) == 0 {
			res.MemoryBytes = int64(1+r.Intn(4)) * gi
		}
		ts := &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Command: []string{"encode"}, Resources: res}
		switch r.Intn(6) {
		case 0: // a GPU encode
			res.Gpus, res.Nvenc = 1, 1
			ts.Constraints = []*pb.Constraint{{Label: "encoder", Op: "=", Value: "nvenc"}}
		case 1: // encoder sessions only
			res.Nvenc = 1 + int64(r.Intn(2))
		}
		if r.Intn(10) == 0 {
			ts.ExclusiveKey = []string{"k1", "k2"}[r.Intn(2)]
		}
		if r.Intn(8) == 0 {
			ts.Constraints = append(ts.Constraints, &pb.Constraint{Label: "zone", Op: "=", Value: []string{"a", "b"}[r.Intn(2)]})
		}
		spec.Tasks = append(spec.Tasks, ts)
	}
	res := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{spec}}}})
	if res.Err != nil && !strings.Contains(res.Err.Error(), "ask above pool") {
		h.fatalf("submit: %v", res.Err)
	}
}

// placedTasks lists the placed tasks in job and task order.
func (h *poolHistory) placedTasks() []*Task {
	var out []*Task
	for _, jid := range h.s.JobIDs() {
		for _, tid := range h.s.job(jid).TaskIDs() {
			if t := h.s.task(tid); isPlaced(t.PB.State) {
				out = append(out, t)
			}
		}
	}
	return out
}

func (h *poolHistory) event(t *Task, kind, outcome string) {
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: t.AgentID(), Events: []*pb.TaskEvent{{TaskId: t.PB.Id, Attempt: t.Attempt(), Kind: kind,
			Outcome: outcome, ExitCode: 1, UnixMs: h.now}}}}, ClassifyExitCodes: true}}})
}

// promote promotes the due opportunistic jobs and checks that they are
// exactly those whose wait reached 90% of their max wait.
func (h *poolHistory) promote() {
	due := h.s.DuePromotions(h.now)
	for _, id := range h.s.JobIDs() {
		j := h.s.JobView(id, false)
		if j.Class != pb.JobClass_JOB_CLASS_OPPORTUNISTIC || IsJobFinal(j.State) || j.Counts.Queued+j.Counts.Waiting == 0 {
			continue
		}
		isDue := h.now-j.SubmittedUnixMs >= j.MaxWaitMs*9/10
		if isDue != (sort.SearchStrings(due, id) < len(due) && due[sort.SearchStrings(due, id)] == id) {
			h.fatalf("job %s submitted %d max_wait %d: due=%v at %d", id, j.SubmittedUnixMs, j.MaxWaitMs, due, h.now)
		}
	}
	if len(due) == 0 {
		return
	}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{JobIds: due}}})
	for _, id := range due {
		j := h.s.job(id)
		if j.PB.Class != pb.JobClass_JOB_CLASS_BATCH {
			h.fatalf("promoted %s is %v", id, j.PB.Class)
		}
	}
	for _, it := range queueOrder(h.s) {
		if jid := h.s.task(it.TaskID).PB.JobId; sort.SearchStrings(due, jid) < len(due) &&
			due[sort.SearchStrings(due, jid)] == jid && it.Key.Class != int32(pb.JobClass_JOB_CLASS_BATCH) {
			h.fatalf("promoted %s's task %s queued as class %d", jid, it.TaskID, it.Key.Class)
		}
	}
}

func (h *poolHistory) jobOf(t *Task) *Job { return h.s.job(t.PB.JobId) }

func (h *poolHistory) isOpp(t *Task) bool {
	return h.jobOf(t).PB.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC
}

// victimWas is a victim's task before its plan committed.
type victimWas struct {
	attempt, retries int32
	pool             string
	ask              pool.Resources
	opp              bool
}

// commitChecked plans with lim, checks the plan, commits it at once and
// checks what the commit did.
func (h *poolHistory) commitChecked(lim PlanLimits) *fsmpb.Assign {
	s := h.s
	plan := s.Plan(h.now, lim)
	if len(plan.Assignments) == 0 && len(plan.Preemptions) == 0 {
		return plan
	}
	// Free capacity of each up agent before the plan.
	free := map[string]pool.Resources{}
	for _, id := range s.AgentIDs() {
		if a := s.agents[id]; a.Up() {
			free[id] = a.Capacity.Sub(a.Used)
		}
	}
	index := map[string]int{} // task id -> position in plan.Assignments
	for i, a := range plan.Assignments {
		index[a.TaskId] = i
	}
	if len(plan.Preemptions) > max(lim.PreemptBudget, 0) {
		h.fatalf("%d victims with a budget of %d", len(plan.Preemptions), lim.PreemptBudget)
	}
	was := map[string]victimWas{}
	requesters := map[string]bool{} // pools (and ancestors) that preempted
	next := 0                       // assignments before it are accounted in free
	for i := 0; i < len(plan.Preemptions); {
		forID := plan.Preemptions[i].ForTaskId
		j := i
		for j < len(plan.Preemptions) && plan.Preemptions[j].ForTaskId == forID {
			j++
		}
		group := plan.Preemptions[i:j]
		i = j
		ft := s.task(forID)
		if h.isOpp(ft) {
			h.fatalf("opportunistic task %s preempts %v", forID, group)
		}
		k, ok := index[forID]
		if !ok || k < next {
			h.fatalf("preemption for %s without its assignment after the earlier ones: %v", forID, plan)
		}
		for ; next < k; next++ {
			a := plan.Assignments[next]
			free[a.AgentId] = free[a.AgentId].Sub(s.task(a.TaskId).Ask())
		}
		node := plan.Assignments[k].AgentId
		fpool := h.jobOf(ft).PB.Pool
		for _, p := range pool.Ancestors(fpool) {
			requesters[p] = true
		}
		freed := free[node]
		for _, p := range group {
			v := p.Victim
			vt := s.task(v.TaskId)
			if v.AgentId != node || vt.AgentID() != node || vt.Attempt() != v.Attempt || !isPlaced(vt.PB.State) {
				h.fatalf("victim %v of %s (on %s) is not its placed attempt on %s", v, forID, vt.AgentID(), node)
			}
			if _, dup := was[v.TaskId]; dup {
				h.fatalf("victim %s chosen twice", v.TaskId)
			}
			vpool := h.jobOf(vt).PB.Pool
			if vpool == fpool {
				h.fatalf("%s of pool %s preempts %s of its own pool", forID, fpool, v.TaskId)
			}
			was[v.TaskId] = victimWas{vt.Attempt(), vt.PB.RetriesUsed, vpool, vt.Ask(), h.isOpp(vt)}
			freed = freed.Add(vt.Ask())
		}
		if !ft.Ask().Fits(freed) {
			h.fatalf("victims %v free %v on %s, too little for %s's %v", group, freed, node, forID, ft.Ask())
		}
		for _, p := range group {
			if ft.Ask().Fits(freed.Sub(s.task(p.Victim.TaskId).Ask())) {
				h.fatalf("victim %s of %s is not needed: %v on %s fits %v without it", p.Victim.TaskId, forID,
					freed.Sub(s.task(p.Victim.TaskId).Ask()), node, ft.Ask())
			}
		}
		free[node] = freed.Sub(ft.Ask())
		next = k + 1
	}
	h.checkOpportunistic(plan)

	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}})
	if len(r.Assigned) != len(plan.Assignments) {
		h.fatalf("a fresh plan of %d assignments committed only %d", len(plan.Assignments), len(r.Assigned))
	}
	if len(r.Cancels) != len(plan.Preemptions) {
		h.fatalf("%d preemptions gave %d cancels", len(plan.Preemptions), len(r.Cancels))
	}
	h.preempted += len(plan.Preemptions)
	rolled := s.PoolUsage()
	for id, w := range was {
		t := s.task(id)
		prev := t.current() // the preempted attempt: the pending one has no record yet
		if t.PB.State != pb.TaskState_TASK_STATE_QUEUED || t.Attempt() != w.attempt+1 || t.PB.RetriesUsed != w.retries ||
			prev.Outcome != "preempted" {
			h.fatalf("victim %s: now %v#%d retries %d, previous outcome %q (was #%d, retries %d)", id, t.PB.State,
				t.Attempt(), t.PB.RetriesUsed, prev.Outcome, w.attempt, w.retries)
		}
		if w.opp {
			continue
		}
		// The victim's pool, and its ancestors that no requester of this
		// pass shares, kept at least their guarantee on what it held.
		for _, p := range pool.Ancestors(w.pool) {
			if requesters[p] {
				break
			}
			q, _ := s.pools.Get(p)
			if short := w.ask.Exceeds(pool.Resources{}); !fitsOnNames(q.Guaranteed, rolled[p], short) {
				h.fatalf("preempting %s (%v) took pool %s under its guarantee %v: it uses %v", id, w.ask, p, q.Guaranteed, rolled[p])
			}
		}
	}
	return plan
}

// fitsOnNames reports whether a <= b on the named resources.
func fitsOnNames(a, b pool.Resources, names []string) bool {
	for _, n := range names {
		av, _ := a.Get(n)
		bv, _ := b.Get(n)
		if av > bv {
			return false
		}
	}
	return true
}

// checkOpportunistic checks that the plan's opportunistic assignments come
// after its regular ones, and that none is on a node where a regular task
// the pass left queued could have gone: at the end of the regular phase
// (the regular assignments made, the victims stopped) that task was due,
// its exclusive key free, its pool admitted it, and its ask fitted the
// node's free capacity and constraints.
//
// Without preemption, free capacity only shrinks during a pass, so a
// regular task passed over stays unplaceable. A preemption can free more
// than its task takes after other regular tasks were passed over; Plan then
// runs the regular phase again, so that capacity is theirs before any
// opportunistic task's.
func (h *poolHistory) checkOpportunistic(plan *fsmpb.Assign) {
	s := h.s
	free := map[string]pool.Resources{}
	for _, id := range s.AgentIDs() {
		if a := s.agents[id]; a.Up() {
			free[id] = a.Capacity.Sub(a.Used)
		}
	}
	view := pool.NewView(s.pools, s.poolUsage, s.Cluster())
	held := map[string]bool{}
	for k := range s.exclusive {
		held[k] = true
	}
	for _, p := range plan.Preemptions {
		v := s.task(p.Victim.TaskId)
		free[p.Victim.AgentId] = free[p.Victim.AgentId].Add(v.Ask())
		view.Remove(h.jobOf(v).PB.Pool, v.Ask())
	}
	placed := map[string]bool{}
	var oppNodes []string
	seenOpp := false
	for _, a := range plan.Assignments {
		t := s.task(a.TaskId)
		placed[a.TaskId] = true
		if k := t.Spec().ExclusiveKey; k != "" {
			held[k] = true
		}
		if h.isOpp(t) {
			seenOpp = true
			oppNodes = append(oppNodes, a.AgentId)
			h.oppPlaced++
			continue
		}
		if seenOpp {
			h.fatalf("regular %s assigned after an opportunistic task: %v", a.TaskId, plan.Assignments)
		}
		free[a.AgentId] = free[a.AgentId].Sub(t.Ask())
		view.Add(h.jobOf(t).PB.Pool, t.Ask())
	}
	if len(oppNodes) == 0 {
		return
	}
	for _, it := range queueOrder(s) {
		t := s.task(it.TaskID)
		if placed[it.TaskID] || h.isOpp(t) || t.PB.NotBeforeUnixMs > h.now || held[t.Spec().ExclusiveKey] {
			continue
		}
		if !view.Admit(it.Pool, t.Ask()).OK {
			continue
		}
		ask := askOf(t)
		for _, n := range oppNodes {
			if t.Ask().Fits(free[n]) && matchesAll(ask.Constraints, s.agents[n].PB.GetFingerprint().GetLabels()) {
				h.fatalf("opportunistic work placed on %s while regular %s (%v, pool %s) fits its %v after the regular phase: %v",
					n, t.PB.Id, t.Ask(), it.Pool, free[n], plan)
			}
		}
	}
}

// probeGuarantee checks, for each leaf pool, that a pass with enough
// preemption budget and no min_runtime places at least one of its tasks
// when one of its queued regular tasks t
//
//   - is due and has no exclusive key,
//   - is admitted and within its pool's guarantee (View.Admit and
//     View.WithinGuarantee at the start of the pass), and
//   - fits, on some up agent matching its constraints, the agent's free
//     capacity plus what the running tasks there that may always be
//     preempted for it hold: tasks of other pools that are opportunistic,
//     or whose pool and ancestors up to the one shared with t's pool
//     guarantee nothing (so that stopping them takes no pool under its
//     guarantee).
//
// So that no other pool's work competes for the same capacity, the pass
// runs on a copy of the state whose queue holds only the pool's regular
// tasks.
func (h *poolHistory) probeGuarantee() {
	s := h.s
	view := pool.NewView(s.pools, s.poolUsage, s.Cluster())
	for _, leaf := range h.leaves {
		var want *Task
		for _, it := range queueOrder(s) {
			t := s.task(it.TaskID)
			if it.Pool != leaf || h.isOpp(t) || t.PB.NotBeforeUnixMs > h.now || t.Spec().ExclusiveKey != "" {
				continue
			}
			if view.Admit(leaf, t.Ask()).OK && view.WithinGuarantee(leaf, t.Ask()) && h.roomFor(t, leaf) {
				want = t
				break
			}
		}
		if want == nil {
			continue
		}
		h.probes++
		s2, err := roundTrip(s)
		if err != nil {
			h.fatalf("snapshot: %v", err)
		}
		for _, it := range queueOrder(s2) {
			if t := s2.task(it.TaskID); it.Pool != leaf || s2.job(t.PB.JobId).PB.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC {
				s2.queue.Remove(it)
			}
		}
		plan := s2.Plan(h.now, PlanLimits{MaxAssign: 4096, MaxScan: 65536, PreemptBudget: 1000, MinRuntimeMs: 0})
		if len(plan.Assignments) == 0 {
			h.fatalf("pool %s has %s (%v) within its guarantee with room to make, but a pass places nothing (preemptions %v)",
				leaf, want.PB.Id, want.Ask(), plan.Preemptions)
		}
		for _, a := range plan.Assignments {
			if p := s2.job(s2.task(a.TaskId).PB.JobId).PB.Pool; p != leaf {
				h.fatalf("probe of %s placed %s of pool %s", leaf, a.TaskId, p)
			}
		}
	}
}

// roomFor reports whether some up agent matching t's constraints could
// hold t once the tasks that may always be preempted for it stop.
func (h *poolHistory) roomFor(t *Task, leaf string) bool {
	s := h.s
	mine := map[string]bool{}
	for _, p := range pool.Ancestors(leaf) {
		mine[p] = true
	}
	ask := askOf(t)
	for _, id := range s.AgentIDs() {
		a := s.agents[id]
		if !a.Up() || !matchesAll(ask.Constraints, a.PB.GetFingerprint().GetLabels()) {
			continue
		}
		room := a.Capacity.Sub(a.Used)
		for tid := range a.Running {
			r := s.task(tid)
			rpool := h.jobOf(r).PB.Pool
			if rpool == leaf {
				continue
			}
			always := h.isOpp(r)
			if !always {
				always = true
				for _, p := range pool.Ancestors(rpool) {
					if mine[p] {
						break
					}
					if q, _ := s.pools.Get(p); !q.Guaranteed.IsZero() {
						always = false
					}
				}
			}
			if always {
				room = room.Add(r.Ask())
			}
		}
		if t.Ask().Fits(room) {
			return true
		}
	}
	return false
}

func matchesAll(cs []placement.Constraint, labels map[string]string) bool {
	for _, c := range cs {
		if !c.Matches(labels) {
			return false
		}
	}
	return true
}

// drain brings every agent up, then plans (with preemption), starts and
// finishes every placed task, and promotes, until every job is over.
func (h *poolHistory) drain() {
	h.last = "drain"
	for i := range poolAgents {
		if ag, ok := h.s.agents[fmt.Sprintf("ag%d", i)]; !ok || !ag.Up() {
			h.agentUp(i)
		}
	}
	for _, st := range h.stale {
		h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: st}})
	}
	h.stale = nil
	for round := 0; ; round++ {
		done := true
		for _, jid := range h.s.JobIDs() {
			if !IsJobFinal(h.s.job(jid).PB.State) {
				done = false
			}
		}
		if done {
			break
		}
		if round == 300 {
			var stuck []string
			for _, jid := range h.s.JobIDs() {
				if j := h.s.JobView(jid, true); !IsJobFinal(j.State) {
					stuck = append(stuck, fmt.Sprint(j))
				}
			}
			h.fatalf("jobs not over after %d rounds:\n%s", round, strings.Join(stuck, "\n"))
		}
		h.now += 1000
		h.promote()
		h.commitChecked(PlanLimits{MaxAssign: 4096, MaxScan: 65536, PreemptBudget: 4})
		for _, t := range h.placedTasks() {
			h.event(t, "started", "")
		}
		h.now += 1000
		for _, t := range h.placedTasks() {
			h.event(t, "finished", "succeeded")
		}
	}
	if h.s.QueueLen() != 0 {
		h.fatalf("%d tasks still queued after every job ended", h.s.QueueLen())
	}
	if errs := checkCapacity(h.s); len(errs) > 0 || len(h.s.poolUsage) != 0 {
		h.fatalf("after the drain: usage %v, %v", h.s.poolUsage, errs)
	}
}
