package state

import (
	"errors"
	"fmt"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
	"github.com/banyan-sched/banyan/scheduler/queue"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors of Apply.
var (
	ErrUnknownCommand = errors.New("unknown command")
	ErrJobNotFound    = errors.New("job not found")
	ErrPoolBusy       = errors.New("pool has work")
	ErrAgentNotFound  = errors.New("agent not found")
)

// Cancel asks the agent running an attempt to stop it.
type Cancel struct {
	AgentID string
	TaskID  string
	Attempt int32
	Reason  string
}

// Result is what applying one command decided. The leader acts on Cancels
// (telling agents to stop attempts); clients see Err and the records.
type Result struct {
	Err      error
	Jobs     []*pb.Job
	Existing []bool
	Pool     *pb.Pool
	Cancels  []Cancel
	// Assigned lists the assignments that took effect.
	Assigned []*fsmpb.Assignment
	// Removed lists the jobs a GC entry removed.
	Removed []string
	// RemovedFrom lists, by agent, the removed jobs that had an attempt
	// on that agent (where their task output is kept).
	RemovedFrom map[string][]string
	// Changes lists what the command changed, in order, while change
	// records are on (RecordChanges); their Index is left 0. Under
	// KeepChanges they are the last ones only, and the first one's
	// Position says how many came before.
	Changes []*pb.Event
	// Ended lists every attempt the command ended, in order, while change
	// records are on, KeepChanges or not (for their trace spans).
	Ended []AttemptRef
}

// AttemptRef names one attempt of a task.
type AttemptRef struct {
	TaskID  string
	Attempt int32
}

// Apply applies one command. It is deterministic: its only clock is
// cmd.NowUnixMs.
func (s *State) Apply(cmd *fsmpb.Command) *Result {
	now := cmd.NowUnixMs
	r := &Result{}
	s.now = now
	if s.changes.on {
		defer func() { r.Changes, r.Ended = s.changes.take() }()
	}
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_Submit:
		s.applySubmit(now, c.Submit, r)
	case *fsmpb.Command_Assign:
		s.applyAssign(now, c.Assign, r)
	case *fsmpb.Command_Events:
		s.applyEvents(now, c.Events, cmd.ResultArrays, r)
	case *fsmpb.Command_AgentUp:
		s.applyAgentUp(now, c.AgentUp, r)
	case *fsmpb.Command_AgentDown:
		s.applyAgentDown(now, c.AgentDown, r)
	case *fsmpb.Command_AgentDevices:
		s.applyAgentDevices(now, c.AgentDevices, r)
	case *fsmpb.Command_AgentScheduling:
		s.applyAgentScheduling(now, c.AgentScheduling, r)
	case *fsmpb.Command_AgentDrainDeadline:
		s.applyAgentDrainDeadline(now, c.AgentDrainDeadline, r)
	case *fsmpb.Command_GcJobs:
		s.applyGC(c.GcJobs, r)
	case *fsmpb.Command_Cancel:
		s.applyCancel(now, c.Cancel, r)
	case *fsmpb.Command_PoolPut:
		s.applyPoolPut(c.PoolPut, r)
	case *fsmpb.Command_PoolDelete:
		s.applyPoolDelete(c.PoolDelete, r)
	case *fsmpb.Command_Promote:
		s.applyPromote(now, c.Promote)
	case *fsmpb.Command_Fallback:
		s.applyFallback(now, c.Fallback)
	case *fsmpb.Command_AclBootstrap:
		s.applyACLBootstrap(now, c.AclBootstrap, r)
	case *fsmpb.Command_AclPolicyPut:
		s.applyACLPolicyPut(now, c.AclPolicyPut, r)
	case *fsmpb.Command_AclPolicyDelete:
		s.applyACLPolicyDelete(c.AclPolicyDelete, r)
	case *fsmpb.Command_AclTokenCreate:
		s.applyACLTokenCreate(now, c.AclTokenCreate, r)
	case *fsmpb.Command_AclTokenRevoke:
		s.applyACLTokenRevoke(c.AclTokenRevoke, r)
	default:
		r.Err = fmt.Errorf("%w: %T", ErrUnknownCommand, cmd.Cmd)
	}
	return r
}

// applySubmit validates every job first: one bad job rejects the batch, so a
// batch is all or nothing.
func (s *State) applySubmit(now int64, c *fsmpb.SubmitJobs, r *Result) {
	// Entries without arrays keep the verdict they were first applied
	// with: their bytes bound them, and old logs replay as they were.
	if taskarray.InJobs(c.Jobs) {
		if err := CheckSubmission(c.Jobs); err != nil {
			r.Err = err
			return
		}
	}
	// tasks[i] are job i's tasks with its arrays expanded.
	tasks := make([][]*pb.TaskSpec, len(c.Jobs))
	for i, spec := range c.Jobs {
		NormalizeJob(spec, s.defaults)
		t, err := validateJob(spec, s.pools)
		if err != nil {
			r.Err = err
			return
		}
		tasks[i] = t
	}
	var sub *pb.Submitter // one copy for the entry's jobs: never changed
	if c.Submitter != nil {
		sub = clone(c.Submitter)
	}
	for i, spec := range c.Jobs {
		if spec.IdempotencyKey != "" {
			if j, ok := s.idem.get(spec.IdempotencyKey); ok {
				r.Jobs = append(r.Jobs, s.appliedView(j.PB.Id))
				r.Existing = append(r.Existing, true)
				continue
			}
		}
		j := s.addJob(now, spec, tasks[i])
		tasks[i] = nil // an array's tasks go as they are added
		j.PB.Submitter = sub
		// Entries from before traces have no ids: the job has no trace.
		if i < len(c.TraceIds) {
			j.PB.TraceId = c.TraceIds[i]
		}
		if i < len(c.TraceSpanIds) {
			j.PB.TraceSpanId = c.TraceSpanIds[i]
		}
		r.Jobs = append(r.Jobs, s.appliedView(j.PB.Id))
		r.Existing = append(r.Existing, false)
	}
}

// addJob adds a job with its tasks (spec's, arrays expanded).
func (s *State) addJob(now int64, spec *pb.JobSpec, tasks []*pb.TaskSpec) *Job {
	s.seq++
	s.jobSeq++
	// The job's id is the head of its first task's: one string for both.
	first := taskID(jobID(s.jobSeq), 0)
	id := first[:len(first)-2]
	j := &Job{Seq: s.seq, PB: &pb.Job{
		Id: id, Name: spec.Name, Pool: s.intern(spec.Pool), Class: spec.Class, Priority: spec.Priority,
		IdempotencyKey: spec.IdempotencyKey, State: pb.JobState_JOB_STATE_QUEUED,
		SubmittedUnixMs: now, MaxWaitMs: spec.MaxWaitMs,
	}}
	s.jobs.put(s.jobSeq, j)
	s.indexJob(j)
	s.tallyJob(pb.JobState_JOB_STATE_UNSPECIFIED, j.PB.State)
	if spec.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC {
		s.opportunistic[id] = struct{}{}
	}
	if spec.IdempotencyKey != "" {
		s.idem.put(spec.IdempotencyKey, j)
	}
	s.noteJob(j, KindSubmitted, 0)
	s.firstTaskID = first
	s.addTasks(now, j, tasks, taskarray.Has(spec.Tasks))
	s.firstTaskID = ""
	return j
}

// enqueue opens a new attempt and queues the task. notBefore delays it
// (retry backoff).
func (s *State) enqueue(now int64, t *Task, notBefore int64) {
	s.wTask(t)
	s.setTaskState(t, pb.TaskState_TASK_STATE_QUEUED)
	t.PB.QueuedUnixMs = now
	t.PB.NotBeforeUnixMs = notBefore
	if _, ok := fallbackDue(t); ok {
		s.fallbackWatch[t.PB.Id] = struct{}{}
	}
	s.queue.Push(s.queueItem(t))
}

// queueItem is a task's entry in the queue, rebuilt from the task and its
// job (the queue keeps no index of its own).
func (s *State) queueItem(t *Task) queue.Item {
	j := s.job(t.PB.JobId)
	return queue.Item{Key: queue.Key{Class: int32(j.PB.Class), Priority: j.PB.Priority, Seq: t.Seq},
		TaskID: t.PB.Id, Pool: j.PB.Pool}
}

// setTaskState changes a task's state and keeps its job's counts. A task
// leaving a placed state ends its current attempt.
func (s *State) setTaskState(t *Task, st pb.TaskState) {
	var ended *pb.Attempt
	if isPlaced(t.PB.State) && !isPlaced(st) {
		ended = t.current()
	}
	s.changeTaskState(t, st, ended)
}

// changeTaskState is setTaskState naming the attempt the change ends (nil:
// none) for the change record.
func (s *State) changeTaskState(t *Task, st pb.TaskState, ended *pb.Attempt) {
	s.wTask(t)
	replaced := t.PB.ReplacedBy != ""
	if c := s.job(t.PB.JobId).counts; c != nil {
		*countFor(c, t.PB.State, replaced)--
		*countFor(c, st, replaced)++
	}
	s.tallyTask(s.job(t.PB.JobId), t.PB.State, replaced, -1)
	s.tallyTask(s.job(t.PB.JobId), st, replaced, 1)
	from := t.PB.State
	t.PB.State = st
	s.noteTask(t, KindState, from, ended)
}

// setReplacedBy records the fallback that took over from a failed task; the
// task then counts as replaced, not failed.
func (s *State) setReplacedBy(t *Task, by string) {
	s.wTask(t)
	c := s.job(t.PB.JobId).counts
	if c != nil {
		c.add(t.PB.State, t.PB.ReplacedBy != "", -1)
	}
	s.tallyTask(s.job(t.PB.JobId), t.PB.State, t.PB.ReplacedBy != "", -1)
	t.PB.ReplacedBy = by
	if c != nil {
		c.add(t.PB.State, by != "", 1)
	}
	s.tallyTask(s.job(t.PB.JobId), t.PB.State, by != "", 1)
	s.noteTask(t, KindReplaced, t.PB.State, nil)
}

// countFor returns the count a task in state st belongs to; replaced says
// whether a fallback took over from it (a failed task it replaced is done,
// not a failure).
func countFor(c *taskCounts, st pb.TaskState, replaced bool) *int32 {
	if replaced && st == pb.TaskState_TASK_STATE_FAILED {
		return &c.replaced
	}
	switch st {
	case pb.TaskState_TASK_STATE_WAITING:
		return &c.waiting
	case pb.TaskState_TASK_STATE_QUEUED:
		return &c.queued
	case pb.TaskState_TASK_STATE_ASSIGNED, pb.TaskState_TASK_STATE_RUNNING:
		return &c.running
	case pb.TaskState_TASK_STATE_SUCCEEDED:
		return &c.succeeded
	case pb.TaskState_TASK_STATE_FAILED:
		return &c.failed
	case pb.TaskState_TASK_STATE_CANCELLED:
		return &c.cancelled
	}
	var sink int32
	return &sink
}

// applyAssign first stops the preempted attempts that are still current
// (they go back to the queue without using a retry), then re-checks each
// assignment against the current state (the plan may be stale by the time
// it commits) and applies those that still fit.
func (s *State) applyAssign(now int64, c *fsmpb.Assign, r *Result) {
	for _, p := range c.Preemptions {
		s.preempt(now, p, r)
	}
	usage := s.PoolUsage()
	for _, a := range c.Assignments {
		if s.canAssign(a, usage) {
			s.assign(now, a)
			t := s.task(a.TaskId)
			for _, p := range pool.Ancestors(s.job(t.PB.JobId).PB.Pool) {
				usage[p] = usage[p].Add(t.Ask())
			}
			r.Assigned = append(r.Assigned, a)
		}
	}
}

// canAssign checks an assignment against the current state; usage is each
// pool's usage rolled up, as Plan sees it.
func (s *State) canAssign(a *fsmpb.Assignment, usage map[string]pool.Resources) bool {
	t, ok := s.Task(a.TaskId)
	if !ok || t.PB.State != pb.TaskState_TASK_STATE_QUEUED || t.Attempt() != a.Attempt {
		return false
	}
	if !s.pools.Admits(s.job(t.PB.JobId).PB.Pool, usage, t.Ask()) {
		return false
	}
	ag, ok := s.agents[a.AgentId]
	if !ok || !ag.schedulable() || !t.Ask().Fits(ag.Capacity.Sub(ag.Used)) {
		return false
	}
	if len(ag.devices) > 0 || len(a.Gpus) > 0 {
		if placement.CheckGrants(ag.node(a.AgentId), askOf(t), grantsOf(a.Gpus)) != nil {
			return false
		}
	}
	if k := t.spec.GetExclusiveKey(); k != "" && s.exclusive[k] != "" {
		return false
	}
	return true
}

func (s *State) assign(now int64, a *fsmpb.Assignment) {
	t := s.task(a.TaskId)
	ag := s.agents[a.AgentId]
	j := s.job(t.PB.JobId)
	s.wTask(t)
	s.queue.Remove(s.queueItem(t))
	delete(s.fallbackWatch, t.PB.Id)
	t.addAttempt(&pb.Attempt{Number: t.Attempt(), QueuedUnixMs: t.PB.QueuedUnixMs,
		AgentId: a.AgentId, PlacedUnixMs: now, Gpus: a.Gpus})
	s.setTaskState(t, pb.TaskState_TASK_STATE_ASSIGNED)
	t.PB.NotBeforeUnixMs = 0
	s.hold(t, ag, j.PB.Pool)
	if j.PB.State == pb.JobState_JOB_STATE_QUEUED {
		s.tallyJob(j.PB.State, pb.JobState_JOB_STATE_RUNNING)
		j.PB.State = pb.JobState_JOB_STATE_RUNNING
		s.noteJob(j, KindState, pb.JobState_JOB_STATE_QUEUED)
	}
}

// hold books a placed task's resources on its agent, pool and exclusive key.
func (s *State) hold(t *Task, ag *Agent, poolPath string) {
	ag.Used = ag.Used.Add(t.Ask())
	ag.Running[t.PB.Id] = t.Attempt()
	ag.holdDevices(t, t.current().GetGpus())
	s.agentChanged(ag.PB.Id)
	s.poolUsage[poolPath] = s.poolUsage[poolPath].Add(t.Ask())
	s.poolRun[poolPath]++
	if k := t.spec.GetExclusiveKey(); k != "" {
		s.exclusive[k] = t.PB.Id
	}
}

// release undoes hold for a task that stops running.
func (s *State) release(t *Task) {
	j := s.job(t.PB.JobId)
	if ag, ok := s.agents[t.AgentID()]; ok {
		if _, held := ag.Running[t.PB.Id]; held {
			delete(ag.Running, t.PB.Id)
			ag.Used = ag.Used.Sub(t.Ask())
			ag.releaseDevices(t, t.current().GetGpus())
			s.agentChanged(ag.PB.Id)
			s.poolUsage[j.PB.Pool] = s.poolUsage[j.PB.Pool].Sub(t.Ask())
			if s.poolUsage[j.PB.Pool].IsZero() {
				delete(s.poolUsage, j.PB.Pool)
			}
			s.poolRun[j.PB.Pool]--
			if s.poolRun[j.PB.Pool] == 0 {
				delete(s.poolRun, j.PB.Pool)
			}
		}
	}
	if k := t.spec.GetExclusiveKey(); k != "" && s.exclusive[k] == t.PB.Id {
		delete(s.exclusive, k)
	}
}

func isPlaced(st pb.TaskState) bool {
	return st == pb.TaskState_TASK_STATE_ASSIGNED || st == pb.TaskState_TASK_STATE_RUNNING
}

func (s *State) applyEvents(now int64, c *fsmpb.ReportEvents, resultArrays bool, r *Result) {
	for _, ae := range c.Agents {
		if ag, ok := s.agents[ae.AgentId]; ok {
			s.wAgent(ag)
			ag.PB.LastSeenUnixMs = now
		}
		for _, ev := range ae.Events {
			s.applyEvent(now, ae.AgentId, ev, c, resultArrays, r)
		}
	}
}

// applyEvent applies one event if it is about the task's current attempt on
// that agent; events about older attempts are stale and ignored. The
// entry's flags say how exit codes classify failures (see eventClass) and
// whether a result may hold arrays (resultArrays).
func (s *State) applyEvent(now int64, agentID string, ev *pb.TaskEvent, c *fsmpb.ReportEvents, resultArrays bool, r *Result) {
	t, ok := s.eventTask(agentID, ev)
	if !ok {
		return
	}
	s.wTask(t)
	cur := t.current()
	switch ev.Kind {
	case "started":
		cur.StartedUnixMs = ev.UnixMs
		if t.PB.State == pb.TaskState_TASK_STATE_ASSIGNED {
			s.setTaskState(t, pb.TaskState_TASK_STATE_RUNNING)
		}
	case "finished":
		if cur.StartedUnixMs == 0 {
			cur.StartedUnixMs = ev.UnixMs
		}
		cur.FinishedUnixMs = ev.UnixMs
		// Agents bound what they send (api/limits); the state holds any
		// agent's report to the same fixed bounds, so a record stays small.
		cur.ExitCode, cur.Error = ev.ExitCode, limits.TruncateHead(ev.Error, limits.ErrorBytes)
		cur.StdoutTail = limits.TruncateTail(ev.StdoutTail, limits.MaxTailBytes)
		cur.StderrTail = limits.TruncateTail(ev.StderrTail, limits.MaxTailBytes)
		outcome := ev.Outcome
		if outcome == "succeeded" && len(ev.Result) > 0 {
			if err := s.expand(now, t, ev.Result, resultArrays); err != nil {
				// The error may quote the result's bytes: keep it valid UTF-8,
				// or the task could not be written to a snapshot.
				outcome, cur.Error = "failed", limits.TruncateHead(strings.ToValidUTF8(err.Error(), "\uFFFD"), limits.ErrorBytes)
			}
		}
		s.finish(now, t, outcome, eventClass(outcome, ev.ExitCode, c), r)
	}
}

// eventTask returns the task ev is about when ev is about its current
// attempt, placed on agentID; ok is false for a stale event.
func (s *State) eventTask(agentID string, ev *pb.TaskEvent) (t *Task, ok bool) {
	t, ok = s.Task(ev.TaskId)
	if !ok || t.Attempt() != ev.Attempt || t.AgentID() != agentID || !isPlaced(t.PB.State) {
		return nil, false
	}
	return t, true
}

// EventChanges reports whether applying ev from agentID would change the
// state: a "finished" or "started" event about the task's current attempt
// on that agent, unless it is a start already recorded at the same time.
// Agents resend what they have not seen acknowledged (on every new
// session, and when an acknowledgement is late), so many events are
// copies of ones applied: the leader acknowledges those without a log
// entry. Applying them would change only the agent's last-seen time in
// the state, which listings take from the leader's heartbeats anyway.
func (s *State) EventChanges(agentID string, ev *pb.TaskEvent) bool {
	t, ok := s.eventTask(agentID, ev)
	if !ok {
		return false
	}
	switch ev.Kind {
	case "started":
		return t.PB.State == pb.TaskState_TASK_STATE_ASSIGNED || t.current().StartedUnixMs != ev.UnixMs
	case "finished":
		return true
	}
	return false
}

// eventClass classifies an attempt that an agent reported finished. Log
// entries written before a class existed replay as they were first
// applied: without classify_exit_codes every failed process is a generic
// failure, and without classify_nvenc_sessions so is exit 69.
func eventClass(outcome string, exitCode int32, c *fsmpb.ReportEvents) string {
	if !c.GetClassifyExitCodes() && outcome == "failed" {
		return failure.Failed
	}
	class := failure.Classify(outcome, exitCode)
	if class == failure.NVENCSessionLimit && !c.GetClassifyNvencSessions() {
		return failure.Failed
	}
	return class
}

// preempt stops one running attempt to make room for another task.
func (s *State) preempt(now int64, p *fsmpb.Preemption, r *Result) {
	v := p.GetVictim()
	t, ok := s.Task(v.GetTaskId())
	if !ok || t.Attempt() != v.Attempt || t.AgentID() != v.AgentId || !isPlaced(t.PB.State) {
		return
	}
	reason := "preempted for task " + p.ForTaskId
	if ft, ok := s.Task(p.ForTaskId); ok {
		reason += " of pool " + s.job(ft.PB.JobId).PB.Pool
	}
	s.wTask(t)
	t.current().Error = reason
	r.Cancels = append(r.Cancels, Cancel{AgentID: v.AgentId, TaskID: v.TaskId, Attempt: v.Attempt, Reason: reason})
	s.finish(now, t, "preempted", failure.Preempted, r)
}

// applyPromote moves opportunistic jobs to batch: their queued tasks keep
// their submit order but now sort with batch work.
func (s *State) applyPromote(now int64, c *fsmpb.Promote) {
	for _, id := range c.JobIds {
		j, ok := s.Job(id)
		if !ok || j.PB.Class != pb.JobClass_JOB_CLASS_OPPORTUNISTIC || IsJobFinal(j.PB.State) {
			continue
		}
		var requeue []*Task
		for _, r := range j.rec.tasks {
			if t := r.t; s.queue.Remove(s.queueItem(t)) {
				requeue = append(requeue, t)
			}
		}
		s.tallyClass(j, pb.JobClass_JOB_CLASS_BATCH)
		s.wJob(j)
		j.PB.Class, j.PB.PromotedUnixMs = pb.JobClass_JOB_CLASS_BATCH, now
		delete(s.opportunistic, id)
		s.noteJob(j, KindPromoted, j.PB.State)
		for _, t := range requeue {
			s.queue.Push(s.queueItem(t))
		}
	}
}

// charge adds an ended attempt's resource-seconds to its pool's cost.
func (s *State) charge(t *Task, a *pb.Attempt) {
	if a.StartedUnixMs == 0 || a.FinishedUnixMs <= a.StartedUnixMs {
		return
	}
	j := s.job(t.PB.JobId)
	opp := j.PB.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC
	c := pool.CostOf(t.Ask(), a.FinishedUnixMs-a.StartedUnixMs, opp, s.defaults.Prices)
	hour := a.FinishedUnixMs - a.FinishedUnixMs%3_600_000
	byHour := s.costs[j.PB.Pool]
	if byHour == nil {
		byHour = map[int64]pool.Cost{}
		s.costs[j.PB.Pool] = byHour
	}
	byHour[hour] = byHour[hour].Add(c)
}

// finish ends the current attempt of a placed task with an outcome and its
// failure class (package failure), which decides what comes next.
func (s *State) finish(now int64, t *Task, outcome, class string, r *Result) {
	s.wTask(t)
	s.release(t)
	cur := t.current()
	cur.Outcome, cur.FailureClass = outcome, class
	if cur.FinishedUnixMs == 0 {
		cur.FinishedUnixMs = now
	}
	s.charge(t, cur)
	switch {
	case outcome == "succeeded":
		s.setTaskState(t, pb.TaskState_TASK_STATE_SUCCEEDED)
		s.wakeDependents(now, t)
		s.maybeFinishJob(now, s.job(t.PB.JobId))
	case class == failure.NVENCSessionLimit:
		s.sessionLimited(now, t, r)
	case failure.UsesRetry(class): // failed, timeout
		s.retryOrFail(now, t, r)
	case class == failure.Preempted || outcome == "cancelled":
		s.enqueue(now, t, 0) // preempted, or stopped by its agent (shutting down): free, at once
	default: // lost with its agent or worker, or an outcome this version does not know
		s.lostOrFail(now, t, r)
	}
}

// lostOrFail queues a task whose attempt was lost (its agent or worker
// died, or it reported an outcome this version does not know) again
// without using a retry: at once the first two times, then after a backoff
// that doubles from a second (up to a minute). Lost attempts have a limit of their own
// (Defaults.MaxLostAttempts): a task that keeps killing its worker fails
// its job with the reason instead of being run forever.
func (s *State) lostOrFail(now int64, t *Task, r *Result) {
	s.wTask(t)
	t.PB.LostAttempts++
	cur := t.current()
	limit := s.defaults.MaxLostAttempts
	if limit <= 0 {
		limit = DefaultDefaults.MaxLostAttempts
	}
	if t.PB.LostAttempts < limit {
		var backoff int64 // two losses may be bad luck (two agents died)
		if n := t.PB.LostAttempts - 2; n > 0 {
			backoff = min(int64(1000)<<min(n-1, 16), 60_000)
		}
		var notBefore int64
		if backoff > 0 {
			notBefore = now + backoff
		}
		s.enqueue(now, t, notBefore)
		return
	}
	s.setTaskState(t, pb.TaskState_TASK_STATE_FAILED)
	if s.startFallback(now, t) {
		return
	}
	reason := fmt.Sprintf("task %s (%s) was lost %d times, the limit: its agent or worker died under it each time; last: %s",
		t.PB.Name, failure.AgentLost, t.PB.LostAttempts, attemptReason(cur))
	s.endJob(now, s.job(t.PB.JobId), pb.JobState_JOB_STATE_FAILED, reason, r)
}

func (s *State) wakeDependents(now int64, t *Task) {
	for _, id := range s.dependents[t.PB.Id] {
		d := s.task(id)
		d.waiting--
		if d.waiting == 0 && d.PB.State == pb.TaskState_TASK_STATE_WAITING {
			s.enqueue(now, d, 0)
		}
	}
	delete(s.dependents, t.PB.Id) // a succeeded task holds no one up (as after a restore)
}

// retryOrFail uses up one of a failed task's retries: it queues the task
// again after a backoff, unless its retries are spent or its failure is one
// a retry cannot fix. Then the task fails for good: its fallback takes
// over, or its job fails with the reason.
func (s *State) retryOrFail(now int64, t *Task, r *Result) {
	s.wTask(t)
	t.PB.RetriesUsed++
	cur := t.current()
	policy := s.retryPolicy(t.spec.GetRetry())
	if !failure.Permanent(cur.FailureClass) && t.PB.RetriesUsed < policy.MaxAttempts {
		// Double from the initial backoff up to the ceiling; a shift that
		// would overflow (and wrap to a small or negative value) is capped.
		backoff := policy.MaxBackoffMs
		if shift := t.PB.RetriesUsed - 1; shift < 63 && policy.InitialBackoffMs <= policy.MaxBackoffMs>>shift {
			backoff = policy.InitialBackoffMs << shift
		}
		s.enqueue(now, t, now+backoff)
		return
	}
	s.setTaskState(t, pb.TaskState_TASK_STATE_FAILED)
	if s.startFallback(now, t) {
		return
	}
	s.endJob(now, s.job(t.PB.JobId), pb.JobState_JOB_STATE_FAILED, failReason(t, cur), r)
}

// failReason is a failed job's reason: the task that failed it, the failure
// class (unless generic), the attempts it used and its last error, as in
// "task enc-1080p-3 failed (decode_error) after 1 attempt: ...".
func failReason(t *Task, cur *pb.Attempt) string {
	class := ""
	if cur.FailureClass != failure.Failed {
		class = " (" + cur.FailureClass + ")"
	}
	attempts := "attempts"
	if t.PB.RetriesUsed == 1 {
		attempts = "attempt"
	}
	return fmt.Sprintf("task %s failed%s after %d %s: %s", t.PB.Name, class, t.PB.RetriesUsed, attempts, attemptReason(cur))
}

func attemptReason(a *pb.Attempt) string {
	msg := a.Error
	if msg == "" {
		msg = fmt.Sprintf("exit code %d", a.ExitCode)
	}
	if tail := strings.TrimSpace(a.StderrTail); tail != "" {
		lines := strings.Split(tail, "\n")
		msg += ": " + lines[len(lines)-1]
	}
	return msg
}

// retryPolicy returns a task's retry policy r (nil: none) with defaults
// filled in.
func (s *State) retryPolicy(r *pb.RetryPolicy) *pb.RetryPolicy {
	p := &pb.RetryPolicy{MaxAttempts: s.defaults.MaxAttempts, InitialBackoffMs: s.defaults.InitialBackoffMs,
		MaxBackoffMs: s.defaults.MaxBackoffMs}
	if r != nil {
		if r.MaxAttempts > 0 {
			p.MaxAttempts = r.MaxAttempts
		}
		if r.InitialBackoffMs > 0 {
			p.InitialBackoffMs = r.InitialBackoffMs
		}
		if r.MaxBackoffMs > 0 {
			p.MaxBackoffMs = r.MaxBackoffMs
		}
	}
	if p.MaxBackoffMs < p.InitialBackoffMs {
		p.MaxBackoffMs = p.InitialBackoffMs
	}
	return p
}

func (s *State) maybeFinishJob(now int64, j *Job) {
	c := s.countsOf(j)
	if IsJobFinal(j.PB.State) || c.succeeded+c.failed+c.cancelled+c.replaced < c.total {
		return
	}
	s.tallyJob(j.PB.State, pb.JobState_JOB_STATE_SUCCEEDED)
	s.wJob(j)
	from := j.PB.State
	j.PB.State = pb.JobState_JOB_STATE_SUCCEEDED
	j.PB.FinishedUnixMs = now
	delete(s.opportunistic, j.PB.Id)
	s.noteJob(j, KindState, from)
}

// endJob moves a job to a final state and cancels its unfinished tasks,
// returning the placed ones as Cancels for the leader to stop.
func (s *State) endJob(now int64, j *Job, st pb.JobState, reason string, r *Result) {
	if IsJobFinal(j.PB.State) {
		return
	}
	s.tallyJob(j.PB.State, st)
	s.wJob(j)
	from := j.PB.State
	j.PB.State, j.PB.Reason, j.PB.FinishedUnixMs = st, reason, now
	delete(s.opportunistic, j.PB.Id)
	s.noteJob(j, KindState, from)
	for _, ref := range j.rec.tasks { // wTask may copy j.rec: the tasks stay
		t, id := ref.t, ref.t.PB.Id
		if IsFinal(t.PB.State) {
			continue
		}
		s.wTask(t)
		if isPlaced(t.PB.State) {
			r.Cancels = append(r.Cancels, Cancel{AgentID: t.AgentID(), TaskID: id, Attempt: t.Attempt(), Reason: reason})
			s.release(t)
			cur := t.current()
			cur.Outcome, cur.FinishedUnixMs = "cancelled", now
			s.charge(t, cur)
		}
		if t.PB.State == pb.TaskState_TASK_STATE_QUEUED {
			s.queue.Remove(s.queueItem(t))
		}
		s.setTaskState(t, pb.TaskState_TASK_STATE_CANCELLED)
	}
}

func (s *State) applyCancel(now int64, c *fsmpb.CancelJob, r *Result) {
	j, ok := s.Job(c.JobId)
	if !ok {
		r.Err = fmt.Errorf("%w: %s", ErrJobNotFound, c.JobId)
		return
	}
	reason := c.Reason
	if reason == "" {
		reason = "cancelled by user"
	}
	s.endJob(now, j, pb.JobState_JOB_STATE_CANCELLED, reason, r)
	r.Jobs = []*pb.Job{s.appliedView(j.PB.Id)}
}

// applyAgentUp registers an agent or opens its new session. Placed attempts
// the agent does not know are lost (requeued without a retry); attempts the
// agent runs that the state no longer has there are returned as Cancels.
func (s *State) applyAgentUp(now int64, c *fsmpb.AgentUp, r *Result) {
	ag, ok := s.agents[c.AgentId]
	if !ok {
		ag = &Agent{PB: &pb.Agent{Id: c.AgentId, RegisteredUnixMs: now}, Running: map[string]int32{}, gen: s.gen}
		s.agents[c.AgentId] = ag
		s.addAgentID(c.AgentId)
	}
	s.wAgent(ag)
	ag.setFingerprint(c.Fingerprint)
	ag.PB.Address = c.Address
	if d := ag.PB.Drain; d != nil && d.By == AgentSelfDrain {
		// The agent drained itself to stop; a new session is a new start
		// (a process still draining says so again right after its hello).
		ag.PB.Drain, ag.PB.Ineligible = nil, false
	}
	from := ag.PB.State
	ag.PB.State, ag.PB.LastSeenUnixMs = AgentUp, now
	s.agentChanged(c.AgentId)
	s.noteAgent(ag, KindUp, from, "")
	known := make(map[string]int32, len(c.Known))
	for _, k := range c.Known {
		known[k.TaskId] = k.Attempt
		if att, ok := ag.Running[k.TaskId]; !ok || att != k.Attempt {
			r.Cancels = append(r.Cancels, Cancel{AgentID: c.AgentId, TaskID: k.TaskId, Attempt: k.Attempt,
				Reason: "attempt is no longer current"})
		}
	}
	for _, id := range sortedKeys(ag.Running) {
		if att, ok := known[id]; !ok || att != ag.Running[id] {
			s.finish(now, s.task(id), "lost", failure.AgentLost, r)
		}
	}
}

func (s *State) applyAgentDown(now int64, c *fsmpb.AgentDown, r *Result) {
	ag, ok := s.agents[c.AgentId]
	if !ok || !ag.Up() {
		return
	}
	s.wAgent(ag)
	ag.PB.State = AgentDown
	s.agentChanged(c.AgentId)
	s.noteAgent(ag, KindDown, AgentUp, c.Reason)
	for _, id := range sortedKeys(ag.Running) {
		t := s.task(id)
		s.wTask(t)
		t.current().Error = "agent " + c.AgentId + " lost: " + c.Reason
		s.finish(now, t, "lost", failure.AgentLost, r)
	}
}

func (s *State) applyPoolPut(c *fsmpb.PoolPut, r *Result) {
	q, err := pb.QuotaFromPool(c.Pool)
	if err != nil {
		r.Err = fmt.Errorf("pool %s: %w", c.Pool.GetPath(), err)
		return
	}
	path := c.Pool.GetPath()
	if c.Create && s.pools.Len() > 0 {
		if parent := pool.Parent(path); parent != "" {
			if queued, running := s.PoolCounts(parent); queued+running > 0 {
				r.Err = fmt.Errorf("%w: %s has %d queued and %d running tasks; a pool with work cannot get children",
					ErrPoolBusy, parent, queued, running)
				return
			}
		}
	}
	for fn, n := range c.Pool.GetWarm() {
		if !validFunctionName(fn) || n < 0 || n > 10_000 {
			r.Err = fmt.Errorf("%w: pool %s: warm %s=%d: want a function name and 0..10000 workers", pool.ErrBadQuota, path, fn, n)
			return
		}
	}
	if err := s.pools.Put(path, q, c.Create); err != nil {
		r.Err = err
		return
	}
	if w := c.Pool.GetWarm(); len(w) > 0 {
		s.poolWarm[path] = w
	} else {
		delete(s.poolWarm, path)
	}
	r.Pool = s.PoolView(path)
	if c.Create {
		s.notePool(path, KindCreated)
	} else {
		s.notePool(path, KindUpdated)
	}
}

func (s *State) applyPoolDelete(c *fsmpb.PoolDelete, r *Result) {
	if queued, running := s.PoolCounts(c.Path); queued+running > 0 {
		r.Err = fmt.Errorf("%w: %s has %d queued and %d running tasks; cancel them or let them finish first",
			ErrPoolBusy, c.Path, queued, running)
		return
	}
	view := s.PoolView(c.Path)
	if err := s.pools.Delete(c.Path); err != nil {
		r.Err = err
		return
	}
	delete(s.poolWarm, c.Path)
	r.Pool = view
	s.notePool(c.Path, KindDeleted)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

// clone deep-copies a message.
func clone[M proto.Message](m M) M { return proto.Clone(m).(M) }
