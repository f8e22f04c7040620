package state

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/queue"
	"google.golang.org/protobuf/proto"
)

// checkInvariants returns a description of every invariant s breaks, or
// nil. It recounts everything from the tasks themselves and compares the
// recount with the FSM's bookkeeping. strictPoolMax also checks that every
// pool's usage is within its max, which only holds while no pool max was
// lowered under running work.
func checkInvariants(s *State, strictPoolMax bool) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	agentUsed := map[string]pool.Resources{}
	agentRunning := map[string]map[string]int32{}
	poolUsed := map[string]pool.Resources{}
	poolRun := map[string]int{}
	exclusive := map[string]string{}
	queued := 0
	seen := map[string]bool{}
	errs = append(errs, checkAgentIndex(s)...)

	for _, jid := range s.JobIDs() {
		j := s.job(jid)
		if j.PB.Id != jid {
			fail("job %s: record has id %s", jid, j.PB.Id)
		}
		if k := j.PB.IdempotencyKey; k != "" {
			if got, ok := s.idem.get(k); !ok || got != j {
				fail("job %s: idempotency key %q maps to another job", jid, k)
			}
		}
		var c pb.TaskCounts
		c.Total = int32(len(j.TaskIDs()))
		var active, failed, nonFinal int
		byName := map[string]*Task{}
		for _, tid := range j.TaskIDs() {
			if t, ok := s.Task(tid); ok {
				byName[t.PB.Name] = t
			}
		}
		for _, tid := range j.TaskIDs() {
			t, ok := s.Task(tid)
			if !ok {
				fail("job %s: task %s does not exist", jid, tid)
				continue
			}
			if seen[tid] {
				fail("task %s: listed twice", tid)
			}
			seen[tid] = true
			if t.PB.JobId != jid || t.PB.Id != tid {
				fail("task %s: record says id %s of job %s", tid, t.PB.Id, t.PB.JobId)
			}
			st := t.PB.State
			if st < pb.TaskState_TASK_STATE_WAITING || st > pb.TaskState_TASK_STATE_CANCELLED {
				fail("task %s: bad state %v", tid, st)
				continue
			}
			switch {
			case st == pb.TaskState_TASK_STATE_FAILED && t.PB.ReplacedBy != "":
				c.Replaced++ // a failure a fallback took over does not fail the job
			case st == pb.TaskState_TASK_STATE_FAILED:
				c.Failed++
				failed++
			case st == pb.TaskState_TASK_STATE_WAITING:
				c.Waiting++
			case st == pb.TaskState_TASK_STATE_QUEUED:
				c.Queued++
			case isPlaced(st):
				c.Running++
			case st == pb.TaskState_TASK_STATE_SUCCEEDED:
				c.Succeeded++
			case st == pb.TaskState_TASK_STATE_CANCELLED:
				c.Cancelled++
			}
			if !IsFinal(st) {
				nonFinal++
			}
			if t.PB.ReplacedBy != "" && st != pb.TaskState_TASK_STATE_FAILED {
				fail("task %s: %v but replaced by %s", tid, st, t.PB.ReplacedBy)
			}
			if st == pb.TaskState_TASK_STATE_QUEUED || isPlaced(st) {
				active++
			}
			if t.Ask() != t.Spec().GetResources().Vector() {
				fail("task %s: ask %v, spec says %v", tid, t.Ask(), t.Spec().GetResources().Vector())
			}

			// Attempts are numbered 1..n; all but the last are over. Past
			// limits.AttemptHistory records, the first and the latest are
			// kept: numbers then skip once, after the first.
			var retries int32
			succeeded := 0
			if len(t.PB.Attempts) > limits.AttemptHistory {
				fail("task %s: %d attempt records, more than %d", tid, len(t.PB.Attempts), limits.AttemptHistory)
			}
			trimmed := false
			for i, a := range t.PB.Attempts {
				want := int32(i + 1)
				if i > 0 {
					want = t.PB.Attempts[i-1].Number + 1
				}
				if i == 1 && a.Number > 2 && len(t.PB.Attempts) == limits.AttemptHistory {
					want, trimmed = a.Number, true
				}
				if a.Number != want {
					fail("task %s: attempt %d has number %d", tid, i+1, a.Number)
				}
				if i < len(t.PB.Attempts)-1 && a.Outcome == "" {
					fail("task %s: old attempt %d has no outcome", tid, a.Number)
				}
				switch a.Outcome {
				case "failed", "timeout":
					if failure.UsesRetry(a.FailureClass) {
						retries++
					}
				case "succeeded":
					succeeded++
				}
				checkAttemptClass(tid, a, fail)
				if failure.Permanent(a.FailureClass) &&
					(i != len(t.PB.Attempts)-1 || st != pb.TaskState_TASK_STATE_FAILED) {
					fail("task %s: attempt %d failed for good (%s), but the task is %v with %d attempts",
						tid, a.Number, a.FailureClass, st, len(t.PB.Attempts))
				}
			}
			if retries != t.PB.RetriesUsed && !(trimmed && retries < t.PB.RetriesUsed) {
				fail("task %s: retries_used %d, but %d attempts failed", tid, t.PB.RetriesUsed, retries)
			}
			switch {
			case st == pb.TaskState_TASK_STATE_SUCCEEDED:
				if succeeded != 1 || t.current().Outcome != "succeeded" {
					fail("task %s: succeeded with %d succeeded attempts, last outcome %q", tid, succeeded, t.current().GetOutcome())
				}
			case succeeded != 0:
				fail("task %s: %v but has a succeeded attempt", tid, st)
			}
			// A placed task's last attempt is open; a queued or waiting
			// task's pending attempt has no record yet, so every record it
			// has is over.
			if isPlaced(st) && (len(t.PB.Attempts) == 0 || t.current().Outcome != "" || t.current().PlacedUnixMs == 0) {
				fail("task %s: %v without an open placed attempt", tid, st)
			}
			if t.pending() && len(t.PB.Attempts) > 0 && t.current().Outcome == "" {
				fail("task %s: %v with an open attempt record", tid, st)
			}
			if (st == pb.TaskState_TASK_STATE_SUCCEEDED || st == pb.TaskState_TASK_STATE_FAILED) && len(t.PB.Attempts) == 0 {
				fail("task %s: %v without an attempt", tid, st)
			}
			if st == pb.TaskState_TASK_STATE_QUEUED && t.PB.QueuedUnixMs == 0 {
				fail("task %s: queued without a queue time", tid)
			}

			// Dependencies.
			notDone := 0
			for _, dep := range t.Spec().After {
				d, ok := byName[dep]
				if !ok {
					fail("task %s: after names unknown %q", tid, dep)
					continue
				}
				for d.PB.ReplacedBy != "" { // a fallback stands in for it
					d = s.task(d.PB.ReplacedBy)
				}
				if d.PB.State != pb.TaskState_TASK_STATE_SUCCEEDED {
					notDone++
				}
			}
			if st == pb.TaskState_TASK_STATE_WAITING && (notDone == 0 || int(t.waiting) != notDone) {
				fail("task %s: waiting with waiting=%d, %d dependencies not done", tid, t.waiting, notDone)
			}
			if (st == pb.TaskState_TASK_STATE_QUEUED || isPlaced(st) || st == pb.TaskState_TASK_STATE_SUCCEEDED) && notDone != 0 {
				fail("task %s: %v while %d dependencies are not done", tid, st, notDone)
			}

			// Queue membership.
			inQueue := s.queue.Contains(s.queueItem(t))
			if st == pb.TaskState_TASK_STATE_QUEUED {
				queued++
				if !inQueue {
					fail("task %s: queued but not in the queue", tid)
				}
			} else if inQueue {
				fail("task %s: %v but in the queue", tid, st)
			}

			// Placement.
			if isPlaced(st) {
				agentID := t.AgentID()
				ag, ok := s.agents[agentID]
				switch {
				case agentID == "":
					fail("task %s: %v without an agent", tid, st)
				case !ok:
					fail("task %s: placed on unknown agent %q", tid, agentID)
				case !ag.Up():
					fail("task %s: placed on agent %s, which is %s", tid, agentID, ag.PB.State)
				}
				agentUsed[agentID] = agentUsed[agentID].Add(t.Ask())
				if agentRunning[agentID] == nil {
					agentRunning[agentID] = map[string]int32{}
				}
				agentRunning[agentID][tid] = t.Attempt()
				poolUsed[j.PB.Pool] = poolUsed[j.PB.Pool].Add(t.Ask())
				poolRun[j.PB.Pool]++
				if k := t.Spec().ExclusiveKey; k != "" {
					if other, dup := exclusive[k]; dup {
						fail("tasks %s and %s both hold exclusive key %q", other, tid, k)
					}
					exclusive[k] = tid
				}
			}
		}
		if (j.counts != nil) != (len(j.TaskIDs()) > 1) || j.PB.Counts != nil {
			fail("job %s of %d tasks: keeps counts %v, record counts %v (only jobs of more than one task keep them, apart from the record)",
				jid, len(j.TaskIDs()), j.counts, j.PB.Counts)
		}
		if got := s.countsOf(j).pb(); !proto.Equal(got, &c) {
			fail("job %s: counts %v, recount %v", jid, got, &c)
		}

		js := j.PB.State
		switch {
		case js == pb.JobState_JOB_STATE_SUCCEEDED:
			if c.Succeeded+c.Replaced != c.Total || failed != 0 {
				fail("job %s: succeeded with counts %v", jid, &c)
			}
		case IsJobFinal(js):
			if nonFinal != 0 {
				fail("job %s: %v with %d unfinished tasks", jid, js, nonFinal)
			}
			if js == pb.JobState_JOB_STATE_FAILED && failed == 0 {
				fail("job %s: failed without a failed task", jid)
			}
		case js == pb.JobState_JOB_STATE_QUEUED || js == pb.JobState_JOB_STATE_RUNNING:
			if failed != 0 || c.Cancelled != 0 {
				fail("job %s: %v with failed or cancelled tasks: %v", jid, js, &c)
			}
			if active == 0 {
				fail("job %s: %v but no task is queued or placed: it can never finish", jid, js)
			}
			if j.PB.FinishedUnixMs != 0 {
				fail("job %s: %v with finished time", jid, js)
			}
		default:
			fail("job %s: bad state %v", jid, js)
		}
		if IsJobFinal(js) && j.PB.FinishedUnixMs == 0 {
			fail("job %s: %v without finished time", jid, js)
		}
	}
	if len(seen) != s.TaskCount() {
		fail("%d tasks counted, %d belong to jobs", s.TaskCount(), len(seen))
	}
	if s.queue.Len() != queued {
		fail("queue holds %d tasks, %d tasks are queued", s.queue.Len(), queued)
	}
	s.idem.each(func(k string, j *Job) {
		if s.job(j.PB.Id) != j || j.PB.IdempotencyKey != k {
			fail("idempotency key %q maps to %q, not a job of that key", k, j.PB.Id)
		}
	})
	if n := len(s.idem.byHash) + len(s.idem.more); n != len(idemMap(s)) {
		fail("idempotency index holds %d entries, %d keys", n, len(idemMap(s)))
	}

	for _, id := range s.AgentIDs() {
		ag := s.agents[id]
		if ag.Used != agentUsed[id] {
			fail("agent %s: used %v, placed tasks ask %v", id, ag.Used, agentUsed[id])
		}
		if !ag.Used.Fits(ag.Capacity) {
			fail("agent %s: used %v exceeds capacity %v", id, ag.Used, ag.Capacity)
		}
		if n := ag.Used.Negative(); n != "" {
			fail("agent %s: used %s is negative", id, n)
		}
		want := agentRunning[id]
		if want == nil {
			want = map[string]int32{}
		}
		if !reflect.DeepEqual(ag.Running, want) {
			fail("agent %s: running %v, placed tasks %v", id, ag.Running, want)
		}
		if !ag.Up() && len(ag.Running) > 0 {
			fail("agent %s: down with %d tasks", id, len(ag.Running))
		}
	}
	for id := range agentUsed {
		if _, ok := s.agents[id]; !ok {
			fail("tasks placed on unknown agent %s", id)
		}
	}

	if !reflect.DeepEqual(nonZero(s.poolUsage), nonZero(poolUsed)) {
		fail("pool usage %v, placed tasks %v", s.poolUsage, poolUsed)
	}
	if !reflect.DeepEqual(nonZeroInt(s.poolRun), nonZeroInt(poolRun)) {
		fail("pool running %v, placed tasks %v", s.poolRun, poolRun)
	}
	if !reflect.DeepEqual(s.exclusive, exclusive) {
		fail("exclusive keys %v, placed tasks hold %v", s.exclusive, exclusive)
	}
	if strictPoolMax {
		usage := s.PoolUsage()
		for _, p := range s.pools.Paths() {
			q, _ := s.pools.Get(p)
			if over := q.ExceedsMax(usage[p]); len(over) > 0 {
				fail("pool %s: usage %v above max %s", p, usage[p], q.MaxString())
			}
		}
	}
	errs = append(errs, tallyErrors(s)...) // counts_test.go
	return errs
}

func nonZero(m map[string]pool.Resources) map[string]pool.Resources {
	out := map[string]pool.Resources{}
	for k, v := range m {
		if !v.IsZero() {
			out[k] = v
		}
	}
	return out
}

func nonZeroInt(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// roundTrip writes a snapshot of s and reads it back.
func roundTrip(s *State) (*State, error) {
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		return nil, err
	}
	return ReadSnapshot(&buf, s.defaults)
}

// queueOrder lists the queue in scheduling order.
func queueOrder(s *State) []queue.Item {
	var out []queue.Item
	s.queue.Ascend(func(it queue.Item) bool {
		out = append(out, it)
		return true
	})
	return out
}

// compareStates describes every difference between two states that a
// client, the scheduler or a later command could observe, or returns nil.
func compareStates(a, b *State, now int64) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if a.seq != b.seq || a.jobSeq != b.jobSeq {
		fail("sequences (%d, %d) vs (%d, %d)", a.seq, a.jobSeq, b.seq, b.jobSeq)
	}
	if a.defaults != b.defaults {
		fail("defaults %+v vs %+v", a.defaults, b.defaults)
	}
	if !reflect.DeepEqual(a.JobIDs(), b.JobIDs()) {
		fail("jobs %v vs %v", a.JobIDs(), b.JobIDs())
	}
	for _, id := range a.JobIDs() {
		if !proto.Equal(a.JobView(id, true), b.JobView(id, true)) {
			fail("job %s:\n  %v\nvs\n  %v", id, a.JobView(id, true), b.JobView(id, true))
		}
		ja, jb := a.job(id), b.job(id)
		if jb == nil || ja.Seq != jb.Seq || !reflect.DeepEqual(ja.TaskIDs(), jb.TaskIDs()) {
			fail("job %s: bookkeeping differs", id)
		}
	}
	if a.TaskCount() != b.TaskCount() {
		fail("%d tasks vs %d", a.TaskCount(), b.TaskCount())
	}
	for id, ta := range allTasks(a) {
		tb, ok := b.Task(id)
		if !ok {
			fail("task %s missing", id)
			continue
		}
		if ta.Seq != tb.Seq || ta.Ask() != tb.Ask() || ta.waiting != tb.waiting ||
			!reflect.DeepEqual(a.dependents[id], b.dependents[id]) {
			fail("task %s: seq %d/%d ask %v/%v waiting %d/%d dependents %v/%v", id, ta.Seq, tb.Seq,
				ta.Ask(), tb.Ask(), ta.waiting, tb.waiting, a.dependents[id], b.dependents[id])
		}
		if !proto.Equal(a.TaskView(id), b.TaskView(id)) {
			fail("task view %s differs", id)
		}
	}
	if !reflect.DeepEqual(a.AgentIDs(), b.AgentIDs()) {
		fail("agents %v vs %v", a.AgentIDs(), b.AgentIDs())
	}
	for _, id := range a.AgentIDs() {
		if !proto.Equal(a.AgentView(id), b.AgentView(id)) {
			fail("agent %s:\n  %v\nvs\n  %v", id, a.AgentView(id), b.AgentView(id))
		}
		if !reflect.DeepEqual(a.AgentRunning(id), b.AgentRunning(id)) {
			fail("agent %s running %v vs %v", id, a.AgentRunning(id), b.AgentRunning(id))
		}
		if aa, ab := a.agents[id], b.agents[id]; ab != nil && (aa.Capacity != ab.Capacity || aa.Used != ab.Used) {
			fail("agent %s capacity/used differ", id)
		}
	}
	if !reflect.DeepEqual(a.pools.Paths(), b.pools.Paths()) {
		fail("pools %v vs %v", a.pools.Paths(), b.pools.Paths())
	}
	for _, p := range a.pools.Paths() {
		if !proto.Equal(a.PoolView(p), b.PoolView(p)) {
			fail("pool %s:\n  %v\nvs\n  %v", p, a.PoolView(p), b.PoolView(p))
		}
	}
	if !reflect.DeepEqual(queueOrder(a), queueOrder(b)) {
		fail("queue order %v vs %v", queueOrder(a), queueOrder(b))
	}
	if !reflect.DeepEqual(a.exclusive, b.exclusive) {
		fail("exclusive %v vs %v", a.exclusive, b.exclusive)
	}
	if !reflect.DeepEqual(nonZero(a.poolUsage), nonZero(b.poolUsage)) ||
		!reflect.DeepEqual(nonZeroInt(a.poolRun), nonZeroInt(b.poolRun)) {
		fail("pool usage %v/%v vs %v/%v", a.poolUsage, a.poolRun, b.poolUsage, b.poolRun)
	}
	if !reflect.DeepEqual(idemMap(a), idemMap(b)) {
		fail("idempotency keys %v vs %v", idemMap(a), idemMap(b))
	}
	pa, pbb := a.Plan(now, DefaultPlanLimits).Assignments, b.Plan(now, DefaultPlanLimits).Assignments
	if len(pa) != len(pbb) {
		fail("plan has %d assignments vs %d", len(pa), len(pbb))
	} else {
		for i := range pa {
			if !proto.Equal(pa[i], pbb[i]) {
				fail("plan[%d] %v vs %v", i, pa[i], pbb[i])
			}
		}
	}
	sort.Strings(errs)
	return errs
}

// checkAttemptClass checks that an ended attempt's failure class fits how it
// ended: failed attempts carry their exit code's class (or the generic one,
// from log entries written before classes), the other interruptions their
// own, and attempts that did not fail none.
func checkAttemptClass(tid string, a *pb.Attempt, fail func(string, ...any)) {
	want := failure.Classify(a.Outcome, a.ExitCode)
	ok := a.FailureClass == want || (a.Outcome == "failed" && a.FailureClass == failure.Failed)
	if a.Outcome == "" {
		ok = a.FailureClass == ""
	}
	if !ok {
		fail("task %s: attempt %d ended %q (exit %d) with failure class %q, want %q",
			tid, a.Number, a.Outcome, a.ExitCode, a.FailureClass, want)
	}
}

// allTasks maps every task of s by id, found through the jobs.
func allTasks(s *State) map[string]*Task {
	out := make(map[string]*Task, s.TaskCount())
	for _, j := range s.jobs.all {
		for _, r := range j.rec.tasks {
			out[r.pb.Id] = r.t
		}
	}
	return out
}

// idemMap returns s's idempotency keys and their jobs' ids.
func idemMap(s *State) map[string]string {
	out := map[string]string{}
	s.idem.each(func(k string, j *Job) { out[k] = j.PB.Id })
	return out
}
