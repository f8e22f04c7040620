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

// Counts summarises the state for metrics: tasks by state, queued tasks
// by pool and class, jobs by state. It reads each job's maintained
// counts once (O(jobs), no task is visited and nothing is copied), so it
// is cheap enough to call under the read lock on every scrape.
func (s *State) Counts() (tasks TaskTotals, queued map[PoolClass]int, jobs map[pb.JobState]int) {
	queued = map[PoolClass]int{}
	jobs = map[pb.JobState]int{}
	for _, j := range s.jobs {
		jobs[j.PB.State]++
		c := j.PB.Counts
		if c == nil {
			continue
		}
		tasks.Waiting += int64(c.Waiting)
		tasks.Queued += int64(c.Queued)
		tasks.Running += int64(c.Running)
		tasks.Succeeded += int64(c.Succeeded)
		tasks.Failed += int64(c.Failed)
		tasks.Cancelled += int64(c.Cancelled)
		tasks.Replaced += int64(c.Replaced)
		if c.Queued > 0 {
			queued[PoolClass{Pool: j.PB.Pool, Class: j.PB.Class}] += int(c.Queued)
		}
	}
	return tasks, queued, jobs
}

// FirstStart reports whether the attempt of a task is its first to start:
// no earlier attempt record has a start time. Read it before the attempt's
// start is applied; submitted is the job's submit time (unix ms), class
// its class. ok is false for an unknown task.
func (s *State) FirstStart(taskID string) (first bool, submitted int64, class pb.JobClass, ok bool) {
	t, found := s.tasks[taskID]
	if !found {
		return false, 0, 0, false
	}
	j := s.jobs[t.PB.JobId]
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
	t, ok := s.tasks[taskID]
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
