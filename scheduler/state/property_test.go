package state

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// TestPropertyRandomHistories drives the state with random but reproducible
// histories (agents with and without GPUs coming and going, jobs with random
// asks, dependencies and exclusive keys, plans committed at once or late,
// events of every kind, stale events, cancellations, snapshots) and checks
// the invariants after every step. At the end every agent comes back and
// every placed attempt succeeds until all jobs are over: no task may be
// lost, and each task succeeds at most once.
func TestPropertyRandomHistories(t *testing.T) {
	for seed := int64(1); seed <= 16; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			a := runHistory(t, seed, 300)
			if seed > 4 {
				return
			}
			// The same seed gives the same history and the same state.
			b := runHistory(t, seed, 300)
			if diffs := compareStates(a.s, b.s, a.now); len(diffs) > 0 {
				t.Fatalf("same seed, different states:\n%s", strings.Join(diffs, "\n"))
			}
		})
	}
}

const gi = int64(1) << 30

// agentShape is one kind of host in the random cluster.
type agentShape struct {
	cap    *pb.Resources
	labels map[string]string
}

var propertyAgents = []agentShape{
	{&pb.Resources{CpuMillis: 8000, MemoryBytes: 16 * gi}, map[string]string{"zone": "a"}},
	{&pb.Resources{CpuMillis: 8000, MemoryBytes: 16 * gi}, map[string]string{"zone": "b"}},
	{&pb.Resources{CpuMillis: 16000, MemoryBytes: 64 * gi, Gpus: 2, GpuMemoryBytes: 48 * gi, Nvenc: 4},
		map[string]string{"zone": "a", "encoder": "nvenc"}},
	{&pb.Resources{CpuMillis: 16000, MemoryBytes: 64 * gi, Gpus: 1, GpuMemoryBytes: 80 * gi},
		map[string]string{"zone": "b"}},
	{&pb.Resources{CpuMillis: 4000, MemoryBytes: 8 * gi}, map[string]string{"zone": "a"}},
}

type history struct {
	t   *testing.T
	rng *rand.Rand
	s   *State
	now int64
	// successes counts, per task, the success events that took effect.
	successes map[string]int
	pending   [][]*fsmpb.Assignment // plans not committed yet, oldest first
	step      int
	refused   int    // assignments Apply did not take
	last      string // the last operation, for failure messages
	onApply   func(*Result)
	// onState, when set, sees the state after every command.
	onState func(*State)
}

func runHistory(t *testing.T, seed int64, steps int) *history {
	return runHistoryWith(t, seed, steps, nil)
}

// runHistoryWith runs a random history; with onApply set, change records
// are on and onApply sees every command's result.
func runHistoryWith(t *testing.T, seed int64, steps int, onApply func(*Result)) *history {
	return runHistoryHooks(t, seed, steps, onApply, nil)
}

// runHistoryHooks is runHistoryWith with onState called with the state
// after every command.
func runHistoryHooks(t *testing.T, seed int64, steps int, onApply func(*Result), onState func(*State)) *history {
	h := &history{t: t, rng: rand.New(rand.NewSource(seed)),
		s:   New(Defaults{MaxAttempts: 3, InitialBackoffMs: 100, MaxBackoffMs: 400, OpportunisticMaxWaitMs: 10000}),
		now: 1000, successes: map[string]int{}, onApply: onApply, onState: onState}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true,
		Pool: &pb.Pool{Path: "capped", Max: &pb.Resources{CpuMillis: 8000}, MaxSet: []string{"cpu"}}}}})
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true,
		Pool: &pb.Pool{Path: "org", Max: &pb.Resources{CpuMillis: 12000, Gpus: 1}, MaxSet: []string{"cpu", "gpu"}}}}})
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Create: true,
		Pool: &pb.Pool{Path: "org/team"}}}})
	for i := range propertyAgents {
		if h.rng.Intn(3) > 0 {
			h.agentUp(i)
		}
	}
	for h.step = 0; h.step < steps; h.step++ {
		h.randomStep()
	}
	h.drain()
	states := map[pb.JobState]int{}
	for _, j := range h.s.jobs.all {
		states[j.PB.State]++
	}
	attempts := 0
	for _, t := range allTasks(h.s) {
		attempts += len(t.PB.Attempts)
	}
	t.Logf("seed %d: %d jobs (%d succeeded, %d failed, %d cancelled), %d tasks, %d attempts, %d assignments refused",
		seed, h.s.jobs.len(), states[pb.JobState_JOB_STATE_SUCCEEDED], states[pb.JobState_JOB_STATE_FAILED],
		states[pb.JobState_JOB_STATE_CANCELLED], h.s.TaskCount(), attempts, h.refused)
	return h
}

func (h *history) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("step %d (%s): %s", h.step, h.last, fmt.Sprintf(format, args...))
}

func (h *history) apply(c *fsmpb.Command) *Result {
	h.t.Helper()
	c.NowUnixMs = h.now
	h.s.RecordChanges(h.onApply != nil) // a restored copy starts with them off
	r := h.s.Apply(c)
	if errs := checkInvariants(h.s, true); len(errs) > 0 {
		h.fatalf("invariants broken:\n  %s", strings.Join(errs, "\n  "))
	}
	if h.onApply != nil {
		h.onApply(r)
	}
	if h.onState != nil {
		h.onState(h.s)
	}
	return r
}

// placed lists the placed tasks, in job and task order.
func (h *history) placed() []*Task {
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

func (h *history) agentUp(i int) *Result {
	return h.agentUpKnown(i, nil)
}

func (h *history) agentUpKnown(i int, known []*fsmpb.Assignment) *Result {
	sh := propertyAgents[i]
	return h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
		AgentId: fmt.Sprintf("ag%d", i), Fingerprint: &pb.Fingerprint{Capacity: sh.cap, Labels: sh.labels}, Known: known}}})
}

func (h *history) randomStep() {
	switch n := h.rng.Intn(100); {
	case n < 12:
		h.last = "submit"
		h.submit()
	case n < 33:
		h.last = "commit plan"
		h.commit(h.s.Plan(h.now, DefaultPlanLimits).Assignments)
	case n < 40:
		// Plan now, commit later: by then the plan may be stale.
		if len(h.pending) < 3 && h.rng.Intn(2) == 0 {
			h.last = "plan for later"
			h.pending = append(h.pending, h.s.Plan(h.now, DefaultPlanLimits).Assignments)
		} else if len(h.pending) > 0 {
			h.last = "commit stale plan"
			h.commit(h.pending[0])
			h.pending = h.pending[1:]
		}
	case n < 52:
		h.last = "started"
		if p := h.placed(); len(p) > 0 {
			h.event(p[h.rng.Intn(len(p))], "started", "")
		}
	case n < 72:
		p := h.placed()
		if len(p) == 0 {
			return
		}
		outcome := []string{"succeeded", "succeeded", "succeeded", "succeeded", "succeeded", "succeeded",
			"failed", "failed", "timeout", "lost", "cancelled"}[h.rng.Intn(11)]
		h.last = "finished " + outcome
		h.event(p[h.rng.Intn(len(p))], "finished", outcome)
	case n < 76:
		h.last = "stale event"
		h.staleEvent()
	case n < 80:
		h.last = "agent down"
		h.agentDown(h.rng.Intn(len(propertyAgents)))
	case n < 86:
		h.last = "agent up"
		h.reconnect(h.rng.Intn(len(propertyAgents)))
	case n < 89:
		h.last = "cancel"
		h.cancel()
	case n < 97:
		h.last = "advance clock"
		h.now += int64(h.rng.Intn(300))
	default:
		h.last = "snapshot"
		h.snapshot()
	}
}

var (
	propertyPools   = []string{DefaultPool, DefaultPool, "capped", "org/team"}
	propertyClasses = []pb.JobClass{pb.JobClass_JOB_CLASS_LATENCY, pb.JobClass_JOB_CLASS_BATCH,
		pb.JobClass_JOB_CLASS_BATCH, pb.JobClass_JOB_CLASS_OPPORTUNISTIC}
)

func (h *history) randomTask(i int, poolPath string) *pb.TaskSpec {
	r := h.rng
	res := &pb.Resources{CpuMillis: int64(r.Intn(9)) * 500, MemoryBytes: int64(r.Intn(9)) * gi}
	if poolPath != "capped" && r.Intn(5) == 0 {
		res.Gpus = 1
		res.GpuMemoryBytes = int64(r.Intn(4)) * 8 * gi
		if r.Intn(2) == 0 {
			res.Nvenc = 1
		}
	}
	ts := &pb.TaskSpec{Command: []string{"work"}, Resources: res}
	if r.Intn(8) == 0 {
		ts.ExclusiveKey = []string{"k1", "k2"}[r.Intn(2)]
	}
	if r.Intn(10) == 0 {
		// Every ask must fit some agent, so that the history can drain:
		// only zone a has an encoder.
		zone := []string{"a", "b"}[r.Intn(2)]
		if res.Nvenc > 0 {
			zone = "a"
		}
		ts.Constraints = []*pb.Constraint{{Label: "zone", Op: "=", Value: zone}}
	}
	if r.Intn(4) == 0 {
		ts.Retry = &pb.RetryPolicy{MaxAttempts: int32(1 + r.Intn(3))}
	}
	if i > 0 && r.Intn(3) == 0 {
		for d := 0; d < i; d++ {
			if r.Intn(2) == 0 {
				ts.After = append(ts.After, fmt.Sprintf("t%d", d))
			}
		}
	}
	return ts
}

func (h *history) submit() {
	r := h.rng
	var specs []*pb.JobSpec
	for n := 1 + r.Intn(2); n > 0; n-- {
		spec := &pb.JobSpec{Pool: propertyPools[r.Intn(len(propertyPools))],
			Class: propertyClasses[r.Intn(len(propertyClasses))], Priority: int32(r.Intn(5) - 2)}
		if r.Intn(8) == 0 {
			spec.IdempotencyKey = fmt.Sprintf("key-%d", r.Intn(4))
		}
		for i, n := 0, 1+r.Intn(5); i < n; i++ {
			spec.Tasks = append(spec.Tasks, h.randomTask(i, spec.Pool))
		}
		specs = append(specs, spec)
	}
	jobsBefore := h.s.jobs.len()
	res := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: specs}}})
	if res.Err != nil {
		// Only the pool max may reject these specs, and then nothing is added.
		if !strings.Contains(res.Err.Error(), "ask above pool") || h.s.jobs.len() != jobsBefore {
			h.fatalf("submit: %v (jobs %d -> %d)", res.Err, jobsBefore, h.s.jobs.len())
		}
		return
	}
	if len(res.Jobs) != len(specs) || len(res.Existing) != len(specs) {
		h.fatalf("submit of %d jobs returned %d jobs, %d existing flags", len(specs), len(res.Jobs), len(res.Existing))
	}
	added := 0
	for i, j := range res.Jobs {
		if !res.Existing[i] {
			added++
		} else if j.IdempotencyKey != specs[i].IdempotencyKey || idemMap(h.s)[specs[i].IdempotencyKey] != j.Id {
			h.fatalf("existing job %s for key %q", j.Id, specs[i].IdempotencyKey)
		}
	}
	if h.s.jobs.len() != jobsBefore+added {
		h.fatalf("%d jobs added, %d new", h.s.jobs.len()-jobsBefore, added)
	}
}

func (h *history) commit(plan []*fsmpb.Assignment) {
	if len(plan) == 0 {
		return
	}
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: plan}}})
	h.refused += len(plan) - len(r.Assigned)
	for _, a := range r.Assigned {
		t := h.s.task(a.TaskId)
		if !isPlaced(t.PB.State) || t.AgentID() != a.AgentId || t.Attempt() != a.Attempt {
			h.fatalf("assigned %v but task is %v#%d on %q", a, t.PB.State, t.Attempt(), t.AgentID())
		}
	}
}

func (h *history) event(t *Task, kind, outcome string) {
	id, attempt, agent := t.PB.Id, t.Attempt(), t.AgentID()
	retries := t.PB.RetriesUsed
	j := h.s.job(t.PB.JobId)
	var others []string // the job's other placed tasks
	for _, tid := range j.TaskIDs() {
		if o := h.s.task(tid); tid != id && isPlaced(o.PB.State) {
			others = append(others, tid)
		}
	}
	// Most failures are generic; one in eight is an exit code of each
	// class (permanent or not).
	exit := int32(1)
	if n := h.rng.Intn(8); outcome == "failed" && n == 0 {
		exit = []int32{failure.ExitBadInput, failure.ExitDecodeError, failure.ExitVerificationFailed,
			failure.ExitEncoderError}[h.rng.Intn(4)]
	}
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: agent, Events: []*pb.TaskEvent{{TaskId: id, Attempt: attempt, Kind: kind, Outcome: outcome,
			ExitCode: exit, UnixMs: h.now}}}}, ClassifyExitCodes: true}}})
	st := t.PB.State
	if kind == "finished" {
		if class := t.PB.Attempts[attempt-1].FailureClass; class != failure.Classify(outcome, exit) {
			h.fatalf("%s %s (exit %d): class %q", id, outcome, exit, class)
		}
	}
	switch {
	case kind == "started":
		if st != pb.TaskState_TASK_STATE_RUNNING || t.Attempt() != attempt {
			h.fatalf("%s started: now %v#%d", id, st, t.Attempt())
		}
	case outcome == "succeeded":
		if st != pb.TaskState_TASK_STATE_SUCCEEDED {
			h.fatalf("%s succeeded: now %v", id, st)
		}
		h.successes[id]++
	case outcome == "failed" || outcome == "timeout":
		if t.PB.RetriesUsed != retries+1 {
			h.fatalf("%s failed: retries %d -> %d", id, retries, t.PB.RetriesUsed)
		}
		switch st {
		case pb.TaskState_TASK_STATE_QUEUED:
			if failure.Permanent(failure.Classify(outcome, exit)) {
				h.fatalf("%s failed with exit %d and was retried", id, exit)
			}
			if t.Attempt() != attempt+1 || t.PB.NotBeforeUnixMs <= h.now || len(r.Cancels) != 0 {
				h.fatalf("%s failed and retried: attempt %d not before %d cancels %v", id, t.Attempt(), t.PB.NotBeforeUnixMs, r.Cancels)
			}
		case pb.TaskState_TASK_STATE_FAILED:
			if j.PB.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.PB.Reason, "task "+t.PB.Name+" failed") {
				h.fatalf("%s failed for good: job %v %q", id, j.PB.State, j.PB.Reason)
			}
			var cancelled []string
			for _, c := range r.Cancels {
				cancelled = append(cancelled, c.TaskID)
			}
			if strings.Join(cancelled, ",") != strings.Join(others, ",") {
				h.fatalf("%s failed the job: cancels %v, other placed tasks %v", id, cancelled, others)
			}
		default:
			h.fatalf("%s failed: now %v", id, st)
		}
	default: // lost, cancelled by the agent: requeued without a retry
		if st != pb.TaskState_TASK_STATE_QUEUED || t.Attempt() != attempt+1 || t.PB.RetriesUsed != retries {
			h.fatalf("%s %s: now %v#%d retries %d", id, outcome, st, t.Attempt(), t.PB.RetriesUsed)
		}
	}
}

// staleEvent reports a finish for an attempt that is not current on that
// agent; it must change nothing.
func (h *history) staleEvent() {
	var cands []*Task
	for _, jid := range h.s.JobIDs() {
		for _, tid := range h.s.job(jid).TaskIDs() {
			if t := h.s.task(tid); len(t.PB.Attempts) > 0 {
				cands = append(cands, t)
			}
		}
	}
	if len(cands) == 0 {
		return
	}
	t := cands[h.rng.Intn(len(cands))]
	attempt, agent := t.Attempt(), t.AgentID()
	switch {
	case !isPlaced(t.PB.State):
		// Any event about a task that is not placed is stale.
		agent = "ag0"
	case h.rng.Intn(2) == 0 && attempt > 1:
		attempt = int32(1 + h.rng.Intn(int(attempt-1)))
	default:
		agent = agent + "-other"
	}
	before := h.s.JobView(t.PB.JobId, true)
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: agent, Events: []*pb.TaskEvent{{TaskId: t.PB.Id, Attempt: attempt, Kind: "finished", Outcome: "succeeded", UnixMs: h.now}}}}}}})
	if after := h.s.JobView(t.PB.JobId, true); !equalJobs(before, after) {
		h.fatalf("stale event for %s#%d on %s changed the job", t.PB.Id, attempt, agent)
	}
}

func (h *history) agentDown(i int) {
	id := fmt.Sprintf("ag%d", i)
	ag, ok := h.s.agents[id]
	if !ok {
		return
	}
	type was struct {
		attempt, retries int32
	}
	before := map[string]was{}
	for tid, att := range ag.Running {
		before[tid] = was{att, h.s.task(tid).PB.RetriesUsed}
	}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: id, Reason: "test"}}})
	if ag.Up() || len(ag.Running) != 0 {
		h.fatalf("agent %s after down: %s with %d tasks", id, ag.PB.State, len(ag.Running))
	}
	for tid, w := range before {
		t := h.s.task(tid)
		if t.PB.State != pb.TaskState_TASK_STATE_QUEUED || t.Attempt() != w.attempt+1 || t.PB.RetriesUsed != w.retries {
			h.fatalf("%s after its agent went down: %v#%d retries %d (was #%d, %d)", tid, t.PB.State, t.Attempt(),
				t.PB.RetriesUsed, w.attempt, w.retries)
		}
	}
}

// reconnect opens a new session for an agent that knows a random part of
// what the state has there, plus maybe an attempt it should not run.
func (h *history) reconnect(i int) {
	id := fmt.Sprintf("ag%d", i)
	var known []*fsmpb.Assignment
	keep := map[string]bool{}
	lost := map[string]int32{}
	if ag, ok := h.s.agents[id]; ok {
		for _, tid := range sortedKeys(ag.Running) {
			if h.rng.Intn(4) > 0 {
				known = append(known, &fsmpb.Assignment{TaskId: tid, Attempt: ag.Running[tid], AgentId: id})
				keep[tid] = true
			} else {
				lost[tid] = ag.Running[tid]
			}
		}
	}
	var stale *fsmpb.Assignment
	if h.rng.Intn(3) == 0 {
		for _, jid := range h.s.JobIDs() {
			tid := h.s.job(jid).TaskIDs()[0]
			if t := h.s.task(tid); !keep[tid] && lost[tid] == 0 && t.Attempt() > 0 {
				stale = &fsmpb.Assignment{TaskId: tid, Attempt: t.Attempt(), AgentId: id}
				known = append(known, stale)
				break
			}
		}
	}
	r := h.agentUpKnown(i, known)
	if stale != nil {
		found := false
		for _, c := range r.Cancels {
			found = found || (c.TaskID == stale.TaskId && c.Attempt == stale.Attempt && c.AgentID == id)
		}
		if !found {
			h.fatalf("agent %s knows %s#%d, which is not placed there, but got cancels %v", id, stale.TaskId, stale.Attempt, r.Cancels)
		}
	}
	if len(r.Cancels) != len(known)-len(keep) {
		h.fatalf("agent %s: cancels %v for %d unknown attempts", id, r.Cancels, len(known)-len(keep))
	}
	ag := h.s.agents[id]
	for tid := range keep {
		if _, ok := ag.Running[tid]; !ok {
			h.fatalf("%s known by its agent %s but no longer placed there", tid, id)
		}
	}
	for tid, att := range lost {
		if t := h.s.task(tid); t.PB.State != pb.TaskState_TASK_STATE_QUEUED || t.Attempt() != att+1 {
			h.fatalf("%s unknown to its agent %s: now %v#%d", tid, id, t.PB.State, t.Attempt())
		}
	}
}

func (h *history) cancel() {
	ids := h.s.JobIDs()
	if len(ids) == 0 {
		return
	}
	jid := ids[h.rng.Intn(len(ids))]
	j := h.s.job(jid)
	var want []string
	if !IsJobFinal(j.PB.State) {
		for _, tid := range j.TaskIDs() {
			if isPlaced(h.s.task(tid).PB.State) {
				want = append(want, tid)
			}
		}
	}
	wasFinal := IsJobFinal(j.PB.State)
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: jid}}})
	var got []string
	for _, c := range r.Cancels {
		got = append(got, c.TaskID)
	}
	if r.Err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		h.fatalf("cancel %s: err %v cancels %v, placed %v", jid, r.Err, got, want)
	}
	if !wasFinal && j.PB.State != pb.JobState_JOB_STATE_CANCELLED {
		h.fatalf("cancel %s: job %v", jid, j.PB.State)
	}
}

func (h *history) snapshot() {
	s2, err := roundTrip(h.s)
	if err != nil {
		h.fatalf("snapshot: %v", err)
	}
	if diffs := compareStates(h.s, s2, h.now); len(diffs) > 0 {
		h.fatalf("snapshot round trip differs:\n%s", strings.Join(diffs, "\n"))
	}
	if errs := checkInvariants(s2, true); len(errs) > 0 {
		h.fatalf("restored state broken:\n  %s", strings.Join(errs, "\n  "))
	}
	// Go on with the copy half the time, so that later steps run on a
	// restored state.
	if h.rng.Intn(2) == 0 {
		h.s = s2
	}
}

// drain brings every agent up and succeeds every placed attempt until all
// jobs are over.
func (h *history) drain() {
	h.last = "drain"
	for i := range propertyAgents {
		if ag, ok := h.s.agents[fmt.Sprintf("ag%d", i)]; !ok || !ag.Up() {
			h.agentUp(i)
		}
	}
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
		if round == 500 {
			var stuck []string
			for _, jid := range h.s.JobIDs() {
				if j := h.s.JobView(jid, true); !IsJobFinal(j.State) {
					stuck = append(stuck, fmt.Sprint(j))
				}
			}
			h.fatalf("jobs not finished after %d rounds:\n%s", round, strings.Join(stuck, "\n"))
		}
		h.now += 500
		h.commit(h.s.Plan(h.now, DefaultPlanLimits).Assignments)
		for _, t := range h.placed() {
			h.event(t, "finished", "succeeded")
		}
	}
	if h.s.QueueLen() != 0 {
		h.fatalf("queue holds %d tasks after all jobs ended", h.s.QueueLen())
	}
	for _, id := range h.s.AgentIDs() {
		if ag := h.s.agents[id]; !ag.Used.IsZero() || len(ag.Running) != 0 {
			h.fatalf("agent %s still uses %v after all jobs ended", id, ag.Used)
		}
	}
	var ids []string
	for id := range allTasks(h.s) {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t := h.s.task(id)
		want := 0
		if t.PB.State == pb.TaskState_TASK_STATE_SUCCEEDED {
			want = 1
		}
		if h.successes[id] != want {
			h.fatalf("task %s %v: %d successes took effect", id, t.PB.State, h.successes[id])
		}
		if j := h.s.job(t.PB.JobId); j.PB.State == pb.JobState_JOB_STATE_SUCCEEDED && want != 1 {
			h.fatalf("job %s succeeded with task %s %v", j.PB.Id, id, t.PB.State)
		}
	}
}
