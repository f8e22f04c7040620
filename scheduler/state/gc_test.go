package state

import (
	"reflect"
	"slices"
	"strconv"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// A GC entry says, by agent, which removed jobs ran there (their output is
// kept there): a job on two agents is named to both, a job that never ran
// to none, and a job still running is not removed.
func TestGCSaysWhereRemovedJobsRan(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, map[string]string{"x": "1"})
	f.agentUp("a2", &pb.Resources{CpuMillis: 1000}, map[string]string{"y": "1"})
	on := func(label string) []*pb.Constraint { return []*pb.Constraint{{Label: label, Op: "exists"}} }
	task := func(name, label string) *pb.TaskSpec {
		return &pb.TaskSpec{Name: name, Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}, Constraints: on(label)}
	}
	f.submit(&pb.JobSpec{Name: "both", Tasks: []*pb.TaskSpec{task("t1", "x"), task("t2", "y")}}) // job-1
	f.commitPlan()
	for _, id := range []string{"job-1.0", "job-1.1"} {
		f.finish(id, "succeeded", 0)
	}
	f.submit(&pb.JobSpec{Name: "one", Tasks: []*pb.TaskSpec{task("t", "x")}}) // job-2
	f.commitPlan()
	f.finish("job-2.0", "succeeded", 0)
	f.submit(&pb.JobSpec{Name: "never", Tasks: []*pb.TaskSpec{task("t", "nowhere")}}) // job-3
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-3"}}})
	f.submit(&pb.JobSpec{Name: "running", Tasks: []*pb.TaskSpec{task("t", "y")}}) // job-4
	f.commitPlan()

	r := f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_GcJobs{GcJobs: &fsmpb.GCJobs{JobIds: []string{"job-1", "job-2", "job-3", "job-4"}}}})
	if !slices.Equal(r.Removed, []string{"job-1", "job-2", "job-3"}) {
		t.Fatalf("removed %v, want the three finished jobs", r.Removed)
	}
	if want := map[string][]string{"a1": {"job-1", "job-2"}, "a2": {"job-1"}}; !reflect.DeepEqual(r.RemovedFrom, want) {
		t.Fatalf("removed from %v, want %v", r.RemovedFrom, want)
	}
}

func TestAgentSet(t *testing.T) {
	var a agentSet
	var want []string
	for i := range 100 {
		id := "a" + strconv.Itoa(i%40)
		if i < 40 {
			want = append(want, id)
		}
		a.add(id)
		a.add("")
	}
	if !slices.Equal(a.list, want) {
		t.Fatalf("agentSet holds %v, want the 40 ids once each in the order added", a.list)
	}
}
