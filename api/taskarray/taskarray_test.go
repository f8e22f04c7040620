package taskarray

import (
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
