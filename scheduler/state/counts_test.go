package state

import (
	"fmt"
	"reflect"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// Counts sums the jobs' counts; the queue depth by pool and class matches
// the queue; FirstStart and AttemptRecord follow an attempt's life.
func TestCountsAndFirstStart(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.agentUp("a1", &pb.Resources{CpuMillis: 1000}, nil)
	task := func() *pb.TaskSpec {
		return &pb.TaskSpec{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}}
	}
	f.submit(&pb.JobSpec{Class: pb.JobClass_JOB_CLASS_LATENCY, Tasks: []*pb.TaskSpec{task(), task()}},
		&pb.JobSpec{Class: pb.JobClass_JOB_CLASS_BATCH, Tasks: []*pb.TaskSpec{task()}})
	tasks, queued, jobs := f.s.Counts()
	if tasks.Queued != 3 || tasks.Running != 0 || jobs[pb.JobState_JOB_STATE_QUEUED] != 2 {
		t.Fatalf("after submit: %+v %v", tasks, jobs)
	}
	if n := queued[PoolClass{DefaultPool, pb.JobClass_JOB_CLASS_LATENCY}]; n != 2 {
		t.Errorf("latency depth %d, want 2", n)
	}
	if n := queued[PoolClass{DefaultPool, pb.JobClass_JOB_CLASS_BATCH}]; n != 1 {
		t.Errorf("batch depth %d, want 1", n)
	}
	if int(tasks.Queued) != f.s.QueueLen() {
		t.Errorf("queued %d, queue holds %d", tasks.Queued, f.s.QueueLen())
	}
	placed := f.commitPlan()
	if len(placed) != 1 {
		t.Fatalf("placed %v", placed)
	}
	id := placed[0].TaskId
	first, submitted, class, ok := f.s.FirstStart(id)
	if !ok || !first || submitted != 1000 || class != pb.JobClass_JOB_CLASS_LATENCY {
		t.Fatalf("FirstStart before start: %v %d %v %v", first, submitted, class, ok)
	}
	f.now = 1500
	f.finish(id, "succeeded", 0)
	if first, _, _, _ := f.s.FirstStart(id); first {
		t.Error("FirstStart after the attempt ran still says first")
	}
	if a := f.s.AttemptRecord(id, 1); a == nil || a.Outcome != "succeeded" || a.StartedUnixMs != 1500 {
		t.Errorf("attempt record %v", a)
	}
	if a := f.s.AttemptRecord(id, 2); a != nil {
		t.Errorf("attempt 2 of a task with one: %v", a)
	}
	tasks, queued, _ = f.s.Counts()
	if tasks.Queued != 2 || tasks.Succeeded != 1 || queued[PoolClass{DefaultPool, pb.JobClass_JOB_CLASS_LATENCY}] != 1 {
		t.Errorf("after one finished: %+v %v", tasks, queued)
	}
}

// BenchmarkCounts measures one scrape's read of a state holding 100k
// one-task jobs (the worst case: Counts is O(jobs)).
func BenchmarkCounts(b *testing.B) {
	s := New(DefaultDefaults)
	for i := 0; i < 100; i++ {
		var jobs []*pb.JobSpec
		for j := 0; j < 1000; j++ {
			jobs = append(jobs, &pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}})
		}
		if r := s.Apply(&fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: jobs}}}); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tasks, _, _ := s.Counts()
		if tasks.Queued != 100_000 {
			b.Fatalf("queued %d", tasks.Queued)
		}
	}
}

// tallyErrors compares the tally the state keeps with a recount from the
// jobs (part of checkInvariants, run after every command in the tests).
func tallyErrors(s *State) []string {
	want := s.countTally()
	var errs []string
	if s.tally.tasks != want.tasks {
		errs = append(errs, fmt.Sprintf("task tally %+v, jobs count %+v", s.tally.tasks, want.tasks))
	}
	if got, w := copyNonZero(s.tally.queued), copyNonZero(want.queued); !reflect.DeepEqual(got, w) {
		errs = append(errs, fmt.Sprintf("queued tally %v, jobs count %v", got, w))
	}
	if got, w := copyNonZero(s.tally.jobs), copyNonZero(want.jobs); !reflect.DeepEqual(got, w) {
		errs = append(errs, fmt.Sprintf("job tally %v, jobs count %v", got, w))
	}
	return errs
}
