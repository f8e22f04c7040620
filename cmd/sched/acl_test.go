package main

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestPrintTreeWithoutParent draws pools whose parent an ACL hides as tops.
func TestPrintTreeWithoutParent(t *testing.T) {
	var out bytes.Buffer
	printTree(&out, &pb.ListPoolsResponse{Cluster: &pb.Resources{}, Pools: []*pb.Pool{
		{Path: "studio/ingest"}, {Path: "studio/ingest/dailies"}, {Path: "studio/marketing"}}})
	for _, want := range []string{"ingest", "└─ dailies", "marketing"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("tree lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPrintJobShowsSubmitter names the submitting token in job show.
func TestPrintJobShowsSubmitter(t *testing.T) {
	var out bytes.Buffer
	printJob(&out, &pb.Job{Id: "job-1", Counts: &pb.TaskCounts{},
		Submitter: &pb.Submitter{AccessorId: "4f1c", Name: "ci"}})
	if !strings.Contains(out.String(), "submitted by ci (accessor 4f1c)") {
		t.Fatalf("job show lacks the submitter:\n%s", out.String())
	}
}
