package state

import pb "github.com/banyan-sched/banyan/api/banyanv1"

// PoolClass names a pool and a job class: the key of queue depth.
type PoolClass struct {
	Pool  string
	Class pb.JobClass
}

// TaskTotals counts tasks by state over every job the state holds
// (Running includes assigned tasks, as in pb.TaskCounts). Blocked tasks
// (queued, fitting no agent) are not counted apart: that takes a
// placement check per task, which job views do and metrics do not.
type TaskTotals struct {
	Waiting, Queued, Running, Succeeded, Failed, Cancelled, Replaced int64
}

// tally holds what Counts reports, kept up to date by the functions that
// change a task's state (setTaskState, setReplacedBy, addTasks), a job's
// state (addJob, markRunning, maybeFinishJob, endJob) or class (promote),
// and recounted from the jobs by rebuild. Anything that adds or removes
// jobs or tasks must keep it too: checkInvariants compares it with a
// recount after every command in the tests.
type tally struct {
	tasks  TaskTotals
	queued map[PoolClass]int
	jobs   map[pb.JobState]int
}

func newTally() tally {
	return tally{queued: map[PoolClass]int{}, jobs: map[pb.JobState]int{}}
}

// Counts summarises the state for metrics: tasks by state, queued tasks
// by pool and class, jobs by state. The state keeps these up to date as
// it applies commands, so a call costs a copy of two small maps, however
// many jobs and tasks it holds.
func (s *State) Counts() (tasks TaskTotals, queued map[PoolClass]int, jobs map[pb.JobState]int) {
	return s.tally.tasks, copyNonZero(s.tally.queued), copyNonZero(s.tally.jobs)
}

func copyNonZero[K comparable](m map[K]int) map[K]int {
	out := make(map[K]int, len(m))
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// tallyTask adds d tasks in state st (replaced: taken over by a fallback)
// of job j to the tally.
func (s *State) tallyTask(j *Job, st pb.TaskState, replaced bool, d int) {
	t := &s.tally.tasks
	switch {
	case replaced && st == pb.TaskState_TASK_STATE_FAILED:
		t.Replaced += int64(d)
	case st == pb.TaskState_TASK_STATE_WAITING:
		t.Waiting += int64(d)
	case st == pb.TaskState_TASK_STATE_QUEUED:
		t.Queued += int64(d)
		s.tally.queued[PoolClass{Pool: j.PB.Pool, Class: j.PB.Class}] += d
	case isPlaced(st):
		t.Running += int64(d)
	case st == pb.TaskState_TASK_STATE_SUCCEEDED:
		t.Succeeded += int64(d)
	case st == pb.TaskState_TASK_STATE_FAILED:
		t.Failed += int64(d)
	case st == pb.TaskState_TASK_STATE_CANCELLED:
		t.Cancelled += int64(d)
	}
}

// tallyJob moves one job from state from (JOB_STATE_UNSPECIFIED for a new
// job) to state to.
func (s *State) tallyJob(from, to pb.JobState) {
	if from != pb.JobState_JOB_STATE_UNSPECIFIED {
		s.tally.jobs[from]--
	}
	s.tally.jobs[to]++
}

// tallyClass moves job j's queued tasks to class to; call it before the
// job's class changes.
func (s *State) tallyClass(j *Job, to pb.JobClass) {
	n := int(s.countsOf(j).queued)
	s.tally.queued[PoolClass{Pool: j.PB.Pool, Class: j.PB.Class}] -= n
	s.tally.queued[PoolClass{Pool: j.PB.Pool, Class: to}] += n
}

// recount rebuilds the tally from the jobs' counts.
func (s *State) recount() { s.tally = s.countTally() }

// countTally computes the tally from the jobs' counts: O(jobs).
func (s *State) countTally() tally {
	out := newTally()
	for _, j := range s.jobs.all {
		out.jobs[j.PB.State]++
		c := s.countsOf(j)
		t := &out.tasks
		t.Waiting += int64(c.waiting)
		t.Queued += int64(c.queued)
		t.Running += int64(c.running)
		t.Succeeded += int64(c.succeeded)
		t.Failed += int64(c.failed)
		t.Cancelled += int64(c.cancelled)
		t.Replaced += int64(c.replaced)
		out.queued[PoolClass{Pool: j.PB.Pool, Class: j.PB.Class}] += int(c.queued)
	}
	return out
}

// FirstStart reports whether the attempt of a task is its first to start:
// no earlier attempt record has a start time. Read it before the attempt's
// start is applied; submitted is the job's submit time (unix ms), class
// its class. ok is false for an unknown task.
func (s *State) FirstStart(taskID string) (first bool, submitted int64, class pb.JobClass, ok bool) {
	t, found := s.Task(taskID)
	if !found {
		return false, 0, 0, false
	}
	j := s.job(t.PB.JobId)
	for _, a := range t.PB.Attempts {
		if a.StartedUnixMs != 0 {
			return false, j.PB.SubmittedUnixMs, j.PB.Class, true
		}
	}
	return true, j.PB.SubmittedUnixMs, j.PB.Class, true
}

// AttemptRecord returns the record of one attempt of a task (nil when the
// task or that record is unknown, or the record was dropped from history).
// The record is the state's own: read it under the read lock only.
func (s *State) AttemptRecord(taskID string, attempt int32) *pb.Attempt {
	t, ok := s.Task(taskID)
	if !ok {
		return nil
	}
	for i := len(t.PB.Attempts) - 1; i >= 0; i-- {
		if a := t.PB.Attempts[i]; a.Number == attempt {
			return a
		}
	}
	return nil
}

// taskCounts tallies a job's tasks by state, as pb.TaskCounts does
// (blocked is a view's, not kept). A job keeps one only once it has more
// than one task: a one-task job's counts follow from its task's state
// (countsOf), which keeps a million one-task jobs small.
type taskCounts struct {
	total, waiting, queued, running, succeeded, failed, cancelled, replaced int32
}

// countsOf returns j's counts.
func (s *State) countsOf(j *Job) taskCounts {
	if j.counts != nil {
		return *j.counts
	}
	var c taskCounts
	for _, r := range j.rec.tasks { // at most one
		t := r.t
		c.add(t.PB.State, t.PB.ReplacedBy != "", 1)
	}
	return c
}

// add counts d more tasks in state st (replaced: taken over by a
// fallback), total included.
func (c *taskCounts) add(st pb.TaskState, replaced bool, d int32) {
	c.total += d
	*countFor(c, st, replaced) += d
}

// pb returns the counts as a message.
func (c taskCounts) pb() *pb.TaskCounts { return c.fill(&pb.TaskCounts{}) }

// fill sets dst to the counts (blocked 0) and returns it.
func (c taskCounts) fill(dst *pb.TaskCounts) *pb.TaskCounts {
	dst.Total, dst.Waiting, dst.Queued, dst.Running = c.total, c.waiting, c.queued, c.running
	dst.Succeeded, dst.Failed, dst.Cancelled, dst.Replaced = c.succeeded, c.failed, c.cancelled, c.replaced
	dst.Blocked = 0
	return dst
}

// countRecords counts the tasks of a job record (a snapshot's view of
// them).
func countRecords(tasks []taskRef) taskCounts {
	var c taskCounts
	for _, t := range tasks {
		c.add(t.pb.State, t.pb.ReplacedBy != "", 1)
	}
	return c
}
