package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// validationState has the pools the validation cases refer to: default,
// studio (with a child, so not a leaf) and capped (max cpu=4, no GPUs).
func validationState(t *testing.T) *State {
	t.Helper()
	s := New(DefaultDefaults)
	for _, p := range []*pb.Pool{
		{Path: "studio"},
		{Path: "studio/ingest"},
		{Path: "capped", Max: &pb.Resources{CpuMillis: 4000}, MaxSet: []string{"cpu", "gpu"}},
	} {
		if r := s.Apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: p, Create: true}}}); r.Err != nil {
			t.Fatalf("create pool %s: %v", p.Path, r.Err)
		}
	}
	return s
}

func task(name string, mods ...func(*pb.TaskSpec)) *pb.TaskSpec {
	ts := &pb.TaskSpec{Name: name, Command: []string{"run"}, Resources: &pb.Resources{CpuMillis: 1000}}
	for _, m := range mods {
		m(ts)
	}
	return ts
}

func after(deps ...string) func(*pb.TaskSpec) { return func(t *pb.TaskSpec) { t.After = deps } }

func count(n int32) func(*pb.TaskSpec) { return func(t *pb.TaskSpec) { t.Count = n } }

func TestValidateJob(t *testing.T) {
	tests := []struct {
		name string
		spec *pb.JobSpec
		want string // a fragment of the error; "" for a valid spec
	}{
		{"valid", &pb.JobSpec{Name: "ok", Tasks: []*pb.TaskSpec{task("a"), task("b", after("a"))}}, ""},
		{"valid unnamed tasks get names", &pb.JobSpec{Tasks: []*pb.TaskSpec{task(""), task("")}}, ""},
		{"valid opportunistic with max_wait", &pb.JobSpec{Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC,
			MaxWaitMs: 5000, Tasks: []*pb.TaskSpec{task("a")}}, ""},
		{"valid ask at the pool max", &pb.JobSpec{Pool: "capped", Tasks: []*pb.TaskSpec{
			task("a", func(t *pb.TaskSpec) { t.Resources.CpuMillis = 4000 })}}, ""},
		{"valid priority at the limit", &pb.JobSpec{Priority: MaxPriority, Tasks: []*pb.TaskSpec{task("a")}}, ""},
		{"valid constraints", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Constraints = []*pb.Constraint{{Label: "zone", Op: "=", Value: "a"}, {Label: "ssd", Op: "exists"},
				{Label: "spot", Op: "not_exists"}, {Label: "gpu", Value: "L4"}, {Label: "zone", Op: "!=", Value: "b"}}
		})}}, ""},

		{"no tasks", &pb.JobSpec{Name: "empty"}, "job empty: invalid job: no tasks"},
		{"empty command", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) { t.Command = nil })}},
			"task a: invalid job: command is empty"},
		{"empty program", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) { t.Command = []string{"", "x"} })}},
			"command is empty"},
		{"negative cpu", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) { t.Resources.CpuMillis = -1 })}},
			"task a: invalid job: resources: cpu is negative"},
		{"negative gpu memory", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) { t.Resources.GpuMemoryBytes = -1 })}},
			"resources: gpu_memory is negative"},
		{"unknown pool", &pb.JobSpec{Pool: "nope", Tasks: []*pb.TaskSpec{task("a")}}, `unknown pool "nope"`},
		{"pool with children", &pb.JobSpec{Pool: "studio", Tasks: []*pb.TaskSpec{task("a")}},
			`pool "studio" has child pools; submit to one of them: studio/ingest`},
		{"ask above max", &pb.JobSpec{Pool: "capped", Tasks: []*pb.TaskSpec{
			task("big", func(t *pb.TaskSpec) { t.Resources.CpuMillis = 8000 })}},
			"task big: invalid job: ask above pool capped's max: cpu 8 > max 4"},
		{"ask above a zero max", &pb.JobSpec{Pool: "capped", Tasks: []*pb.TaskSpec{
			task("gpu", func(t *pb.TaskSpec) { t.Resources.Gpus = 1 })}},
			"ask above pool capped's max: gpu 1 > max 0"},
		{"duplicate task names", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a"), task("b"), task("a")}},
			`tasks 0 and 2 are both named "a"`},
		{"duplicate of a generated name", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("t1"), task("")}},
			`tasks 0 and 1 are both named "t1"`},
		{"unknown after", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", after("missing"))}},
			`task a: after names unknown task "missing"`},
		{"waits for itself", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", after("a"))}}, "task a: waits for itself"},
		{"dependency cycle", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", after("c")), task("b", after("a")), task("c", after("b"))}},
			"tasks wait for each other in a cycle: a -> c -> b -> a"},
		{"bad constraint op", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Constraints = []*pb.Constraint{{Label: "zone", Op: "~", Value: "a"}}
		})}}, `invalid job: constraint: zone: unknown op "~"`},
		{"constraint without label", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Constraints = []*pb.Constraint{{Op: "exists"}}
		})}}, "constraint: empty label"},
		{"exists with a value", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Constraints = []*pb.Constraint{{Label: "ssd", Op: "exists", Value: "yes"}}
		})}}, "ssd exists takes no value"},
		{"priority too high", &pb.JobSpec{Priority: MaxPriority + 1, Tasks: []*pb.TaskSpec{task("a")}},
			"priority 1001 outside [-1000, 1000]"},
		{"priority too low", &pb.JobSpec{Priority: -MaxPriority - 1, Tasks: []*pb.TaskSpec{task("a")}},
			"priority -1001 outside"},
		{"max_wait on batch", &pb.JobSpec{MaxWaitMs: 1000, Tasks: []*pb.TaskSpec{task("a")}},
			"max_wait applies to class opportunistic only"},
		{"max_wait on latency", &pb.JobSpec{Class: pb.JobClass_JOB_CLASS_LATENCY, MaxWaitMs: 1000, Tasks: []*pb.TaskSpec{task("a")}},
			"max_wait applies to class opportunistic only"},
		{"negative max_wait", &pb.JobSpec{Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC, MaxWaitMs: -1, Tasks: []*pb.TaskSpec{task("a")}},
			"max_wait is negative"},
		{"unknown class", &pb.JobSpec{Class: 9, Tasks: []*pb.TaskSpec{task("a")}}, "unknown class 9"},
		{"bad task name", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("has space")}}, `name "has space"`},
		{"long job name", &pb.JobSpec{Name: strings.Repeat("x", 129), Tasks: []*pb.TaskSpec{task("a")}},
			"name longer than 128 characters"},
		{"negative timeout", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) { t.TimeoutMs = -1 })}},
			"timeout is negative"},
		{"too many attempts", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Retry = &pb.RetryPolicy{MaxAttempts: 101}
		})}}, "retry.max_attempts 101 outside [0, 100]"},
		{"negative backoff", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Retry = &pb.RetryPolicy{InitialBackoffMs: -1}
		})}}, "retry backoff is negative"},
		{"bad env name", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Env = map[string]string{"A=B": "x"}
		})}}, `env name "A=B" is not valid`},
		{"command too long", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Command = []string{"sh", strings.Repeat("x", 64<<10)}
		})}}, "more than 65536"},

		// Arrays (TaskSpec.count) are checked as sent and as expanded.
		{"valid array and a task after one of its tasks", &pb.JobSpec{Tasks: []*pb.TaskSpec{
			task("chunk", count(3)), task("join", after("chunk-0", "chunk-2"))}}, ""},
		{"valid array of a thousand", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("f", count(1000))}}, ""},
		{"negative count", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(-2))}}, "task a: count -2 is negative"},
		{"arrays over the task limit", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(MaxTasksPerJob)), task("b")}},
			"tasks, more than the limit of 1000000"}, // the job's 1000001, or the submission's (Apply)
		{"count in a fallback", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
			t.Fallback = task("cpu", count(2))
		})}}, "fallback cpu: a fallback takes its task's place and has no count"},
		{"array over its bytes", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(300_000), func(t *pb.TaskSpec) {
			t.Command = []string{"sh", strings.Repeat("x", 1000)}
		})}}, "more than the limit of 256MiB an array"},
		{"array task named like another", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(4)), task("a-3")}},
			`both named "a-3"`},
		{"array after an unknown task", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2), after("a-5"))}},
			`task a-0: after names unknown task "a-5"`},
		{"array task waits for itself", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2), after("a-1"))}},
			"task a-1: waits for itself"},
		// An array's name in after stands for all its tasks; ${INDEX} in an
		// array's after list names one task by index.
		{"valid task after a whole array, array after an array by index", &pb.JobSpec{Tasks: []*pb.TaskSpec{
			task("enc", count(4)), task("check", count(4), after("enc-${INDEX}")), task("concat", after("enc", "check"))}}, ""},
		{"array waits for itself whole", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(3), after("a"))}},
			"task a-0: waits for itself"},
		{"array waits for itself by index", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(3), after("a-${INDEX}"))}},
			"task a-0: waits for itself"},
		{"index past the other array", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2)), task("b", count(3), after("a-${INDEX}"))}},
			`task b-2: after names unknown task "a-2"`},
		{"index outside an array", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2)), task("b", after("a-${INDEX}"))}},
			`task b: after "a-${INDEX}": ${INDEX} stands for the index of an array's task, and b is not one`},
		{"arrays waiting for each other", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2), after("b")), task("b", count(2), after("a-1"))}},
			"in a cycle"},
		{"after lists over the edge limit", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2001)), task("b", count(2000), after("a"))}},
			"the after lists name 4002000 tasks, arrays counted expanded, more than the limit of 4000000 a job"},
		{"after list over its bytes", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("encode", count(800_000)), task("cat", after("encode"))}},
			"task cat: after lists 11.3MiB of task names with its arrays expanded, more than the limit of 8MiB a task"},
		{"array task of a bad name", &pb.JobSpec{Tasks: []*pb.TaskSpec{task("a", count(2), func(t *pb.TaskSpec) {
			t.Name = strings.Repeat("n", maxNameLen-1)
		})}}, "at most 128"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validationState(t)
			spec := clone(tc.spec)
			NormalizeJob(spec, s.Defaults())
			err := ValidateJob(spec, s.Pools())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateJob: %v", err)
				}
			} else {
				if !errors.Is(err, ErrInvalidJob) {
					t.Fatalf("ValidateJob error %v does not wrap ErrInvalidJob", err)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ValidateJob error %q does not contain %q", err, tc.want)
				}
			}

			// Apply gives the same verdict, and a rejected batch leaves no
			// trace, not even a used job id.
			r := s.Apply(&fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{
				Jobs: []*pb.JobSpec{{Name: "fine", Tasks: []*pb.TaskSpec{task("x")}}, clone(tc.spec)}}}})
			if (r.Err == nil) != (tc.want == "") {
				t.Fatalf("Apply error %v, ValidateJob error %v", r.Err, err)
			}
			if tc.want != "" {
				if !errors.Is(r.Err, ErrInvalidJob) || !strings.Contains(r.Err.Error(), tc.want) {
					t.Fatalf("Apply error %v", r.Err)
				}
				if len(s.JobIDs()) != 0 || s.jobSeq != 0 || s.seq != 0 || len(r.Jobs) != 0 {
					t.Fatalf("rejected batch left jobs %v (jobSeq %d)", s.JobIDs(), s.jobSeq)
				}
			} else if len(r.Jobs) != 2 || r.Jobs[1].Id != "job-2" {
				t.Fatalf("Apply returned %v", r.Jobs)
			}
			if errs := checkInvariants(s, true); len(errs) > 0 {
				t.Fatal(strings.Join(errs, "\n"))
			}
		})
	}
}

func TestNormalizeJob(t *testing.T) {
	d := Defaults{OpportunisticMaxWaitMs: 777}
	spec := &pb.JobSpec{Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC, Tasks: []*pb.TaskSpec{{}, {Name: "named"}, {}}}
	NormalizeJob(spec, d)
	if spec.Pool != DefaultPool || spec.MaxWaitMs != 777 {
		t.Fatalf("pool %q max_wait %d", spec.Pool, spec.MaxWaitMs)
	}
	var names []string
	for _, ts := range spec.Tasks {
		names = append(names, ts.Name)
	}
	if got := strings.Join(names, ","); got != "t0,named,t2" {
		t.Fatalf("task names %s", got)
	}

	spec = &pb.JobSpec{Tasks: []*pb.TaskSpec{{}}}
	NormalizeJob(spec, d)
	if spec.Class != pb.JobClass_JOB_CLASS_BATCH || spec.MaxWaitMs != 0 {
		t.Fatalf("class %v max_wait %d", spec.Class, spec.MaxWaitMs)
	}

	// An explicit wait is kept.
	spec = &pb.JobSpec{Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC, MaxWaitMs: 5, Pool: "p"}
	NormalizeJob(spec, d)
	if spec.MaxWaitMs != 5 || spec.Pool != "p" {
		t.Fatalf("max_wait %d pool %q", spec.MaxWaitMs, spec.Pool)
	}
}

// The pool tree check walks ancestors: an ask within the leaf's max but
// above the parent's is rejected naming the parent.
func TestValidateJobAncestorMax(t *testing.T) {
	tree := pool.NewTree()
	var q pool.Quota
	if err := q.SetMax(pool.Resources{MemoryBytes: 1 << 30}, []string{"memory"}); err != nil {
		t.Fatal(err)
	}
	if err := tree.Put("org", q, true); err != nil {
		t.Fatal(err)
	}
	if err := tree.Put("org/team", pool.Unlimited, true); err != nil {
		t.Fatal(err)
	}
	spec := &pb.JobSpec{Pool: "org/team", Tasks: []*pb.TaskSpec{task("a", func(t *pb.TaskSpec) {
		t.Resources.MemoryBytes = 2 << 30
	})}}
	NormalizeJob(spec, DefaultDefaults)
	err := ValidateJob(spec, tree)
	if !errors.Is(err, ErrInvalidJob) || !strings.Contains(err.Error(), "ask above pool org's max: memory 2Gi > max 1Gi") {
		t.Fatalf("got %v", err)
	}
}

// The name checks are loops; the patterns they stand for are the spec.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	taskRE := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	functionRE := regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	names := []string{"", "a", "A", "0", "t0", "encode.chunk-1", "x:y", "a_b", ".a", "-a", "_a", ":a", "a b", "a/b",
		"a\x00", "é", "aé", "A-Z", "Zz9", "a..", "a::", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 200)}
	// Every two-byte string, so that each byte is tried first and after.
	for a := 0; a < 256; a++ {
		for _, b := range []byte{'a', 'Z', '5', '.', ':', '_', '-', '/', 0x80, byte(a)} {
			names = append(names, string([]byte{byte(a), b}), string([]byte{'a', byte(a), b}))
		}
	}
	for _, n := range names {
		if got, want := validTaskName(n), taskRE.MatchString(n); got != want {
			t.Errorf("validTaskName(%q) = %v, the pattern says %v", n, got, want)
		}
		if got, want := validFunctionName(n), functionRE.MatchString(n); got != want {
			t.Errorf("validFunctionName(%q) = %v, the pattern says %v", n, got, want)
		}
	}
}

// A submission makes at most limits.SubmitTasks tasks, arrays counted
// expanded: an entry of arrays over it is refused whole before anything
// is built; one without arrays is bound by its bytes and applies as it
// always did (old logs replay as they were).
func TestSubmissionTaskLimit(t *testing.T) {
	array := func(name string, n int32) *pb.JobSpec {
		return &pb.JobSpec{Name: name, Tasks: []*pb.TaskSpec{task("f", count(n))}}
	}
	if err := CheckSubmission([]*pb.JobSpec{array("a", limits.SubmitTasks/2), array("b", limits.SubmitTasks/2)}); err != nil {
		t.Fatalf("a submission at the limit: %v", err)
	}
	err := CheckSubmission([]*pb.JobSpec{array("a", limits.SubmitTasks/2), array("b", limits.SubmitTasks/2), {Tasks: []*pb.TaskSpec{task("c")}}})
	if !errors.Is(err, ErrInvalidJob) || !strings.Contains(err.Error(), "a submission of 1000001 tasks, more than the limit of 1000000") {
		t.Fatalf("one task over the limit: %v", err)
	}
	s := validationState(t)
	r := s.Apply(&fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{
		Jobs: []*pb.JobSpec{array("a", 600_000), array("b", 600_000)}}}})
	if !errors.Is(r.Err, ErrInvalidJob) || !strings.Contains(r.Err.Error(), "a submission of 1200000 tasks") || len(s.JobIDs()) != 0 {
		t.Fatalf("Apply of 1,200,000 tasks in arrays: %v, jobs %v", r.Err, s.JobIDs())
	}
}

// The bounds on after lists apply to lists that name arrays only: an array
// whose tasks each wait for tasks written out was taken by every version
// before, so a log holding one replays as it did, however many edges it
// makes.
func TestAfterBoundsOnlyOnArrayNames(t *testing.T) {
	deps := []*pb.TaskSpec{task("b"), task("c"), task("d"), task("e"), task("f")}
	written := append([]*pb.TaskSpec{task("a", count(MaxTasksPerJob-5), after("b", "c", "d", "e", "f"))}, deps...)
	if err := CheckArrays(written); err != nil {
		t.Fatalf("an array waiting for five tasks written out (%d edges): %v", taskarray.Edges(written), err)
	}
	named := []*pb.TaskSpec{task("a", count(3000)), task("z", count(3000), after("a"))}
	if err := CheckArrays(named); err == nil || !strings.Contains(err.Error(), "9000000 tasks, arrays counted expanded") {
		t.Fatalf("an array waiting for a whole array (9,000,000 edges): %v", err)
	}
}

// arrayTasksValid decides a job of arrays without expanding it, and must
// decide as the check of every task expanded does (checkTasks). Random
// jobs near every bound an index can tip (names of 128 characters, a
// command of 64 KiB, 1 MiB of strings a task, fallbacks named after their
// task) and with names that collide: the two agree on each, and the fast
// path decides a good share of them.
func TestArrayFastCheckAgreesWithExpanded(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 2026))
	pick := func(list ...string) string { return list[rng.IntN(len(list))] }
	long := func(n int) string { return strings.Repeat("n", n) }
	counts := []int32{0, 0, 1, 2, 9, 10, 11, 99, 100, 101, 1000}
	agree, fast := 0, 0
	for range 1000 {
		var tasks []*pb.TaskSpec
		for range 1 + rng.IntN(3) {
			ts := &pb.TaskSpec{Name: pick("a", "b", "a-1", "a-10", "b-0", "a-01", long(122), long(124), long(125), long(128), "x$"),
				Count: counts[rng.IntN(len(counts))], Resources: &pb.Resources{CpuMillis: 100}}
			switch rng.IntN(6) {
			case 0:
				ts.Command = []string{"run"}
			case 1:
				ts.Command = []string{"run", taskarray.Placeholder}
			case 2: // 64 KiB of placeholders, give or take: only the template may be too long
				ts.Command, ts.Count = []string{"enc", strings.Repeat(taskarray.Placeholder, 8190+rng.IntN(4))}, min(ts.Count, 11)
			case 3: // 64 KiB less room for 2 indexes of 1 to 3 digits, give or take one byte: the index tips it
				room := 2*(1+rng.IntN(3)) + rng.IntN(2)
				ts.Command = []string{"enc", strings.Repeat("9", 65536-3-room) + strings.Repeat(taskarray.Placeholder, 2)}
				ts.Count = min(ts.Count, 101)
			case 4: // about 1 MiB of env and workdir (a few tasks: each is expanded)
				ts.Command, ts.Count = []string{"enc"}, min(ts.Count, 2)
				ts.Env = map[string]string{"E": strings.Repeat("v", 1<<20-8-rng.IntN(8)) + taskarray.Placeholder}
				ts.Workdir = "/w/" + taskarray.Placeholder
			default:
				ts.Command = nil // invalid: no command
			}
			if rng.IntN(3) == 0 {
				ts.Fallback = &pb.TaskSpec{Command: []string{"cpu", taskarray.Placeholder}, Resources: &pb.Resources{CpuMillis: 100}}
			}
			tasks = append(tasks, ts)
		}
		spec := &pb.JobSpec{Name: "j", Tasks: tasks}
		NormalizeJob(spec, DefaultDefaults)
		if CheckArrays(spec.Tasks) != nil {
			continue
		}
		quick := arrayTasksValid(spec.Tasks)
		full := checkTasks(expandTasks(spec.Tasks)) == nil
		if quick && !full || taskarray.Has(spec.Tasks) && quick != full {
			t.Fatalf("fast check %v, expanded check %v, for %v", quick, full, summarize(spec.Tasks))
		}
		agree++
		if quick {
			fast++
		}
	}
	t.Logf("%d jobs checked both ways, %d decided by the fast check", agree, fast)
	if fast < agree/10 {
		t.Fatalf("the fast check decided %d of %d jobs: the generator misses it", fast, agree)
	}
}

// summarize describes specs by name, count and string lengths.
func summarize(specs []*pb.TaskSpec) string {
	var parts []string
	for _, ts := range specs {
		n := 0
		for _, a := range ts.Command {
			n += len(a)
		}
		parts = append(parts, fmt.Sprintf("%s(len %d) count %d command %d bytes fallback %v", ts.Name[:min(len(ts.Name), 8)],
			len(ts.Name), ts.Count, n, ts.Fallback != nil))
	}
	return strings.Join(parts, "; ")
}

// A named fallback of an array is refused when submitted (every task would
// share the name, and only the first to fall back would get it), and still
// applied from an entry already in a log.
func TestNamedArrayFallbackRefusedWhenSubmitted(t *testing.T) {
	spec := &pb.JobSpec{Name: "j", Tasks: []*pb.TaskSpec{task("enc", count(3), func(ts *pb.TaskSpec) {
		ts.Fallback = task("cpu")
	})}}
	NormalizeJob(spec, DefaultDefaults)
	err := CheckJob(spec)
	if err == nil || !strings.Contains(err.Error(), "job j: invalid job: task enc: fallback cpu: an array's fallbacks are named after each of its tasks (enc-0-fallback, ...)") {
		t.Fatalf("CheckJob: %v", err)
	}
	if _, err := checkJob(spec); err != nil {
		t.Fatalf("Apply's check refused an entry older versions took: %v", err)
	}
	spec.Tasks[0].Fallback.Name = ""
	if err := CheckJob(spec); err != nil {
		t.Fatalf("unnamed fallback: %v", err)
	}
}
