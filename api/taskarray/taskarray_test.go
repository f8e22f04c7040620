package taskarray

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/protobuf/proto"
)

func TestExpand(t *testing.T) {
	res := &pb.Resources{CpuMillis: 500}
	retry := &pb.RetryPolicy{MaxAttempts: 2}
	cons := []*pb.Constraint{{Label: "gpu", Value: "l4"}}
	arr := &pb.TaskSpec{Name: "f", Count: 3, Command: []string{"enc", "--frame=${INDEX}", "${INDEX}${INDEX}"},
		Env: map[string]string{"I": "${INDEX}", "K": "k"}, Workdir: "/w/${INDEX}", ExclusiveKey: "lock-${INDEX}",
		Resources: res, Retry: retry, Constraints: cons, After: []string{"plan"}, TimeoutMs: 7, FallbackAfterMs: 9,
		Fallback: &pb.TaskSpec{Command: []string{"cpu", "${INDEX}"}, Fallback: &pb.TaskSpec{Function: "fn", Args: []string{"${INDEX}"}}}}
	fn := &pb.TaskSpec{Name: "call", Count: 2, Function: "thumb", Args: []string{"--at", "${INDEX}s"}}
	one := &pb.TaskSpec{Name: "plan", Command: []string{"plan", "${INDEX}"}}
	single := &pb.TaskSpec{Name: "s", Count: 1, Command: []string{"x"}}

	got := Expand([]*pb.TaskSpec{one, arr, fn, single})
	want := []*pb.TaskSpec{one}
	for _, i := range []string{"0", "1", "2"} {
		want = append(want, &pb.TaskSpec{Name: "f-" + i, Command: []string{"enc", "--frame=" + i, i + i},
			Env: map[string]string{"I": i, "K": "k"}, Workdir: "/w/" + i, ExclusiveKey: "lock-" + i,
			Resources: res, Retry: retry, Constraints: cons, After: []string{"plan"}, TimeoutMs: 7, FallbackAfterMs: 9,
			Fallback: &pb.TaskSpec{Command: []string{"cpu", i}, Fallback: &pb.TaskSpec{Function: "fn", Args: []string{i}}}})
	}
	want = append(want,
		&pb.TaskSpec{Name: "call-0", Function: "thumb", Args: []string{"--at", "0s"}},
		&pb.TaskSpec{Name: "call-1", Function: "thumb", Args: []string{"--at", "1s"}},
		&pb.TaskSpec{Name: "s-0", Command: []string{"x"}})
	if len(got) != len(want) {
		t.Fatalf("%d tasks, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("task %d:\n%v\nwant\n%v", i, got[i], want[i])
		}
	}
	if got[0] != one {
		t.Error("a spec without a count was copied, not passed on")
	}
	// The array's own fields are shared, its fallbacks copied: expanding
	// must not change the array, and one task's fallback is its own.
	if got[1].Resources != res || got[1].Retry != retry || &got[1].Constraints[0] != &cons[0] {
		t.Error("resources, retry or constraints copied instead of shared")
	}
	if got[1].Fallback == got[2].Fallback || arr.Fallback.Command[1] != "${INDEX}" || arr.Count != 3 {
		t.Errorf("fallbacks shared or the array changed: %v", arr)
	}
	if n := Tasks([]*pb.TaskSpec{one, arr, fn, single, {Count: -4}}); n != 1+3+2+1+1 {
		t.Errorf("Tasks = %d, want 8", n)
	}
}

// A command or args without the placeholder are shared by the array's
// tasks, with no room to grow (a task may intern its strings in place,
// never append); one with it is each task's own.
func TestExpandSharesFixedLists(t *testing.T) {
	cmd := append(make([]string, 0, 8), "/bin/true", "--quiet")
	arr := &pb.TaskSpec{Name: "f", Count: 3, Command: cmd, Args: []string{"--at", "${INDEX}"}}
	got := Expand([]*pb.TaskSpec{arr})
	for i, ts := range got {
		if &ts.Command[0] != &cmd[0] || cap(ts.Command) != len(cmd) {
			t.Errorf("task %d: command copied or with room to grow (cap %d)", i, cap(ts.Command))
		}
		if &ts.Args[0] == &arr.Args[0] || ts.Args[1] != fmt.Sprint(i) {
			t.Errorf("task %d: args %v share the array's", i, ts.Args)
		}
	}
}

func TestExpandWithoutArrays(t *testing.T) {
	specs := []*pb.TaskSpec{{Name: "a"}, {Name: "b"}}
	if Has(specs) {
		t.Fatal("Has: true without a count")
	}
	if got := Expand(specs); &got[0] != &specs[0] {
		t.Fatal("Expand copied a list without arrays")
	}
	neg := []*pb.TaskSpec{{Name: "n", Count: -1}}
	if got := Expand(neg); len(got) != 1 || got[0] != neg[0] {
		t.Fatalf("a negative count (refused by validation) was expanded: %v", got)
	}
}

func TestJobs(t *testing.T) {
	jobs := []*pb.JobSpec{{Tasks: []*pb.TaskSpec{{Name: "a"}}}, nil, {Tasks: []*pb.TaskSpec{{Name: "f", Count: 4}, {Name: "b"}}}}
	if !InJobs(jobs) || InJobs(jobs[:2]) {
		t.Fatal("InJobs: wrong about which jobs hold an array")
	}
	if n := JobTasks(jobs); n != 6 {
		t.Fatalf("JobTasks = %d, want 6", n)
	}
	ExpandJobs(jobs)
	if len(jobs[2].Tasks) != 5 || jobs[2].Tasks[3].Name != "f-3" || len(jobs[0].Tasks) != 1 {
		t.Fatalf("ExpandJobs: %v", jobs)
	}
}

func TestExpandAfter(t *testing.T) {
	prep := &pb.TaskSpec{Name: "prep"}
	enc := &pb.TaskSpec{Name: "enc", Count: 3, After: []string{"prep"}}
	check := &pb.TaskSpec{Name: "check", Count: 3, After: []string{"prep", "enc-${INDEX}", "enc"}}
	concat := &pb.TaskSpec{Name: "concat", After: []string{"enc", "check-1", "prep"}}
	literal := &pb.TaskSpec{Name: "lit", After: []string{"enc-${INDEX}"}}
	// "x" is both a task written out and an array: the task wins.
	x, xs := &pb.TaskSpec{Name: "x"}, &pb.TaskSpec{Name: "x", Count: 2}
	y := &pb.TaskSpec{Name: "y", After: []string{"x", "x-1"}}
	specs := []*pb.TaskSpec{prep, enc, check, concat, literal, x, xs, y}

	got := map[string][]string{}
	for _, ts := range Expand(specs) {
		if len(ts.After) != cap(ts.After) {
			t.Errorf("%s: after list of length %d has capacity %d", ts.Name, len(ts.After), cap(ts.After))
		}
		got[ts.Name] = ts.After
	}
	want := map[string][]string{
		"prep": nil, "enc-0": {"prep"}, "enc-1": {"prep"}, "enc-2": {"prep"},
		"check-0": {"prep", "enc-0", "enc-0", "enc-1", "enc-2"},
		"check-1": {"prep", "enc-1", "enc-0", "enc-1", "enc-2"},
		"check-2": {"prep", "enc-2", "enc-0", "enc-1", "enc-2"},
		"concat":  {"enc-0", "enc-1", "enc-2", "check-1", "prep"},
		"lit":     {"enc-${INDEX}"}, // no index outside an array: validation refuses it
		"x":       nil, "x-0": nil, "x-1": nil, "y": {"x", "x-1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after lists:\n%v\nwant\n%v", got, want)
	}
	if &got["enc-0"][0] != &enc.After[0] || &got["enc-2"][0] != &enc.After[0] {
		t.Error("an array's tasks do not share an after list that names no array")
	}
	if concat.After[0] != "enc" || len(concat.After) != 3 || check.After[1] != "enc-${INDEX}" {
		t.Errorf("Expand changed the specs it was given: %v, %v", concat.After, check.After)
	}
	if n := Edges(specs); n != 3*1+3*5+5+1+2 {
		t.Errorf("Edges = %d, want %d", n, 3*1+3*5+5+1+2)
	}
}

func TestResolvesAfter(t *testing.T) {
	arr := func(name string, count int32, after ...string) *pb.TaskSpec {
		return &pb.TaskSpec{Name: name, Count: count, After: after}
	}
	for _, c := range []struct {
		name  string
		specs []*pb.TaskSpec
		want  bool
	}{
		{"no arrays", []*pb.TaskSpec{arr("a", 0), arr("b", 0, "a")}, false},
		{"array after a task", []*pb.TaskSpec{arr("a", 0), arr("b", 4, "a")}, false},
		{"a task after one task of an array", []*pb.TaskSpec{arr("a", 4), arr("b", 0, "a-3")}, false},
		{"a task after a whole array", []*pb.TaskSpec{arr("a", 4), arr("b", 0, "a")}, true},
		{"index in an array", []*pb.TaskSpec{arr("a", 4), arr("b", 4, "a-${INDEX}")}, true},
		{"index outside an array", []*pb.TaskSpec{arr("a", 4), arr("b", 0, "a-${INDEX}")}, false},
		{"a task and an array of one name", []*pb.TaskSpec{arr("a", 0), arr("a", 2), arr("b", 0, "a")}, false},
	} {
		if got := ResolvesAfter(c.specs); got != c.want {
			t.Errorf("%s: ResolvesAfter = %v, want %v", c.name, got, c.want)
		}
		jobs := []*pb.JobSpec{{Tasks: c.specs}}
		need := Needs(jobs)
		if got := slices.Contains(need, AfterFeature); got != c.want {
			t.Errorf("%s: Needs = %v", c.name, need)
		}
		if !Serves(Features, need) || (len(need) > 0 && Serves(nil, need)) {
			t.Errorf("%s: Serves is wrong about %v", c.name, need)
		}
	}
	if Serves([]string{Feature}, []string{Feature, AfterFeature}) {
		t.Error("a server without array_after serves a job that needs it")
	}
}

func TestLongestAfter(t *testing.T) {
	specs := []*pb.TaskSpec{{Name: "enc", Count: 12}, {Name: "check", Count: 12, After: []string{"enc-${INDEX}"}},
		{Name: "cat", After: []string{"enc", "check-3"}}}
	var want int64
	for _, ts := range Expand(specs) {
		if ts.Name == "cat" {
			want = int64((&pb.TaskSpec{After: ts.After}).SizeVT())
		}
	}
	if got, which := LongestAfter(specs); got != want || which != "cat" {
		t.Fatalf("LongestAfter = %d (%s), want %d (cat), the size of cat's list encoded", got, which, want)
	}
	for n, want := range map[int64]int64{0: 0, 1: 1, 10: 10, 12: 14, 100: 190, 1000: 2890, 1_000_000: 5_888_890} {
		if got := digits(n); got != want {
			t.Errorf("digits(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestCollides(t *testing.T) {
	spec := func(name string, count int32) *pb.TaskSpec { return &pb.TaskSpec{Name: name, Count: count} }
	for _, c := range []struct {
		specs []*pb.TaskSpec
		want  bool
	}{
		{[]*pb.TaskSpec{spec("a", 3), spec("b", 0), spec("a-3", 0)}, false}, // a-3 is past the array
		{[]*pb.TaskSpec{spec("a", 3), spec("a-2", 0)}, true},
		{[]*pb.TaskSpec{spec("a", 3), spec("a-02", 0), spec("a-+1", 0)}, false}, // not how Task writes an index
		{[]*pb.TaskSpec{spec("a", 3), spec("a", 0)}, false},                     // a-0... and a
		{[]*pb.TaskSpec{spec("a", 3), spec("a", 5)}, true},
		{[]*pb.TaskSpec{spec("b", 0), spec("b", 0)}, true},
		{[]*pb.TaskSpec{spec("a", 20), spec("a-1", 20)}, false}, // a-1-0 is no task of a
	} {
		if got := Collides(c.specs); got != c.want {
			var names []string
			for _, s := range c.specs {
				names = append(names, s.Name)
			}
			t.Errorf("Collides(%v) = %v, want %v", names, got, c.want)
		}
	}
}
