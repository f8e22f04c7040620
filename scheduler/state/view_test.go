package state

import (
	"strconv"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/protobuf/proto"
)

// TaskViews pages through a job's tasks in order, as JobView shows them
// (blocked reasons included), within its limit and its byte budget, always
// one task when any is left.
func TestTaskViewsPages(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
	job := &pb.JobSpec{Name: "pages"}
	for i := 0; i < 25; i++ {
		job.Tasks = append(job.Tasks, &pb.TaskSpec{Name: "t-" + strconv.Itoa(i), Command: []string{"true"},
			Resources: &pb.Resources{CpuMillis: 1000}})
	}
	job.Tasks[24].Constraints = []*pb.Constraint{{Label: "gpu", Op: "exists"}} // blocked: no agent has it
	f.submit(job)
	f.commitPlan() // one task placed on a1, the rest queued
	want := f.s.JobView("job-1", true).Tasks
	if want[24].BlockedReason == "" {
		t.Fatal("the constrained task has no blocked reason: the test shows nothing")
	}

	var got []*pb.Task
	for offset := 0; offset < 25; {
		page, total, pool, ok := f.s.TaskViews("job-1", offset, 10, 1<<20)
		if !ok || total != 25 || pool != DefaultPool {
			t.Fatalf("offset %d: ok %v, total %d, pool %q; want true, 25 and %q", offset, ok, total, pool, DefaultPool)
		}
		if want := min(10, 25-offset); len(page) != want {
			t.Fatalf("offset %d: %d tasks, want %d", offset, len(page), want)
		}
		got, offset = append(got, page...), offset+len(page)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("task %d paged\n%v\nwant as JobView shows it\n%v", i, got[i], want[i])
		}
	}

	size := proto.Size(want[3]) + proto.Size(want[4])
	if page, _, _, _ := f.s.TaskViews("job-1", 3, 100, size+16); len(page) != 2 {
		t.Errorf("a budget of two tasks' bytes gave %d tasks", len(page))
	}
	if page, _, _, _ := f.s.TaskViews("job-1", 3, 100, 1); len(page) != 1 || page[0].Id != want[3].Id {
		t.Errorf("a budget under one task gave %d tasks, want the one at the offset", len(page))
	}
	if page, total, _, ok := f.s.TaskViews("job-1", 25, 10, 1<<20); !ok || total != 25 || len(page) != 0 {
		t.Errorf("past the end: %d tasks, total %d, ok %v; want none, 25, true", len(page), total, ok)
	}
	if _, _, _, ok := f.s.TaskViews("job-9", 0, 10, 1<<20); ok {
		t.Error("a job that does not exist was found")
	}
}
