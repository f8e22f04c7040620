package state

import (
	"errors"
	"fmt"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/pool"
)

// ErrInvalidJob wraps every reason a job spec is rejected.
var ErrInvalidJob = errors.New("invalid job")

// Limits on a job spec.
const (
	MaxTasksPerJob  = 1_000_000
	MaxPriority     = 1000
	maxNameLen      = 128
	maxCommandBytes = 64 << 10
	// MaxArrayBytes bounds what an array's tasks hold together (the
	// commands, args, env and workdirs of TaskSpec.count tasks): a spec of
	// a few bytes may stand for a million tasks, and applying it builds
	// them all, on every server.
	MaxArrayBytes = 256 << 20
	// MaxAfterEdges bounds the dependencies of a job whose after lists
	// name arrays (taskarray.CheckAfter).
	MaxAfterEdges = taskarray.MaxAfterEdges
)

// validTaskName reports whether name matches ^[A-Za-z0-9][A-Za-z0-9._:-]*$
// (its length is checked apart). Loops, not regexps: every replica checks
// every task of every submission, and the regexp was a sixth of that check.
func validTaskName(name string) bool { return validName(name, len(name), true, "._:-") }

// validFunctionName reports whether name matches ^[a-z0-9][a-z0-9._-]{0,62}$.
func validFunctionName(name string) bool { return validName(name, 63, false, "._-") }

// validName reports whether name is 1 to maxLen bytes of lowercase ASCII
// letters, digits, uppercase ones where upper says, and after the first
// byte the bytes of punct.
func validName(name string, maxLen int, upper bool, punct string) bool {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', upper && 'A' <= c && c <= 'Z':
		case i > 0 && strings.IndexByte(punct, c) >= 0:
		default:
			return false
		}
	}
	return name != "" && len(name) <= maxLen
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidJob, fmt.Sprintf(format, args...))
}

// NormalizeJob fills defaults into a spec in place: the class, task names
// ("t0", "t1", ...), the default ask (pool.DefaultAsk) of tasks and
// fallbacks that name no resources, and the opportunistic wait.
func NormalizeJob(spec *pb.JobSpec, d Defaults) {
	if spec.Class == pb.JobClass_JOB_CLASS_UNSPECIFIED {
		spec.Class = pb.JobClass_JOB_CLASS_BATCH
	}
	if spec.Pool == "" {
		spec.Pool = DefaultPool
	}
	if spec.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC && spec.MaxWaitMs == 0 {
		spec.MaxWaitMs = d.OpportunisticMaxWaitMs
	}
	for i, t := range spec.Tasks {
		if t.Name == "" {
			t.Name = fmt.Sprintf("t%d", i)
		}
		normalizeTask(t)
	}
}

// normalizeTask names unnamed fallbacks and gives the task and its
// fallbacks that leave their resources out (or all zero) the default ask.
// Submissions and fan-out results both go through it, so the server, not
// only the CLI, decides what an empty ask means.
func normalizeTask(t *pb.TaskSpec) {
	normalizeFallback(t)
	if t.Resources.Vector().IsZero() {
		t.Resources = pb.FromVector(pool.DefaultAsk)
	}
	for f := t.Fallback; f != nil; f = f.Fallback {
		if f.Resources.Vector().IsZero() {
			f.Resources = pb.FromVector(pool.DefaultAsk)
		}
	}
}

// taskSpecBytes is what limits.TaskSpecBytes bounds: command, args, env
// names and values and workdir, of the task and of its fallbacks.
func taskSpecBytes(t *pb.TaskSpec) int {
	n := len(t.Workdir)
	add := func(cmd, args []string, env map[string]string) {
		for _, a := range cmd {
			n += len(a)
		}
		for _, a := range args {
			n += len(a)
		}
		for k, v := range env {
			n += len(k) + len(v)
		}
	}
	add(t.Command, t.Args, t.Env)
	for f := t.Fallback; f != nil; f = f.Fallback {
		add(f.Command, f.Args, f.Env)
	}
	return n
}

// validateAsk checks one resource ask: not zero (NormalizeJob gives an
// empty ask the default), nothing negative, nothing above pool.MaxQuantity.
func validateAsk(r *pb.Resources) error {
	v := r.Vector()
	if n := v.Negative(); n != "" {
		return invalid("resources: %s is negative", n)
	}
	if n := v.TooLarge(); n != "" {
		return invalid("resources: %s is larger than %d", n, int64(pool.MaxQuantity))
	}
	if v.IsZero() {
		return invalid("resources: the ask is zero; name what the task uses, or leave resources out for the default %s",
			pool.DefaultAsk)
	}
	return nil
}

// ValidateJob checks a normalized job spec on its own (CheckJob) and
// against the pool tree (ValidatePool). Its error names the job, the task
// and the field at fault.
func ValidateJob(spec *pb.JobSpec, pools *pool.Tree) error {
	_, err := validateJob(spec, pools)
	return err
}

// CheckJob checks a normalized new submission's job on its own: its
// fields, its arrays as sent and expanded, its task names and after lists,
// and the rules Apply leaves to the proposer (checkNewOnly). It reads no
// state, so a server checks a submission with it outside the state's lock. A job
// whose arrays arrayTasksValid vouches for is not expanded at all; any
// other is, which for 100,000 tasks takes tens of milliseconds that no
// apply should wait for.
func CheckJob(spec *pb.JobSpec) error {
	if err := checkJobSpec(spec); err != nil {
		return fmt.Errorf("job %s: %w", jobLabel(spec), err)
	}
	if err := checkNewOnly(spec.Tasks); err != nil {
		return fmt.Errorf("job %s: %w", jobLabel(spec), err)
	}
	if arrayTasksValid(spec.Tasks) {
		return nil
	}
	if err := checkTasks(expandTasks(spec.Tasks)); err != nil {
		return fmt.Errorf("job %s: %w", jobLabel(spec), err)
	}
	return nil
}

// checkNewOnly holds the rules a server checks before it proposes a
// submission and Apply does not: entries they would refuse may already be
// in a log, which must replay as it did.
//
// An array's fallback may not be named: every task of the array would get
// the same fallback name, and a fallback starts only under a free name, so
// only the first task to fall back would get one. Unnamed, each task's
// fallback is named after it (NAME-i-fallback).
func checkNewOnly(tasks []*pb.TaskSpec) error {
	for i, t := range tasks {
		if t.Count < 1 {
			continue
		}
		for f := t.Fallback; f != nil; f = f.Fallback {
			if f.Name != "" {
				return invalid("task %s: fallback %s: an array's fallbacks are named after each of its tasks (%s-0-fallback, ...); leave the name out",
					taskLabel(t.Name, i), f.Name, t.Name)
			}
		}
	}
	return nil
}

// arrayTasksValid reports whether the tasks of a job holding arrays and no
// after list are, expanded, each valid and all named apart, deciding it
// from the specs as sent. A task of an array differs from the array only
// where "${INDEX}" becomes its index, and in its name (NAME-i) and its
// fallbacks' (named after it); every check of a task (validateTask) either
// does not look at those or bounds a length, and the lengths grow with the
// index's digits. So the last task of an array is its longest, and if it
// passes, every task of the array does. Names are apart unless
// taskarray.Collides. False sends the job to the check of every task
// expanded (checkTasks), which also names the task at fault; so does a job
// without arrays, or with an after list.
func arrayTasksValid(tasks []*pb.TaskSpec) bool {
	if !taskarray.Has(tasks) || taskarray.Collides(tasks) {
		return false
	}
	for _, t := range tasks {
		if len(t.After) > 0 || t.Count < 0 {
			return false
		}
		if t.Count == 0 {
			if validateTask(t) != nil {
				return false
			}
			continue
		}
		last := taskarray.Task(t, int(t.Count)-1)
		if last.Fallback != nil {
			normalizeFallback(last)
		}
		if validateTask(last) != nil {
			return false
		}
	}
	return true
}

// ValidatePool checks a normalized job spec against the pool tree: the
// pool exists and is a leaf, and every ask of its tasks (an array's once)
// fits under the pool's maxima.
func ValidatePool(spec *pb.JobSpec, pools *pool.Tree) error {
	if err := validatePool(spec, pools); err != nil {
		return fmt.Errorf("job %s: %w", jobLabel(spec), err)
	}
	return nil
}

// validateJob is ValidateJob, returning the job's tasks with its arrays
// expanded (spec.Tasks itself when it has none).
func validateJob(spec *pb.JobSpec, pools *pool.Tree) ([]*pb.TaskSpec, error) {
	tasks, err := checkJob(spec)
	if err != nil {
		return nil, err
	}
	if err := ValidatePool(spec, pools); err != nil {
		return nil, err
	}
	return tasks, nil
}

// checkJob is CheckJob, returning the job's tasks with its arrays expanded
// (spec.Tasks itself when it has none).
func checkJob(spec *pb.JobSpec) ([]*pb.TaskSpec, error) {
	if err := checkJobSpec(spec); err != nil {
		return nil, fmt.Errorf("job %s: %w", jobLabel(spec), err)
	}
	tasks := expandTasks(spec.Tasks)
	if !arrayTasksValid(spec.Tasks) {
		if err := checkTasks(tasks); err != nil {
			return nil, fmt.Errorf("job %s: %w", jobLabel(spec), err)
		}
	}
	return tasks, nil
}

// jobLabel names a job in an error.
func jobLabel(spec *pb.JobSpec) string {
	if spec.Name == "" {
		return "(unnamed)"
	}
	return spec.Name
}

// CheckArrays checks the arrays among a job's task specs as sent, before
// anything is expanded: no negative count, none in a fallback, at most
// MaxTasksPerJob tasks in all and MaxArrayBytes of strings an array, and
// where after lists name arrays, at most MaxAfterEdges dependencies and
// limits.JobSpecBytes of names in one task's list.
func CheckArrays(tasks []*pb.TaskSpec) error {
	if n := taskarray.Tasks(tasks); n > MaxTasksPerJob {
		return invalid("%d tasks, more than the limit of %d", n, MaxTasksPerJob)
	}
	if err := taskarray.CheckAfter(tasks); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	for i, t := range tasks {
		if t.Count < 0 {
			return invalid("task %s: count %d is negative", taskLabel(t.Name, i), t.Count)
		}
		for f := t.Fallback; f != nil; f = f.Fallback {
			if f.Count != 0 {
				return invalid("task %s: fallback %s: a fallback takes its task's place and has no count", taskLabel(t.Name, i), f.Name)
			}
		}
		// "${INDEX}" is longer than any index, so no task of an array
		// holds more than its spec.
		if per := int64(taskSpecBytes(t) + len(t.Name) + 8); t.Count > 1 && per*int64(t.Count) > MaxArrayBytes {
			return invalid("task %s: %d tasks of %d bytes each (command, args, env and workdir) are more than the limit of %s an array",
				taskLabel(t.Name, i), t.Count, per, limits.FormatBytes(MaxArrayBytes))
		}
	}
	return nil
}

// CheckSubmission checks that a submission's jobs make at most
// limits.SubmitTasks tasks together, arrays counted expanded.
func CheckSubmission(jobs []*pb.JobSpec) error {
	if n := taskarray.JobTasks(jobs); n > limits.SubmitTasks {
		return invalid("a submission of %d tasks, more than the limit of %d; submit the jobs in several calls", n, limits.SubmitTasks)
	}
	return nil
}

// taskLabel names a task in an error: by name, or by its position
// counted from 1 when it has none yet.
func taskLabel(name string, i int) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("#%d", i+1)
}

// checkJobSpec checks the job's own fields and its arrays as sent.
func checkJobSpec(spec *pb.JobSpec) error {
	if len(spec.Name) > maxNameLen {
		return invalid("name longer than %d characters", maxNameLen)
	}
	if len(spec.Tasks) == 0 {
		return invalid("no tasks")
	}
	if err := CheckArrays(spec.Tasks); err != nil {
		return err
	}
	if n := spec.SizeVT(); n > limits.JobSpecBytes {
		return invalid("job spec is %d bytes, more than the limit of %d (%s) per submission; split it into several jobs",
			n, limits.JobSpecBytes, limits.FormatBytes(limits.JobSpecBytes))
	}
	if _, ok := pb.JobClass_name[int32(spec.Class)]; !ok {
		return invalid("unknown class %d", spec.Class)
	}
	if spec.Priority < -MaxPriority || spec.Priority > MaxPriority {
		return invalid("priority %d outside [-%d, %d]", spec.Priority, MaxPriority, MaxPriority)
	}
	if spec.MaxWaitMs < 0 {
		return invalid("max_wait is negative")
	}
	if spec.MaxWaitMs > 0 && spec.Class != pb.JobClass_JOB_CLASS_OPPORTUNISTIC {
		return invalid("max_wait applies to class opportunistic only")
	}
	return nil
}

// expandTasks returns a job's tasks with its arrays expanded (tasks itself
// when it has none), the fallbacks of the arrays' tasks named after them as
// normalizeFallback names any other's.
func expandTasks(tasks []*pb.TaskSpec) []*pb.TaskSpec {
	if !taskarray.Has(tasks) {
		return tasks
	}
	out := taskarray.Expand(tasks)
	for _, t := range out {
		if t.Fallback != nil {
			normalizeFallback(t)
		}
	}
	return out
}

// checkTasks checks a job's tasks (arrays expanded) one by one and as a
// graph: unique names, known dependencies, no cycle.
func checkTasks(tasks []*pb.TaskSpec) error {
	names := make(map[string]int, len(tasks))
	for i, t := range tasks {
		if err := validateTask(t); err != nil {
			return fmt.Errorf("task %s: %w", t.Name, err)
		}
		if j, dup := names[t.Name]; dup {
			return invalid("tasks %d and %d are both named %q", j, i, t.Name)
		}
		names[t.Name] = i
	}
	for _, t := range tasks {
		for _, dep := range t.After {
			if _, ok := names[dep]; !ok {
				if strings.Contains(dep, taskarray.Placeholder) {
					return invalid("task %s: after %q: %s stands for the index of an array's task, and %s is not one (it has no count)",
						t.Name, dep, taskarray.Placeholder, t.Name)
				}
				return invalid("task %s: after names unknown task %q", t.Name, dep)
			}
			if dep == t.Name {
				return invalid("task %s: waits for itself", t.Name)
			}
		}
	}
	if cyc := findCycle(tasks, names); cyc != "" {
		return invalid("tasks wait for each other in a cycle: %s", cyc)
	}
	return nil
}

func validateTask(t *pb.TaskSpec) error {
	if !validTaskName(t.Name) || len(t.Name) > maxNameLen {
		return invalid("name %q: use letters, digits, '.', '_', ':' or '-' (at most %d)", t.Name, maxNameLen)
	}
	switch {
	case t.Function != "" && len(t.Command) > 0:
		return invalid("give a command or a function, not both")
	case t.Function != "":
		if !validFunctionName(t.Function) {
			return invalid("function name %q: use lowercase letters, digits, '.', '_' or '-'", t.Function)
		}
	case len(t.Command) == 0 || t.Command[0] == "":
		return invalid("command is empty")
	case len(t.Args) > 0:
		return invalid("args go with a function; a command takes its arguments in command")
	}
	size := 0
	for _, a := range t.Command {
		size += len(a)
	}
	for _, a := range t.Args {
		size += len(a)
	}
	if size > maxCommandBytes {
		return invalid("command is %d bytes, more than %d", size, maxCommandBytes)
	}
	if n := taskSpecBytes(t); n > limits.TaskSpecBytes {
		return invalid("command, args, env and workdir are %d bytes, more than the limit of %d (%s)",
			n, limits.TaskSpecBytes, limits.FormatBytes(limits.TaskSpecBytes))
	}
	if err := validateAsk(t.Resources); err != nil {
		return err
	}
	if t.TimeoutMs < 0 {
		return invalid("timeout is negative")
	}
	if r := t.Retry; r != nil {
		if r.MaxAttempts < 0 || r.MaxAttempts > 100 {
			return invalid("retry.max_attempts %d outside [0, 100]", r.MaxAttempts)
		}
		if r.InitialBackoffMs < 0 || r.MaxBackoffMs < 0 {
			return invalid("retry backoff is negative")
		}
	}
	for k := range t.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return invalid("env name %q is not valid", k)
		}
	}
	for _, c := range t.Constraints {
		if err := ValidateConstraint(c); err != nil {
			return invalid("constraint: %v", err)
		}
	}
	if t.FallbackAfterMs < 0 {
		return invalid("fallback_after is negative")
	}
	if t.FallbackAfterMs > 0 && t.Fallback == nil {
		return invalid("fallback_after without a fallback")
	}
	depth := 0
	for f := t.Fallback; f != nil; f = f.Fallback {
		if depth++; depth > 3 {
			return invalid("more than 3 fallbacks in a chain")
		}
		if len(f.After) > 0 {
			return invalid("fallback %s: a fallback takes over its task's place and has no after of its own", f.Name)
		}
		if err := validateTask(&pb.TaskSpec{Name: f.Name, Command: f.Command, Env: f.Env, Resources: f.Resources,
			TimeoutMs: f.TimeoutMs, Retry: f.Retry, Constraints: f.Constraints, Function: f.Function,
			Args: f.Args}); err != nil {
			return fmt.Errorf("fallback %s: %w", f.Name, err)
		}
	}
	return nil
}

// ValidateConstraint checks one label constraint.
func ValidateConstraint(c *pb.Constraint) error {
	if c.Label == "" {
		return errors.New("empty label")
	}
	switch c.Op {
	case "", "=", "==", "!=":
	case "exists", "not_exists":
		if c.Value != "" {
			return fmt.Errorf("%s %s takes no value", c.Label, c.Op)
		}
	default:
		return fmt.Errorf("%s: unknown op %q (use =, !=, exists, not_exists)", c.Label, c.Op)
	}
	return nil
}

func validatePool(spec *pb.JobSpec, pools *pool.Tree) error {
	if _, ok := pools.Get(spec.Pool); !ok {
		return invalid("unknown pool %q", spec.Pool)
	}
	if !pools.IsLeaf(spec.Pool) {
		return invalid("pool %q has child pools; submit to one of them: %s", spec.Pool,
			strings.Join(pools.Children(spec.Pool), ", "))
	}
	for _, t := range spec.Tasks {
		for _, ask := range asksOf(t) {
			if err := pools.CheckAsk(spec.Pool, ask.Vector()); err != nil {
				return fmt.Errorf("task %s: %w: %w", t.Name, ErrInvalidJob, err)
			}
		}
	}
	return nil
}

// findCycle returns a description of a dependency cycle, or "".
func findCycle(tasks []*pb.TaskSpec, names map[string]int) string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(tasks))
	var stack []string
	var found string
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, tasks[i].Name)
		for _, dep := range tasks[i].After {
			j := names[dep]
			switch color[j] {
			case grey:
				found = strings.Join(append(stack, dep), " -> ")
				return true
			case white:
				if visit(j) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range tasks {
		if color[i] == white && visit(i) {
			return found
		}
	}
	return ""
}
