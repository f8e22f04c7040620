package server_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestGCRemovesEveryDueJobInBatches: one retention round lists the
// finished jobs once and removes all that are due, 1,000 a raft entry,
// keeping the newest finished: 2,500 cancelled jobs and at most 100 kept
// leave the last 100 cancelled.
func TestGCRemovesEveryDueJobInBatches(t *testing.T) {
	s, c := startOneNodeFarm(t)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 2500
	jobs := make([]*pb.JobSpec, n)
	for i := range jobs {
		jobs[i] = &pb.JobSpec{Name: fmt.Sprint("j", i), Tasks: []*pb.TaskSpec{{Command: []string{"x"},
			Constraints: []*pb.Constraint{{Label: "nowhere"}}}}}
	}
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range resp.Jobs {
		if _, err := c.CancelJob(ctx, &pb.CancelJobRequest{Id: j.Id}); err != nil {
			t.Fatal(err)
		}
	}
	op := pb.NewOperatorServiceClient(dialConn(t, s.Addr()))
	gc, err := op.GCJobs(ctx, &pb.GCJobsRequest{MaxJobs: 100})
	if err != nil || gc.Removed != n-100 {
		t.Fatalf("gc keeping 100: %v, %v; want %d removed", gc, err, n-100)
	}
	list, err := c.ListJobs(ctx, &pb.ListJobsRequest{Limit: n})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range list.Jobs {
		names = append(names, j.Name)
	}
	sort.Strings(names)
	if len(names) != 100 || names[0] != "j2400" || names[99] != "j2499" {
		t.Fatalf("kept %d jobs (%v ... ), want j2400 to j2499, the last cancelled", len(names), names[:min(3, len(names))])
	}
}
