package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeLog stands in for raft and the state machine: it commits submit
// commands in order, rejects a whole entry that holds a job named "bad"
// (as Apply does), and can hold proposals until released.
type fakeLog struct {
	mu      sync.Mutex
	entries [][]string // job names of each committed entry
	nextID  int
	applied int
	gate    chan struct{} // nil: proposals go through at once
	waiting atomic.Int32  // proposals held at the gate
	failAll error         // a commit error for every proposal
}

func (f *fakeLog) propose(cmd *fsmpb.Command) (*state.Result, error) {
	if f.gate != nil {
		f.waiting.Add(1)
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return nil, f.failAll
	}
	sub := cmd.GetSubmit()
	var names []string
	for _, j := range sub.Jobs {
		if j.Name == "bad" {
			return &state.Result{Err: fmt.Errorf("%w: job %q", state.ErrInvalidJob, j.Name)}, nil
		}
		names = append(names, j.Name)
	}
	f.entries = append(f.entries, names)
	r := &state.Result{}
	for i, j := range sub.Jobs {
		f.nextID++
		r.Jobs = append(r.Jobs, &pb.Job{Id: fmt.Sprintf("job-%d", f.nextID), Name: j.Name, TraceId: sub.TraceIds[i]})
		r.Existing = append(r.Existing, false)
	}
	return r, nil
}

func (f *fakeLog) after(*state.Result) {
	f.mu.Lock()
	f.applied++
	f.mu.Unlock()
}

func startBatcher(t *testing.T, f *fakeLog) (*submitBatcher, func()) {
	t.Helper()
	b := newSubmitBatcher(f.propose, f.after, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.run(ctx)
	}()
	return b, func() {
		cancel()
		<-done
	}
}

func oneJob(name, trace string) *fsmpb.SubmitJobs {
	return &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{Name: name}}, TraceIds: []string{trace}, TraceSpanIds: []string{""}}
}

type callResult struct {
	jobs []*pb.Job
	err  error
}

// submitAll starts one call per name and returns a channel per call.
func submitAll(b *submitBatcher, subs []*fsmpb.SubmitJobs) []chan callResult {
	out := make([]chan callResult, len(subs))
	for i, sub := range subs {
		out[i] = make(chan callResult, 1)
		go func() {
			jobs, _, err := b.submit(context.Background(), sub)
			out[i] <- callResult{jobs, err}
		}()
	}
	return out
}

func waitQueued(t *testing.T, b *submitBatcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.in)+int(b.waiting.Load()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", len(b.in)+int(b.waiting.Load()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdEntry proposes one small call and holds it at the gate, so that the
// small calls after it wait.
func holdEntry(t *testing.T, b *submitBatcher, f *fakeLog) []chan callResult {
	t.Helper()
	out := submitAll(b, []*fsmpb.SubmitJobs{oneJob("hold", "")})
	waitProposed(t, f, 1)
	return out
}

// releaseAll opens the gate and waits for every call, which must succeed.
func releaseAll(t *testing.T, f *fakeLog, calls []chan callResult) {
	t.Helper()
	close(f.gate)
	for _, ch := range calls {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// waitProposed waits until n proposals are held at the gate.
func waitProposed(t *testing.T, f *fakeLog, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.waiting.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d proposals in flight, want %d", f.waiting.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSubmitBatcherMergesWaitingCalls: while the entries in flight are
// held, later calls queue; released, they leave in one entry and each call
// gets its own job back.
func TestSubmitBatcherMergesWaitingCalls(t *testing.T) {
	f := &fakeLog{gate: make(chan struct{})}
	b, stop := startBatcher(t, f)
	defer stop()
	holdRes := holdEntry(t, b, f)
	var later []*fsmpb.SubmitJobs
	for i := range 50 {
		later = append(later, oneJob(fmt.Sprintf("later-%d", i), fmt.Sprintf("u%d", i)))
	}
	laterRes := submitAll(b, later)
	waitQueued(t, b, 50)
	close(f.gate)
	for _, ch := range holdRes {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
	for i, ch := range laterRes {
		r := <-ch
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		want := later[i]
		if len(r.jobs) != 1 || r.jobs[0].Name != want.Jobs[0].Name || r.jobs[0].TraceId != want.TraceIds[0] {
			t.Fatalf("call %d got %v, want its own job %q (trace %s)", i, r.jobs, want.Jobs[0].Name, want.TraceIds[0])
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	merged := 0
	for _, e := range f.entries {
		if len(e) == 50 {
			merged++
		}
	}
	if len(f.entries) != 2 || merged != 1 {
		t.Fatalf("the 50 queued calls should leave in one entry after the held one; entries: %v", f.entries)
	}
	if f.applied != len(f.entries) {
		t.Fatalf("leader told of %d applies, want one per entry (%d)", f.applied, len(f.entries))
	}
}

// TestSubmitBatcherBoundsTasksAnEntry: calls that arrays make large, each
// within limits.SubmitTasks, are not merged past it (the entry would be
// rejected, every call retried alone); small ones still merge.
func TestSubmitBatcherBoundsTasksAnEntry(t *testing.T) {
	f := &fakeLog{gate: make(chan struct{})}
	b, stop := startBatcher(t, f)
	defer stop()
	holdRes := holdEntry(t, b, f)
	array := func(name string, n int32) *fsmpb.SubmitJobs {
		sub := oneJob(name, "")
		sub.Jobs[0].Tasks = []*pb.TaskSpec{{Name: "f", Count: n, Command: []string{"x"}}}
		return sub
	}
	// One call at a time, each seen where it should be before the next:
	// big-1 waits as a batch of its own; big-2 does not fit beside it, so
	// big-1 goes to the gate and big-2 starts the next batch, which the
	// small calls join.
	calls := []struct {
		sub  *fsmpb.SubmitJobs
		seen func() bool
	}{
		{array("big-1", limits.SubmitTasks*3/5), func() bool { return b.waiting.Load() == 1 }},
		{array("big-2", limits.SubmitTasks*3/5), func() bool { return f.waiting.Load() == 2 }},
		{array("small-1", 10), func() bool { return b.waiting.Load() == 2 }},
		{array("small-2", 10), func() bool { return b.waiting.Load() == 3 }},
	}
	var res []chan callResult
	for _, c := range calls {
		res = append(res, submitAll(b, []*fsmpb.SubmitJobs{c.sub})...)
		deadline := time.Now().Add(10 * time.Second)
		for !c.seen() {
			if time.Now().After(deadline) {
				close(f.gate) // let the batcher stop
				t.Fatalf("%s: not where it should be (batch %d waiting, %d at the gate)",
					c.sub.Jobs[0].Name, b.waiting.Load(), f.waiting.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	releaseAll(t, f, append(holdRes, res...))
	f.mu.Lock()
	defer f.mu.Unlock()
	// Released together, the held entry and big-1's commit in either order.
	var got []string
	for _, e := range f.entries {
		got = append(got, strings.Join(e, "+"))
	}
	slices.Sort(got)
	if want := []string{"big-1", "big-2+small-1+small-2", "hold"}; !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v: the two large calls apart", got, want)
	}
}

// TestSubmitBatcherPipelinesBulkEntries: entries of submitPipelineJobs
// jobs or more are proposed while others are in flight, up to
// submitInFlight; a small call waits until they have committed.
func TestSubmitBatcherPipelinesBulkEntries(t *testing.T) {
	f := &fakeLog{gate: make(chan struct{})}
	b, stop := startBatcher(t, f)
	defer stop()
	var once sync.Once
	release := func() { once.Do(func() { close(f.gate) }) }
	defer release() // before stop, which waits for the held entries
	var bulk []*fsmpb.SubmitJobs
	for i := range submitInFlight - 1 {
		s := &fsmpb.SubmitJobs{}
		for j := range submitMaxJobs/2 + 1 { // two do not share an entry

			s.Jobs = append(s.Jobs, &pb.JobSpec{Name: fmt.Sprintf("bulk-%d-%d", i, j)})
			s.TraceIds, s.TraceSpanIds = append(s.TraceIds, ""), append(s.TraceSpanIds, "")
		}
		bulk = append(bulk, s)
	}
	res := submitAll(b, bulk)
	waitProposed(t, f, int32(len(bulk)))
	res = append(res, submitAll(b, []*fsmpb.SubmitJobs{oneJob("small", "")})...)
	waitQueued(t, b, 1)
	if n := f.waiting.Load(); n != int32(len(bulk)) {
		t.Fatalf("%d proposals in flight with a small call waiting, want the %d bulk ones", n, len(bulk))
	}
	release()
	for _, ch := range res {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.entries) != len(bulk)+1 || len(f.entries[len(bulk)]) != 1 || f.entries[len(bulk)][0] != "small" {
		t.Fatalf("want %d bulk entries, then the small call's: %d entries", len(bulk), len(f.entries))
	}
}

// TestSubmitBatcherRetriesARejectedBatchCallByCall: one bad call in a
// merged entry fails alone; the others commit.
func TestSubmitBatcherRetriesARejectedBatchCallByCall(t *testing.T) {
	f := &fakeLog{gate: make(chan struct{})}
	b, stop := startBatcher(t, f)
	defer stop()
	holdRes := holdEntry(t, b, f)
	subs := []*fsmpb.SubmitJobs{oneJob("a", ""), oneJob("bad", ""), oneJob("c", "")}
	res := submitAll(b, subs)
	waitQueued(t, b, 3)
	close(f.gate)
	for _, ch := range holdRes {
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
	for i, ch := range res {
		r := <-ch
		if subs[i].Jobs[0].Name == "bad" {
			if status.Code(r.err) != codes.InvalidArgument {
				t.Fatalf("bad call: got %v, want InvalidArgument", r.err)
			}
			continue
		}
		if r.err != nil || len(r.jobs) != 1 || r.jobs[0].Name != subs[i].Jobs[0].Name {
			t.Fatalf("call %q: got %v %v", subs[i].Jobs[0].Name, r.jobs, r.err)
		}
	}
}

// TestSubmitBatcherKeepsSubmittersApart: calls of different submitters
// never share an entry (an entry records one submitter).
func TestSubmitBatcherKeepsSubmittersApart(t *testing.T) {
	f := &fakeLog{gate: make(chan struct{})}
	b, stop := startBatcher(t, f)
	defer stop()
	holdRes := holdEntry(t, b, f)
	var subs []*fsmpb.SubmitJobs
	for i := range 10 {
		s := oneJob(fmt.Sprintf("%s-%d", []string{"alice", "bob"}[i%2], i), "")
		s.Submitter = &pb.Submitter{Name: []string{"alice", "bob"}[i%2]}
		subs = append(subs, s)
	}
	res := submitAll(b, subs)
	waitQueued(t, b, 10)
	releaseAll(t, f, append(holdRes, res...))
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		for _, name := range e[1:] {
			if name[:3] != e[0][:3] {
				t.Fatalf("entry %v mixes submitters", e)
			}
		}
	}
	if len(f.entries) != 3 {
		t.Fatalf("want the held entry, then one entry per submitter: %v", f.entries)
	}
}

// TestSubmitBatcherCommitErrorAndShutdown: an entry that does not commit
// fails its calls with the commit error; calls after the stop fail as
// unavailable instead of hanging.
func TestSubmitBatcherCommitErrorAndShutdown(t *testing.T) {
	f := &fakeLog{failAll: fmt.Errorf("%w: lost it", ErrNotLeader)}
	b, stop := startBatcher(t, f)
	res := submitAll(b, []*fsmpb.SubmitJobs{oneJob("a", ""), oneJob("b", "")})
	for _, ch := range res {
		if r := <-ch; status.Code(r.err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", r.err)
		}
	}
	stop()
	_, _, err := b.submit(context.Background(), oneJob("late", ""))
	if !errors.Is(err, errBatcherStopped) {
		t.Fatalf("after stop: got %v, want %v", err, errBatcherStopped)
	}
}

// An entry that holds an array says so in a field older servers do not
// know (they stop at it rather than make one task of the array); others
// leave it unset, so they stay readable by any version.
func TestSubmitCommandFlagsArrays(t *testing.T) {
	plain := &pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "a", Command: []string{"x"}}}}
	array := &pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "f", Count: 10, Command: []string{"x"}}}}
	if cmd := submitCommand(&fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{plain}}); cmd.TaskCounts {
		t.Fatal("an entry without arrays is flagged")
	}
	if cmd := submitCommand(&fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{plain, array}}); !cmd.TaskCounts || cmd.ArrayAfter {
		t.Fatalf("an entry with an array: task_counts %v, array_after %v; want true, false", cmd.TaskCounts, cmd.ArrayAfter)
	}
	deps := &pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "f", Count: 10, Command: []string{"x"}},
		{Name: "cat", Command: []string{"x"}, After: []string{"f"}}}}
	if cmd := submitCommand(&fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{plain, deps}}); !cmd.TaskCounts || !cmd.ArrayAfter {
		t.Fatal("an entry whose after list names an array is not flagged")
	}
}

// A follower checks a submission's arrays before it forwards it, then
// sends them as they are to a leader that expands arrays, and expanded to
// one that may be older; other requests pass as they are.
func TestPrepareForward(t *testing.T) {
	req := func() *pb.SubmitJobsRequest {
		return &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{
			{Name: "j", Tasks: []*pb.TaskSpec{{Name: "f", Count: 3, Command: []string{"r", "${INDEX}"}}, {Name: "g", Command: []string{"y"}}}},
			nil,
		}}
	}
	asked := 0
	expands := func(yes bool) func() []string {
		return func() []string {
			asked++
			if yes {
				return taskarray.Features
			}
			return nil
		}
	}

	compact := req()
	if err := prepareForward(compact, expands(true)); err != nil {
		t.Fatal(err)
	}
	if ts := compact.Jobs[0].Tasks; len(ts) != 2 || ts[0].Count != 3 || asked != 1 {
		t.Fatalf("to a leader that expands arrays: %v (asked %d), want the array as sent", ts, asked)
	}

	old := req()
	if err := prepareForward(old, expands(false)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ts := range old.Jobs[0].Tasks {
		names = append(names, ts.Name+":"+strings.Join(ts.Command, " "))
		if ts.Count != 0 {
			t.Fatalf("task %s still has count %d", ts.Name, ts.Count)
		}
	}
	if got := strings.Join(names, ","); got != "f-0:r 0,f-1:r 1,f-2:r 2,g:y" {
		t.Fatalf("to an older leader: %s", got)
	}

	// A leader that expands counts but not arrays in after lists gets the
	// job written out, after lists and all.
	deps := &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: "d", Tasks: []*pb.TaskSpec{
		{Name: "enc", Count: 2, Command: []string{"e"}}, {Name: "cat", Command: []string{"c"}, After: []string{"enc"}}}}}}
	if err := prepareForward(deps, func() []string { return []string{taskarray.Feature} }); err != nil {
		t.Fatal(err)
	}
	if ts := deps.Jobs[0].Tasks; len(ts) != 3 || strings.Join(ts[2].After, ",") != "enc-0,enc-1" {
		t.Fatalf("to a leader without %s: %v", taskarray.AfterFeature, ts)
	}

	asked = 0
	bad := &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: "big", Tasks: []*pb.TaskSpec{{Name: "f", Count: -1, Command: []string{"x"}}}}}}
	if err := prepareForward(bad, expands(false)); err == nil || !strings.Contains(err.Error(), "job big: invalid job: task f: count -1 is negative") {
		t.Fatalf("negative count: %v", err)
	}
	plain := &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: "p", Tasks: []*pb.TaskSpec{{Name: "a", Command: []string{"x"}}}}}}
	if err := prepareForward(plain, expands(false)); err != nil || prepareForward(&pb.GetJobRequest{Id: "job-1"}, expands(false)) != nil {
		t.Fatal(err)
	}
	if asked != 0 {
		t.Fatalf("the leader was asked %d times for requests without a valid array", asked)
	}
}
