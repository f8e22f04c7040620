package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestArraysThroughLeaderAndFollower: an array (a task spec with a count)
// submitted to the leader or to a follower becomes its tasks, named and
// indexed, a task naming the array waits for all of it, and the array goes
// to the leader as one spec (a leader that expands
// arrays takes one larger than a job may be written out); servers say
// they expand counts; a submission over the task limit is refused by the
// follower before it forwards anything.
func TestArraysThroughLeaderAndFollower(t *testing.T) {
	s1, s2 := startLeaderAndFollower(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []*server.Server{s1, s2} {
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		v, err := pb.NewClusterServiceClient(conn).Version(ctx, &pb.VersionRequest{})
		if err != nil || !slices.Equal(v.Features, taskarray.Features) {
			t.Fatalf("%s: version %v, %v: want the features %q", s.Addr(), v, err, taskarray.Features)
		}
		jobs := pb.NewJobServiceClient(conn)
		array := &pb.JobSpec{Name: "frames", Tasks: []*pb.TaskSpec{
			{Name: "f", Count: 1500, Command: []string{"render", "--frame", "${INDEX}"}, Resources: &pb.Resources{CpuMillis: 100}},
			{Name: "join", Command: []string{"concat"}, After: []string{"f"}, Resources: &pb.Resources{CpuMillis: 100}}}}
		resp, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{array}})
		if err != nil {
			t.Fatalf("submit to %s: %v", s.Addr(), err)
		}
		if n := resp.Jobs[0].Counts.GetTotal(); n != 1501 {
			t.Fatalf("submit to %s: %d tasks, want 1501", s.Addr(), n)
		}
		page, err := jobs.ListTasks(ctx, &pb.ListTasksRequest{JobId: resp.Jobs[0].Id, Offset: 1234, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if tk := page.Tasks[0]; tk.Name != "f-1234" || !slices.Equal(tk.Spec.Command, []string{"render", "--frame", "1234"}) {
			t.Fatalf("submit to %s: task 1234 is %s %v", s.Addr(), tk.Name, tk.Spec.GetCommand())
		}
		// join names the array: it waits for each of its 1,500 tasks.
		page, err = jobs.ListTasks(ctx, &pb.ListTasksRequest{JobId: resp.Jobs[0].Id, Offset: 1500, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if tk := page.Tasks[0]; tk.Name != "join" || tk.State != pb.TaskState_TASK_STATE_WAITING || len(tk.Spec.After) != 1500 || tk.Spec.After[1499] != "f-1499" {
			t.Fatalf("submit to %s: join is %s %v, waiting for %d tasks", s.Addr(), tk.Name, tk.State, len(tk.Spec.GetAfter()))
		}

		// 5,000 tasks of a 2 KiB argument: 10 MB written out, more than a
		// job may be (8 MiB), so a follower that expanded it before
		// forwarding would see it refused; sent as one spec it goes in.
		wide := &pb.JobSpec{Name: "wide", Tasks: []*pb.TaskSpec{{Name: "w", Count: 5000,
			Command: []string{"render", strings.Repeat("a", 2048), "${INDEX}"}, Resources: &pb.Resources{CpuMillis: 100}}}}
		if resp, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{wide}}); err != nil || resp.Jobs[0].Counts.GetTotal() != 5000 {
			t.Fatalf("submit of 5,000 tasks of 2 KiB to %s: %v, %v", s.Addr(), resp, err)
		}

		bad := &pb.JobSpec{Name: "bad", Tasks: []*pb.TaskSpec{{Name: "f", Count: 2_000_000, Command: []string{"x"}}}}
		_, err = jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{bad}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "2000000 tasks, more than the limit") {
			t.Fatalf("submit of 2,000,000 tasks to %s: %v, want InvalidArgument naming the limit", s.Addr(), err)
		}
	}
	list, err := dialClient(t, s1.Addr()).ListJobs(ctx, &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(len(list.Jobs)); got != "4" {
		t.Fatalf("%s jobs, want the four arrays", got)
	}
}

// TestSubmitRefusesTheFirstBadJob: a submission's checks run in two steps
// (each job on its own outside the state's lock, then against the pools
// under it), and the error still names the first job at fault, as Apply
// would, whichever step finds it; nothing is submitted.
func TestSubmitRefusesTheFirstBadJob(t *testing.T) {
	s, c := startOneNodeFarm(t)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	task := &pb.TaskSpec{Name: "t", Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 100}}
	good := &pb.JobSpec{Name: "good", Tasks: []*pb.TaskSpec{task}}
	nowhere := &pb.JobSpec{Name: "nowhere", Pool: "no/such/pool", Tasks: []*pb.TaskSpec{task}}
	loop := &pb.JobSpec{Name: "loop", Tasks: []*pb.TaskSpec{{Name: "a", Count: 3, Command: []string{"x"}, After: []string{"a"}}}}
	for _, tc := range []struct {
		jobs []*pb.JobSpec
		want string
	}{
		{[]*pb.JobSpec{good, nowhere, loop}, `job nowhere: invalid job: unknown pool "no/such/pool"`},
		{[]*pb.JobSpec{good, loop, nowhere}, "job loop: invalid job: task a-0: waits for itself"},
	} {
		jobs := make([]*pb.JobSpec, len(tc.jobs))
		for i, j := range tc.jobs {
			jobs[i] = proto.Clone(j).(*pb.JobSpec)
		}
		_, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: jobs})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("submit of %s, %s, %s: %v; want InvalidArgument: %s", jobs[0].Name, jobs[1].Name, jobs[2].Name, err, tc.want)
		}
	}
	if list, err := c.ListJobs(ctx, &pb.ListJobsRequest{}); err != nil || len(list.Jobs) != 0 {
		t.Fatalf("jobs after refused submissions: %v, %v", list, err)
	}
}
