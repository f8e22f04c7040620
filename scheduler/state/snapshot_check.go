package state

import (
	"errors"
	"fmt"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// Checks on what a snapshot holds. ReadSnapshot trusts the records'
// shape once these pass: every reference a restored state follows (a job's
// task ids, `after` names, fallback replacements, the agent of a placed
// attempt) leads to a record, so a damaged or foreign snapshot is an error
// rather than a panic or an endless loop. They check structure only, not
// the rules a submission must follow, so that snapshots of older versions
// still restore.

// maxReplacedChain bounds how many fallbacks stand in for one task one
// after another (a task has at most 3 fallbacks in a chain).
const maxReplacedChain = 8

// errBadSnapshot wraps every structural fault of a snapshot.
var errBadSnapshot = errors.New("damaged snapshot")

func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadSnapshot, fmt.Sprintf(format, args...))
}

// checkRecord checks one snapshot record on its own.
func checkRecord(rec *fsmpb.SnapshotRecord) error {
	switch x := rec.Rec.(type) {
	case *fsmpb.SnapshotRecord_Header:
		if x.Header == nil {
			return badSnapshot("empty header record")
		}
	case *fsmpb.SnapshotRecord_Pool:
		if x.Pool == nil {
			return badSnapshot("empty pool record")
		}
	case *fsmpb.SnapshotRecord_Agent:
		if x.Agent == nil {
			return badSnapshot("empty agent record")
		}
	case *fsmpb.SnapshotRecord_Job:
		if x.Job.GetJob() == nil || x.Job.Job.Id == "" {
			return badSnapshot("job record without a job id")
		}
	case *fsmpb.SnapshotRecord_Task:
		if x.Task == nil {
			return badSnapshot("empty task record")
		}
	case *fsmpb.SnapshotRecord_Cost:
		if x.Cost == nil {
			return badSnapshot("empty cost record")
		}
	case nil:
		return badSnapshot("empty record")
	}
	return nil
}

// checkRestored checks that the records read fit together, before rebuild follows their references: job ids as Apply numbers them and no higher
// than the header's count, each job's tasks named by position and present
// exactly once, `after` names and fallback replacements inside the job,
// placed tasks with an attempt, agents listed once.
func (s *State) checkRestored(rs *restoring) error {
	owned := 0
	for n, j := range s.jobs.all {
		id := j.PB.Id // jobID(n), as ReadSnapshot checked
		if n > s.jobSeq {
			return badSnapshot("job id %q is not one of job-1..job-%d", id, s.jobSeq)
		}
		ids := rs.taskIDs[j]
		names := make(map[string]string, len(ids))
		for i, tid := range ids {
			t, ok := rs.tasks[tid]
			if tid != taskID(id, i) || !ok || t.PB.JobId != id || t.PB.Id != tid {
				return badSnapshot("job %s: task %d is %q, with no record of its own", id, i, tid)
			}
			names[t.PB.Name] = tid
		}
		owned += len(ids)
		for _, tid := range ids {
			if err := checkRestoredTask(rs.tasks[tid], rs.tasks, names); err != nil {
				return err
			}
		}
	}
	if owned != len(rs.tasks) {
		return badSnapshot("%d task records, %d tasks in jobs", len(rs.tasks), owned)
	}
	for i := 1; i < len(s.agentIDs); i++ {
		if s.agentIDs[i] == s.agentIDs[i-1] {
			return badSnapshot("agent %s listed twice", s.agentIDs[i])
		}
	}
	return nil
}

// checkRestoredTask checks one task's references within its job; tasks
// holds every task record read, names maps the job's task names to ids.
func checkRestoredTask(t *Task, tasks map[string]*Task, names map[string]string) error {
	if n := t.Ask().Negative(); n != "" {
		return badSnapshot("task %s asks for negative %s", t.PB.Id, n)
	}
	for _, dep := range t.spec.GetAfter() {
		if _, ok := names[dep]; !ok {
			return badSnapshot("task %s: after names unknown task %q", t.PB.Id, dep)
		}
	}
	cur := t
	for hops := 0; cur.PB.ReplacedBy != ""; hops++ {
		next, ok := tasks[cur.PB.ReplacedBy]
		if !ok || next.PB.JobId != t.PB.JobId || hops >= maxReplacedChain {
			return badSnapshot("task %s: replaced by %q, not a fallback of its job", cur.PB.Id, cur.PB.ReplacedBy)
		}
		cur = next
	}
	if isPlaced(t.PB.State) && len(t.PB.Attempts) == 0 {
		return badSnapshot("task %s: %v without an attempt", t.PB.Id, t.PB.State)
	}
	if _, ok := pb.TaskState_name[int32(t.PB.State)]; !ok {
		return badSnapshot("task %s: unknown state %d", t.PB.Id, t.PB.State)
	}
	return nil
}
