package main

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// titleJob is a finished title whose NVENC chunk fell back to CPU after a
// decode error, and whose other chunk was retried after an encoder error.
func titleJob() *pb.Job {
	return &pb.Job{Id: "job-1", Name: "title", State: pb.JobState_JOB_STATE_SUCCEEDED,
		Counts: &pb.TaskCounts{Total: 3, Succeeded: 2, Replaced: 1},
		Tasks: []*pb.Task{
			{Id: "job-1.0", Name: "enc-1080p-3", State: pb.TaskState_TASK_STATE_FAILED, ReplacedBy: "job-1.2",
				Attempts: []*pb.Attempt{{Number: 1, AgentId: "a1", Outcome: "failed", ExitCode: 66,
					FailureClass: "decode_error", Error: "exit status 66"}}},
			{Id: "job-1.1", Name: "enc-1080p-4", State: pb.TaskState_TASK_STATE_SUCCEEDED,
				Attempts: []*pb.Attempt{
					{Number: 1, AgentId: "a1", Outcome: "failed", ExitCode: 68, FailureClass: "encoder_error"},
					{Number: 2, AgentId: "a1", Outcome: "succeeded"}}},
			{Id: "job-1.2", Name: "enc-1080p-3-cpu", State: pb.TaskState_TASK_STATE_SUCCEEDED,
				Attempts: []*pb.Attempt{{Number: 1, AgentId: "a1", Outcome: "succeeded"}}},
		}}
}

// TestJobShowReplacedAndClasses: job show counts a task its fallback took
// over as replaced, not failed; shows it as replaced, naming the fallback;
// and shows each failed attempt's class.
func TestJobShowReplacedAndClasses(t *testing.T) {
	var out bytes.Buffer
	printJob(&out, titleJob())
	text := out.String()
	if !strings.Contains(text, "2 succeeded, 1 replaced by fallback, 0 failed, 0 cancelled") {
		t.Errorf("counts line wrong:\n%s", text)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && strings.HasPrefix(f[0], "enc-") {
			rows[f[0]+"#"+f[2]] = line
		}
	}
	for key, want := range map[string]*regexp.Regexp{
		"enc-1080p-3#1":     regexp.MustCompile(`^enc-1080p-3 +replaced +1 .* failed +decode_error +66 +exit status 66; replaced by enc-1080p-3-cpu$`),
		"enc-1080p-4#1":     regexp.MustCompile(`^enc-1080p-4 +succeeded +1 .* failed +encoder_error +68 *$`),
		"enc-1080p-4#2":     regexp.MustCompile(`^enc-1080p-4 +succeeded +2 .* succeeded +- +0 *$`),
		"enc-1080p-3-cpu#1": regexp.MustCompile(`^enc-1080p-3-cpu +succeeded +1 .* succeeded +- +0 *$`),
	} {
		if !want.MatchString(rows[key]) {
			t.Errorf("row %s = %q, want it to match %s\n%s", key, rows[key], want, text)
		}
	}
}

// TestJobShowWaitingNotes: a waiting task's note says how many of its
// after tasks have not succeeded yet, naming the first few; a task its
// fallback took over counts as the fallback.
func TestJobShowWaitingNotes(t *testing.T) {
	task := func(id, name string, st pb.TaskState, after ...string) *pb.Task {
		return &pb.Task{Id: id, Name: name, State: st, Spec: &pb.TaskSpec{After: after}}
	}
	const ok, waiting, queued = pb.TaskState_TASK_STATE_SUCCEEDED, pb.TaskState_TASK_STATE_WAITING, pb.TaskState_TASK_STATE_QUEUED
	replaced := task("j.1", "enc-1", pb.TaskState_TASK_STATE_FAILED)
	replaced.ReplacedBy = "j.9"
	tasks := []*pb.Task{
		task("j.0", "enc-0", ok), replaced, task("j.2", "enc-2", queued), task("j.3", "enc-3", queued),
		task("j.4", "enc-4", queued), task("j.5", "enc-5", queued), task("j.9", "enc-1-fallback", queued),
		task("j.6", "cat", waiting, "enc-0", "enc-1", "enc-2", "enc-3", "enc-4", "enc-5"),
		task("j.7", "check-0", waiting, "enc-0", "enc-1"),
		task("j.8", "ready", waiting, "enc-0"),
	}
	w := newWaitNotes(tasks)
	for name, want := range map[string]string{
		"cat":     "waits for 5 of 6: enc-1-fallback, enc-2, enc-3, …",
		"check-0": "waits for 1 of 2: enc-1-fallback",
		"ready":   "",
	} {
		if got := w.note(w.byName[name]); got != want {
			t.Errorf("%s: note %q, want %q", name, got, want)
		}
	}
	var out bytes.Buffer
	printJob(&out, &pb.Job{Id: "j", Counts: &pb.TaskCounts{}, Tasks: tasks})
	if !regexp.MustCompile(`(?m)^check-0 +waiting +- .* waits for 1 of 2: enc-1-fallback$`).MatchString(out.String()) {
		t.Errorf("job show does not print check-0's note:\n%s", out.String())
	}
}

// TestJobProgressCountsReplaced: the encode progress and the job list count
// replaced tasks as done, so a title whose chunks fell back reaches 3/3.
func TestJobProgressCountsReplaced(t *testing.T) {
	j := titleJob()
	if got := doneCount(j.Counts); got != 3 {
		t.Fatalf("doneCount = %d, want 3", got)
	}
	line := progressLine("title", j, j.Tasks)
	if !strings.Contains(line, "3/3") || !strings.Contains(line, "["+strings.Repeat("#", 30)+"]") {
		t.Fatalf("progress line %q: want a full bar at 3/3", line)
	}
}

// submitBatches keeps jobs whole and in order, each run within the budget
// unless one job alone fills it, and refuses a job larger than a server
// takes, naming it.
func TestSubmitBatches(t *testing.T) {
	job := func(name string, tasks int) *pb.JobSpec {
		spec := &pb.JobSpec{Name: name}
		for i := 0; i < tasks; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Name: "t-" + strconv.Itoa(i), Command: []string{"true"}})
		}
		return spec
	}
	specs := []*pb.JobSpec{job("a", 10), job("b", 10), job("c", 40), job("d", 1), job("e", 10)}
	one := specs[0].SizeVT()
	runs, err := submitBatches(specs, 2*one)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, run := range runs {
		var names []string
		size := 0
		for _, s := range run {
			names, size = append(names, s.Name), size+s.SizeVT()
		}
		if size > 2*one && len(run) > 1 {
			t.Errorf("run %v is %d bytes, over the budget of %d", names, size, 2*one)
		}
		got = append(got, names)
	}
	want := [][]string{{"a", "b"}, {"c"}, {"d", "e"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("runs %v, want %v", got, want)
	}
	if runs, err := submitBatches(specs, submitBatchBytes); err != nil || len(runs) != 1 {
		t.Errorf("small jobs in %d runs (%v), want one call", len(runs), err)
	}

	// Arrays count expanded: a call makes at most limits.SubmitTasks.
	array := func(name string, n int32) *pb.JobSpec {
		return &pb.JobSpec{Name: name, Tasks: []*pb.TaskSpec{{Name: "f", Count: n, Command: []string{"true"}}}}
	}
	arrays := []*pb.JobSpec{array("x", limits.SubmitTasks/2), array("y", limits.SubmitTasks/2), array("z", 1), specs[0]}
	runs, err = submitBatches(arrays, submitBatchBytes)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, run := range runs {
		var names []string
		for _, s := range run {
			names = append(names, s.Name)
		}
		got = append(got, names)
	}
	if want := [][]string{{"x", "y"}, {"z", "a"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("runs of arrays %v, want %v", got, want)
	}

	big := job("huge", 1)
	big.Tasks[0].Command = []string{strings.Repeat("x", limits.JobSpecBytes)}
	_, err = submitBatches([]*pb.JobSpec{specs[0], big}, submitBatchBytes)
	if err == nil || !strings.Contains(err.Error(), "job huge: 1 tasks make a job spec of ") ||
		!strings.Contains(err.Error(), "more than the limit of 8388608 (8MiB) per job") {
		t.Errorf("error %v, want one naming job huge and the 8MiB limit", err)
	}
	big.Name = ""
	if _, err := submitBatches([]*pb.JobSpec{specs[0], big}, submitBatchBytes); err == nil || !strings.Contains(err.Error(), "job #2:") {
		t.Errorf("error %v, want one naming the unnamed job by its place (#2)", err)
	}
}

// versionServer answers Version with the features it is given.
type versionServer struct {
	pb.UnimplementedClusterServiceServer
	features []string
}

func (v versionServer) Version(context.Context, *pb.VersionRequest) (*pb.VersionResponse, error) {
	return &pb.VersionResponse{Version: "test", Features: v.features}, nil
}

// sched job submit sends an array as one spec to a server that expands
// counts, and expands it itself for one that does not list the feature
// (an older server would make one task of it); a file without arrays
// costs no Version call.
func TestExpandArraysFor(t *testing.T) {
	serve := func(features []string) *client {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		pb.RegisterClusterServiceServer(srv, versionServer{features: features})
		go srv.Serve(lis) // owned by this test: stopped at cleanup
		t.Cleanup(srv.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return &client{cluster: pb.NewClusterServiceClient(conn)}
	}
	specs := func() []*pb.JobSpec {
		return []*pb.JobSpec{{Name: "j", Tasks: []*pb.TaskSpec{{Name: "f", Count: 3, Command: []string{"r", "${INDEX}"}}}}}
	}
	ctx := context.Background()

	compact := specs()
	if err := expandArraysFor(ctx, serve([]string{"other", taskarray.Feature}), compact); err != nil {
		t.Fatal(err)
	}
	if ts := compact[0].Tasks; len(ts) != 1 || ts[0].Count != 3 {
		t.Fatalf("sent to a server that expands counts: %v, want the array as one spec", ts)
	}

	old := specs()
	if err := expandArraysFor(ctx, serve(nil), old); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ts := range old[0].Tasks {
		got = append(got, ts.Name+":"+strings.Join(ts.Command, " "))
	}
	if strings.Join(got, ",") != "f-0:r 0,f-1:r 1,f-2:r 2" {
		t.Fatalf("sent to an older server: %v, want the array's three tasks", got)
	}

	// An after list naming the array: sent as it is to a server that
	// resolves it, written out for one that only expands counts.
	deps := func() []*pb.JobSpec {
		return []*pb.JobSpec{{Name: "j", Tasks: []*pb.TaskSpec{{Name: "f", Count: 2, Command: []string{"r"}},
			{Name: "cat", Command: []string{"c"}, After: []string{"f"}}}}}
	}
	now := deps()
	if err := expandArraysFor(ctx, serve(taskarray.Features), now); err != nil {
		t.Fatal(err)
	}
	if ts := now[0].Tasks; len(ts) != 2 || ts[1].After[0] != "f" {
		t.Fatalf("sent to a server that resolves arrays in after lists: %v", ts)
	}
	countsOnly := deps()
	if err := expandArraysFor(ctx, serve([]string{taskarray.Feature}), countsOnly); err != nil {
		t.Fatal(err)
	}
	if ts := countsOnly[0].Tasks; len(ts) != 3 || strings.Join(ts[2].After, ",") != "f-0,f-1" {
		t.Fatalf("sent to a server without %s: %v, want the array written out", taskarray.AfterFeature, ts)
	}

	// Past the bounds the newer server would check: refused here, before
	// anything is written out (each task of b would get its own list of
	// 1,002 names, 4,008,000 in all).
	huge := []*pb.JobSpec{{Name: "big", Tasks: []*pb.TaskSpec{{Name: "a", Count: 1001, Command: []string{"r"}},
		{Name: "c", Count: 4000, Command: []string{"r"}},
		{Name: "b", Count: 4000, Command: []string{"r"}, After: []string{"a", "c-${INDEX}"}}}}}
	err := expandArraysFor(ctx, serve([]string{taskarray.Feature}), huge)
	if err == nil || !strings.Contains(err.Error(), "job big: the after lists name 4008000 tasks") {
		t.Fatalf("an array after lists past the bound for an older server: %v, want the bound named", err)
	}
	if len(huge[0].Tasks) != 3 {
		t.Fatalf("refused, but written out to %d tasks first", len(huge[0].Tasks))
	}

	// No array: no call (this client has no server behind it).
	plain := []*pb.JobSpec{{Name: "p", Tasks: []*pb.TaskSpec{{Name: "a", Command: []string{"x"}}}}}
	if err := expandArraysFor(ctx, &client{}, plain); err != nil {
		t.Fatal(err)
	}
}
