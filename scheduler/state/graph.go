package state

import (
	"fmt"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
	"google.golang.org/protobuf/encoding/protojson"
)

// Job graphs. A job is a graph of tasks: `after` edges make a task wait for
// others of its job. The graph can grow while the job runs, through two
// generic rules that know nothing about what the tasks do:
//
//   - fan-out: a task that succeeds with a result (the JSON of a
//     banyanv1.JobExpansion, written to $BANYAN_RESULT) adds those tasks to
//     its job. They may wait for existing tasks (the expanding one included)
//     and for each other, so one result can add a fan-out and its joins.
//     A result may hold arrays (a spec with a count), written out as in a
//     submitted job, when its entry says so (Command.result_arrays).
//   - fallback: a task whose spec has a fallback, and that fails for good
//     (or is not placed within fallback_after_ms), is replaced by the
//     fallback; the tasks that waited for it wait for the fallback instead,
//     and the job goes on.
//
// Both happen inside Apply, so every replica grows the same graph.

// MaxExpansionTasks bounds the tasks one result may add, arrays counted
// expanded.
const MaxExpansionTasks = 100_000

// ResultHasArrays reports whether a task's result, read as Apply reads it,
// is a job expansion that holds an array (a task spec with a count): the
// leader marks the entry that carries it (Command.result_arrays).
func ResultHasArrays(result []byte) bool {
	exp, err := parseExpansion(result)
	return err == nil && taskarray.Has(exp.GetTasks())
}

// parseExpansion reads a task's result as a job expansion.
func parseExpansion(result []byte) (*pb.JobExpansion, error) {
	if len(result) > limits.ResultBytes {
		return nil, fmt.Errorf("task result is %d bytes, more than the limit of %d (%s)", len(result),
			limits.ResultBytes, limits.FormatBytes(limits.ResultBytes))
	}
	exp := &pb.JobExpansion{}
	if err := protojson.Unmarshal(result, exp); err != nil {
		return nil, fmt.Errorf("task result is not a job expansion: %w", err)
	}
	return exp, nil
}

// addTasks creates tasks from specs in job j, wires their `after` edges to
// tasks old and new, and queues those with nothing to wait for. With
// consume, specs is the caller's own (an array's expansion) and each slot
// is cleared once its task is made, so that a million-task array's specs,
// which setSpec leaves as garbage or shares, go while the rest are made.
func (s *State) addTasks(now int64, j *Job, specs []*pb.TaskSpec, consume bool) []*Task {
	first := len(j.rec.tasks)
	if j.counts == nil && first+len(specs) > 1 {
		c := s.countsOf(j)
		j.counts = &c
	}
	added := make([]*Task, len(specs))
	for i, ts := range specs {
		s.seq++
		t := &Task{Seq: s.seq, PB: &pb.Task{
			Id: s.newTaskID(j, first+i), JobId: j.PB.Id, Name: ts.Name, State: pb.TaskState_TASK_STATE_WAITING,
		}}
		s.setSpec(t, ts)
		if consume {
			specs[i] = nil // ts is the state's now or garbage: let it go before the rest are made
		}
		s.ntasks++
		s.addTaskRec(j, t)
		if j.counts != nil {
			j.counts.add(pb.TaskState_TASK_STATE_WAITING, false, 1)
		}
		s.tallyTask(j, pb.TaskState_TASK_STATE_WAITING, false, 1)
		added[i] = t
		s.noteTask(t, KindCreated, 0, nil)
	}
	var names map[string]string
	for _, t := range added {
		s.wire(t, j, &names)
	}
	for _, t := range added {
		if t.waiting == 0 {
			s.enqueue(now, t, 0)
		}
	}
	return added
}

// internResources returns one shared message per distinct resource ask:
// a job's thousands of tasks usually ask the same, and specs are never
// changed after submission.
func (s *State) internResources(r *pb.Resources) *pb.Resources {
	if r == nil {
		return nil
	}
	return s.internAsk(r).msg
}

// internAsk returns one shared record per distinct resource ask: its
// vector and a message (the first one seen; an empty one for a nil ask).
func (s *State) internAsk(r *pb.Resources) *askRec {
	v := r.Vector()
	if shared, ok := s.asks[v]; ok {
		return shared
	}
	if r == nil {
		r = &pb.Resources{}
	}
	a := &askRec{vec: v, msg: r}
	s.asks[v] = a
	return a
}

// taskNames maps each task name of a job to its id.
func (s *State) taskNames(j *Job) map[string]string {
	names := make(map[string]string, len(j.rec.tasks))
	for _, r := range j.rec.tasks {
		names[r.pb.Name] = r.pb.Id
	}
	return names
}

// resolve follows fallback replacements from a task to the one standing in
// for it now.
func (s *State) resolve(id string) *Task {
	t := s.task(id)
	for t.PB.ReplacedBy != "" {
		t = s.task(t.PB.ReplacedBy)
	}
	return t
}

// wire records t's `after` edges: t waits for each dependency (or its
// replacement) that has not succeeded yet. *names is the index of t's
// job j by task name (taskNames), made here for the first task that
// waits: tasks of a million-task array wait for none.
func (s *State) wire(t *Task, j *Job, names *map[string]string) {
	after := t.spec.GetAfter()
	if len(after) == 0 {
		return
	}
	if *names == nil {
		*names = s.taskNames(j)
	}
	for _, dep := range after {
		d := s.resolve((*names)[dep])
		if d.PB.State == pb.TaskState_TASK_STATE_SUCCEEDED {
			continue
		}
		s.dependents[d.PB.Id] = append(s.dependents[d.PB.Id], t.PB.Id)
		t.waiting++
	}
}

// expand validates a task's result as a job expansion and adds its tasks;
// with arrays (the entry's result_arrays), its arrays are written out
// first. On error nothing changes.
func (s *State) expand(now int64, t *Task, result []byte, arrays bool) error {
	exp, err := parseExpansion(result)
	if err != nil {
		return err
	}
	specs := exp.Tasks
	if len(specs) == 0 {
		return nil
	}
	j := s.job(t.PB.JobId)
	if arrays && taskarray.Has(specs) {
		if specs, err = s.expandResultArrays(j, specs); err != nil {
			return fmt.Errorf("invalid job expansion: %w", err)
		}
	}
	if err := s.validateExpansion(j, specs); err != nil {
		return fmt.Errorf("invalid job expansion: %w", err)
	}
	s.addTasks(now, j, specs, true)
	return nil
}

// expandResultArrays writes out the arrays of a result, after the checks a
// submitted job's arrays pass before they are expanded (CheckArrays) and
// the result's own bound, counted expanded. An array must be named, and
// not as a task the job has: its result's after lists could then mean
// either. A named fallback is refused, as at submission: only one task of
// the array could take its name. The written-out tasks are then checked
// like any result's (validateExpansion), which also refuses names taken
// twice.
func (s *State) expandResultArrays(j *Job, specs []*pb.TaskSpec) ([]*pb.TaskSpec, error) {
	if err := CheckArrays(specs); err != nil {
		return nil, err
	}
	if n := taskarray.Tasks(specs); n > MaxExpansionTasks || int64(len(j.rec.tasks))+n > MaxTasksPerJob {
		return nil, invalid("%d tasks, arrays counted expanded: more than a result may add to a job (%d) or a job may hold (%d)",
			n, MaxExpansionTasks, MaxTasksPerJob)
	}
	var existing map[string]string
	for i, ts := range specs {
		if ts.Count < 1 {
			continue
		}
		if ts.Name == "" {
			return nil, invalid("task %d: an array (count %d) needs a name: its tasks are named NAME-0 to NAME-%d", i, ts.Count, ts.Count-1)
		}
		if existing == nil {
			existing = s.taskNames(j)
		}
		if _, dup := existing[ts.Name]; dup {
			return nil, invalid("array %s: the job already has a task of that name", ts.Name)
		}
		if fb := ts.Fallback; fb != nil && fb.Name != "" {
			return nil, invalid("array %s: its fallback is named %q, but each task of an array gets its own (NAME-i-fallback); leave the name out", ts.Name, fb.Name)
		}
	}
	return taskarray.Expand(specs), nil
}

func (s *State) validateExpansion(j *Job, specs []*pb.TaskSpec) error {
	if len(specs) > MaxExpansionTasks || len(j.rec.tasks)+len(specs) > MaxTasksPerJob {
		return invalid("%d tasks: more than a job may hold", len(specs))
	}
	existing := s.taskNames(j)
	newNames := make(map[string]int, len(specs))
	for i, ts := range specs {
		for f := ts; f != nil; f = f.Fallback {
			if f.Count != 0 {
				return invalid("task %s: count is for submitted jobs; a result lists each task", ts.Name)
			}
		}
		normalizeTask(ts)
		if err := validateTask(ts); err != nil {
			return fmt.Errorf("task %s: %w", ts.Name, err)
		}
		if _, dup := existing[ts.Name]; dup {
			return invalid("task %s: the job already has a task of that name", ts.Name)
		}
		if _, dup := newNames[ts.Name]; dup {
			return invalid("task %s: named twice", ts.Name)
		}
		newNames[ts.Name] = i
		for _, ask := range asksOf(ts) {
			if err := s.pools.CheckAsk(j.PB.Pool, ask.Vector()); err != nil {
				return fmt.Errorf("task %s: %w", ts.Name, err)
			}
		}
	}
	for _, ts := range specs {
		for _, dep := range ts.After {
			_, old := existing[dep]
			_, fresh := newNames[dep]
			if !old && !fresh {
				return invalid("task %s: after names unknown task %q", ts.Name, dep)
			}
		}
	}
	// Only new tasks can wait for new tasks, so any cycle is among them.
	sub := make([]*pb.TaskSpec, len(specs))
	for i, ts := range specs {
		c := &pb.TaskSpec{Name: ts.Name}
		for _, dep := range ts.After {
			if _, fresh := newNames[dep]; fresh {
				c.After = append(c.After, dep)
			}
		}
		sub[i] = c
	}
	if cyc := findCycle(sub, newNames); cyc != "" {
		return invalid("tasks wait for each other in a cycle: %s", cyc)
	}
	return nil
}

// asksOf returns the resource asks of a spec and of its fallbacks.
func asksOf(ts *pb.TaskSpec) []*pb.Resources {
	var out []*pb.Resources
	for f := ts; f != nil; f = f.Fallback {
		out = append(out, f.Resources)
	}
	return out
}

// normalizeFallback names unnamed fallbacks after the task they replace.
func normalizeFallback(ts *pb.TaskSpec) {
	if ts.Count > 0 {
		return // an array: each task's copy is named after it (expandTasks)
	}
	for f, name := ts.Fallback, ts.Name; f != nil; f, name = f.Fallback, f.Name {
		if f.Name == "" {
			f.Name = name + "-fallback"
		}
	}
}

// startFallback replaces a task that has failed for good by its fallback,
// if it has one whose name is free. It reports whether it did.
func (s *State) startFallback(now int64, t *Task) bool {
	fb := t.spec.GetFallback()
	if fb == nil {
		return false
	}
	j := s.job(t.PB.JobId)
	if _, taken := s.taskNames(j)[fb.Name]; taken {
		return false
	}
	spec := clone(fb)
	spec.After = nil // the original's dependencies have all succeeded
	nt := s.addTasks(now, j, []*pb.TaskSpec{spec}, true)[0]
	s.setReplacedBy(t, nt.PB.Id)
	if deps, ok := s.dependents[t.PB.Id]; ok {
		s.dependents[nt.PB.Id] = deps
		delete(s.dependents, t.PB.Id)
	}
	return true
}

// fallbackDue is when a queued task with a fallback wait gives up waiting:
// its first queueing plus the wait, if it was never placed.
func fallbackDue(t *Task) (int64, bool) {
	wait := t.spec.GetFallbackAfterMs()
	if wait <= 0 || t.spec.GetFallback() == nil || t.PB.State != pb.TaskState_TASK_STATE_QUEUED {
		return 0, false
	}
	if len(t.PB.Attempts) > 0 { // it was placed once: it no longer falls back for waiting
		return 0, false
	}
	return t.PB.QueuedUnixMs + wait, true
}

// DueFallbacks returns queued tasks whose fallback wait has run out, or
// that no up agent could ever hold (waiting would be pointless), sorted.
func (s *State) DueFallbacks(now int64) []string {
	var out []string
	var nodes []placement.Node
	for id := range s.fallbackWatch {
		t := s.task(id)
		if nodes == nil {
			nodes = s.nodes()
		}
		if s.fallbackReady(now, t, nodes) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// fallbackReady reports whether a queued task should give way to its
// fallback now: its wait ran out, or no up agent could ever hold it.
func (s *State) fallbackReady(now int64, t *Task, nodes []placement.Node) bool {
	due, ok := fallbackDue(t)
	if !ok {
		return false
	}
	return now >= due || explainBlocked(nodes, t) != ""
}

// applyFallback gives up on queued tasks whose fallback wait ran out.
func (s *State) applyFallback(now int64, c *fsmpb.Fallback) {
	for _, id := range c.TaskIds {
		t, ok := s.Task(id)
		if !ok {
			continue
		}
		if !s.fallbackReady(now, t, s.nodes()) {
			continue
		}
		reason := fmt.Sprintf("not placed within %dms; falling back", t.spec.GetFallbackAfterMs())
		if due, _ := fallbackDue(t); now < due {
			reason = explainBlocked(s.nodes(), t) + "; falling back"
		}
		s.queue.Remove(s.queueItem(t))
		delete(s.fallbackWatch, id)
		s.wTask(t)
		t.addAttempt(&pb.Attempt{Number: t.Attempt(), QueuedUnixMs: t.PB.QueuedUnixMs,
			FinishedUnixMs: now, Outcome: "fallback", Error: reason})
		s.changeTaskState(t, pb.TaskState_TASK_STATE_FAILED, t.current())
		s.startFallback(now, t)
	}
}
