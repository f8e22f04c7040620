package state

import (
	"fmt"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestSnapshotKeepsFanOutOrder: job-1's plan fans out after job-2 was
// submitted, so its new tasks are numbered after job-2's. A snapshot round
// trip must keep every task's number, so the queue (and the plan) keeps
// the order it had: before, the restore renumbered fan-out tasks from
// their job's number and moved them ahead of job-2, giving two tasks the
// same number.
func TestSnapshotKeepsFanOutOrder(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 100, MemoryBytes: 1 << 30}, nil)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{oneTask("plan")}}) // job-1
	f.commitPlan()                                                // plan runs on the only slot
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{oneTask("b0"), oneTask("b1")}})
	var tasks string
	for i := range 3 {
		if i > 0 {
			tasks += ","
		}
		tasks += fmt.Sprintf(`{"name":"fan%d","command":["true"]}`, i)
	}
	f.finishWith("job-1.0", "succeeded", `{"tasks":[`+tasks+`]}`)
	before := queueOrder(f.s)
	if len(before) != 5 {
		t.Fatalf("queue %v, want job-2's two tasks and the three fanned out", before)
	}
	s2, err := roundTrip(f.s)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := compareStates(f.s, s2, f.now); len(diffs) > 0 {
		t.Fatalf("round trip differs: %v", diffs)
	}
	after := queueOrder(s2)
	for i := range before {
		if before[i].TaskID != after[i].TaskID {
			t.Fatalf("queue order changed by a snapshot:\n before %v\n after  %v", before, after)
		}
	}
	seen := map[uint64]string{}
	for id, tk := range allTasks(s2) {
		if other, dup := seen[tk.Seq]; dup {
			t.Fatalf("tasks %s and %s share sequence %d", id, other, tk.Seq)
		}
		seen[tk.Seq] = id
	}
	if before[0].TaskID != "job-2.0" {
		t.Fatalf("queue starts with %s, want job-2.0 (submitted before the fan-out)", before[0].TaskID)
	}
}
