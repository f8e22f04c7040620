// Package taskarray expands task arrays: a TaskSpec with a count stands
// for that many tasks, sent and logged as one spec. The server expands an
// array when it applies the job (package state); a client expands it
// itself when the server it talks to predates counts (sched job submit).
// Both use Expand, so a task of an array is the same wherever it was made.
//
// Task i of an array (from 0) is named NAME-i, and "${INDEX}" in its
// command, args, env values, workdir and exclusive_key becomes i. Its
// resources, timeout, retry policy, constraints and function are the
// array's, and so are its command and args when they hold no
// "${INDEX}": the expanded specs share them, so they must be treated as
// read-only. Each task gets its own copy of the fallback chain, with
// "${INDEX}" replaced in the same fields, which the server names after the
// task it replaces.
//
// In an after list, a name that is an array's and no task's stands for
// every task of that array (a task written out under the same name wins),
// and in an array's own list "${INDEX}" names one task by the waiting
// task's index: after: [encode-${INDEX}] makes check-i wait for encode-i.
// The expanded lists name each task; an array's tasks share one list
// unless it holds the index.
//
// The package is pure: no I/O, no clock, no goroutines.
package taskarray

import (
	"slices"
	"strconv"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/protobuf/proto"
)

// Feature is the name a server lists in VersionResponse.features when it
// expands counts.
const Feature = "task_count"

// Placeholder is what becomes each task's index.
const Placeholder = "${INDEX}"

// Tasks is how many tasks specs stand for: each spec's count, or one for a
// spec without one. A negative count counts as one (validation refuses it).
func Tasks(specs []*pb.TaskSpec) int64 {
	var n int64
	for _, t := range specs {
		n += int64(max(t.GetCount(), 1))
	}
	return n
}

// Has reports whether any spec carries a count.
func Has(specs []*pb.TaskSpec) bool {
	for _, t := range specs {
		if t.GetCount() != 0 {
			return true
		}
	}
	return false
}

// InJobs reports whether any of jobs holds an array.
func InJobs(jobs []*pb.JobSpec) bool { return anyJob(jobs, Has) }

// anyJob reports whether the tasks of any of jobs satisfy f.
func anyJob(jobs []*pb.JobSpec, f func([]*pb.TaskSpec) bool) bool {
	for _, j := range jobs {
		if f(j.GetTasks()) {
			return true
		}
	}
	return false
}

// JobTasks is how many tasks jobs make together, arrays counted expanded.
func JobTasks(jobs []*pb.JobSpec) int64 {
	var n int64
	for _, j := range jobs {
		n += Tasks(j.GetTasks())
	}
	return n
}

// ResolvesAfterInJobs reports whether any of jobs needs AfterFeature
// (ResolvesAfter).
func ResolvesAfterInJobs(jobs []*pb.JobSpec) bool { return anyJob(jobs, ResolvesAfter) }

// Needs lists the features (of Features) a server must list to take jobs
// as they are; a client expands them itself (ExpandJobs) for one that
// lacks any.
func Needs(jobs []*pb.JobSpec) []string {
	var need []string
	if InJobs(jobs) {
		need = append(need, Feature)
	}
	if ResolvesAfterInJobs(jobs) {
		need = append(need, AfterFeature)
	}
	return need
}

// Serves reports whether a server listing features takes jobs that need
// need as they are.
func Serves(features, need []string) bool {
	for _, f := range need {
		if !slices.Contains(features, f) {
			return false
		}
	}
	return true
}

// ExpandJobs expands the arrays of every job in place (Expand): what a
// client sends a server that predates counts.
func ExpandJobs(jobs []*pb.JobSpec) {
	for _, j := range jobs {
		if j != nil {
			j.Tasks = Expand(j.Tasks)
		}
	}
}

// Expand returns specs with every array expanded in place of its spec,
// in order; specs itself when none has a count. A count below one leaves
// the spec as it is (validation refuses a negative count).
func Expand(specs []*pb.TaskSpec) []*pb.TaskSpec {
	if !Has(specs) {
		return specs
	}
	n := namesOf(specs)
	out := make([]*pb.TaskSpec, 0, Tasks(specs))
	for _, t := range specs {
		if t.GetCount() < 1 {
			if after := n.fixedAfter(t.After, false); !sameList(after, t.After) {
				t = proto.Clone(t).(*pb.TaskSpec) // specs are the caller's: never changed
				t.After = after
			}
			out = append(out, t)
			continue
		}
		fixed, perTask := n.fixedAfter(t.After, true), indexed(t.After)
		for i := range int(t.Count) {
			task := Task(t, i)
			if perTask {
				task.After = n.afterFor(t.After, fixed, i)
			} else {
				task.After = fixed
			}
			out = append(out, task)
		}
	}
	return out
}

// sameList reports whether a and b are the same slice.
func sameList(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// Task is task i of the array t.
func Task(t *pb.TaskSpec, i int) *pb.TaskSpec {
	idx := strconv.Itoa(i)
	sub := func(s string) string {
		if !strings.Contains(s, Placeholder) {
			return s
		}
		return strings.ReplaceAll(s, Placeholder, idx)
	}
	ts := &pb.TaskSpec{Name: t.Name + "-" + idx, Resources: t.Resources, TimeoutMs: t.TimeoutMs,
		Retry: t.Retry, ExclusiveKey: sub(t.ExclusiveKey), Constraints: t.Constraints,
		After: t.After, Workdir: sub(t.Workdir), FallbackAfterMs: t.FallbackAfterMs, Function: t.Function}
	ts.Command, ts.Args, ts.Env = subAll(t.Command, sub), subAll(t.Args, sub), subEnv(t.Env, sub)
	if t.Fallback != nil {
		ts.Fallback = proto.Clone(t.Fallback).(*pb.TaskSpec)
		for f := ts.Fallback; f != nil; f = f.Fallback {
			f.Command, f.Args, f.Env = subAll(f.Command, sub), subAll(f.Args, sub), subEnv(f.Env, sub)
			f.Workdir, f.ExclusiveKey = sub(f.Workdir), sub(f.ExclusiveKey)
		}
	}
	return ts
}

func subEnv(env map[string]string, sub func(string) string) map[string]string {
	if len(env) == 0 {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = sub(v)
	}
	return out
}

// subAll returns list with sub applied to each string: list itself, its
// capacity clipped, when none holds the placeholder, which the array's
// tasks then share (a million-task array of one command keeps one list).
func subAll(list []string, sub func(string) string) []string {
	if len(list) == 0 {
		return nil
	}
	if !slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, Placeholder) }) {
		return slices.Clip(list)
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = sub(a)
	}
	return out
}
