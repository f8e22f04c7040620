package server

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// gateSink is a snapshot sink whose first write signals started and then
// waits for resume: Persist is stopped in the middle of its work.
type gateSink struct {
	memSink
	started, resume chan struct{}
	waited          bool
}

func (s *gateSink) Write(p []byte) (int, error) {
	if !s.waited {
		s.waited = true
		close(s.started)
		<-s.resume
	}
	return s.memSink.Write(p)
}

// applyAt applies one command as raft log entry index.
func applyAt(t testing.TB, f *FSM, index uint64, c *fsmpb.Command) *state.Result {
	t.Helper()
	data, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(*state.Result)
	return r
}

// Persist runs outside the lock: while it is stopped half way, commands
// that change the very jobs, tasks and agents it writes (placements,
// finished and failed attempts, a cancel, a GC, new submissions, an agent
// lost) apply at once, and the snapshot still holds exactly the state it
// was taken at. Run it with -race.
func TestSnapshotPersistWhileApplyRuns(t *testing.T) {
	f := busyFSM(t)
	var want bytes.Buffer
	f.Read(func(s *state.State) {
		if err := s.WriteSnapshot(&want); err != nil {
			t.Fatal(err)
		}
	})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &gateSink{started: make(chan struct{}), resume: make(chan struct{})}
	persisted := make(chan error, 1)
	go func() { persisted <- snap.Persist(sink) }()
	<-sink.started

	applied := make(chan struct{})
	go func() {
		defer close(applied)
		now := int64(3_700_000)
		idx := uint64(100)
		apply := func(c *fsmpb.Command) {
			idx++
			c.NowUnixMs = now
			if r := applyAt(t, f, idx, c); r == nil || r.Err != nil {
				t.Errorf("apply %v: %v", c, errOf(r))
			}
		}
		var plan *fsmpb.Assign
		f.Read(func(s *state.State) { plan = s.Plan(now, state.DefaultPlanLimits) })
		apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}})
		f.Read(func(s *state.State) {
			for _, id := range s.JobIDs() {
				j, _ := s.Job(id)
				for _, tid := range j.TaskIDs() {
					if tk, _ := s.Task(tid); tk.AgentID() != "" {
						plan = &fsmpb.Assign{Assignments: []*fsmpb.Assignment{{TaskId: tid, AgentId: tk.AgentID(), Attempt: tk.Attempt()}}}
					}
				}
			}
		})
		for _, a := range plan.GetAssignments() {
			apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
				AgentId: a.AgentId, Events: []*pb.TaskEvent{{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "started", UnixMs: now},
					{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "finished", Outcome: "failed", ExitCode: 3, UnixMs: now}}}}}}})
		}
		apply(&fsmpb.Command{Cmd: &fsmpb.Command_GcJobs{GcJobs: &fsmpb.GCJobs{JobIds: []string{"job-3"}}}})
		apply(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-1", Reason: "changed mind"}}})
		apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: "a1", Reason: "gone"}}})
		apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{
			{Name: "new", Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}}}}}})
	}()
	select {
	case <-applied:
	case <-time.After(30 * time.Second):
		t.Fatal("Apply did not run while Persist was in progress: Persist holds the state machine")
	}
	close(sink.resume)
	if err := <-persisted; err != nil || sink.cancelled {
		t.Fatalf("persist: %v (cancelled %v)", err, sink.cancelled)
	}
	snap.Release()
	if !bytes.Equal(sink.Bytes(), want.Bytes()) {
		t.Fatalf("the snapshot written while Apply ran (%d bytes) differs from the state it was taken at (%d bytes)",
			sink.Len(), want.Len())
	}
	if now := snapshotOf(t, f); bytes.Equal(now, want.Bytes()) {
		t.Fatal("the commands applied meanwhile changed nothing: the test proves nothing")
	}
	if _, err := state.ReadSnapshot(bytes.NewReader(sink.Bytes()), state.DefaultDefaults); err != nil {
		t.Fatalf("the snapshot does not restore: %v", err)
	}
}

// fillOneTaskJobs submits n one-task jobs of an encoding shape through
// FSM.Apply, 1,000 per entry, as the leader batches them.
func fillOneTaskJobs(tb testing.TB, f *FSM, n int) {
	tb.Helper()
	idx := uint64(0)
	for done := 0; done < n; done += 1000 {
		specs := make([]*pb.JobSpec, 0, 1000)
		for i := done; i < min(done+1000, n); i++ {
			specs = append(specs, &pb.JobSpec{Name: "encode-" + strconv.Itoa(i), Pool: state.DefaultPool,
				Tasks: []*pb.TaskSpec{{Command: []string{"@sched", "encoder", "encode-chunk", "--chunk", strconv.Itoa(i)},
					Resources: &pb.Resources{CpuMillis: 4000, MemoryBytes: 2 << 30}}}})
		}
		idx++
		if r := applyAt(tb, f, idx, &fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{
			Submit: &fsmpb.SubmitJobs{Jobs: specs}}}); r == nil || r.Err != nil {
			tb.Fatalf("submit: %v", errOf(r))
		}
	}
}

// BenchmarkSnapshotHold measures how long FSM.Snapshot holds the state
// machine with 1,000,000 queued one-task jobs (hold-ms), how long the
// Persist after it takes outside the lock (persist-ms), and how long a
// 200-job submit takes to apply while Persist runs (apply-ms).
//
//	go test -run X -bench SnapshotHold -benchtime 3x ./scheduler/server
func BenchmarkSnapshotHold(b *testing.B) {
	const n = 1_000_000
	f := NewFSM(state.DefaultDefaults)
	fillOneTaskJobs(b, f, n)
	runtime.GC()
	var hold, persist, apply time.Duration
	var size int
	idx := uint64(1 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		snap, err := f.Snapshot()
		hold += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		cw := &countWriter{}
		start = time.Now()
		go func() { done <- snap.Persist(&discardSink{Writer: cw}) }()
		specs := make([]*pb.JobSpec, 200)
		for k := range specs {
			specs[k] = &pb.JobSpec{Name: fmt.Sprint("late-", k), Tasks: []*pb.TaskSpec{{Command: []string{"true"}}}}
		}
		idx++
		aStart := time.Now()
		if r := applyAt(b, f, idx, &fsmpb.Command{NowUnixMs: 2000, Cmd: &fsmpb.Command_Submit{
			Submit: &fsmpb.SubmitJobs{Jobs: specs}}}); r == nil || r.Err != nil {
			b.Fatalf("submit: %v", errOf(r))
		}
		apply += time.Since(aStart)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		persist += time.Since(start)
		size = cw.n
		snap.Release()
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(hold), "hold-ms")
	b.ReportMetric(ms(persist), "persist-ms")
	b.ReportMetric(ms(apply), "apply-ms")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
}

// countWriter counts the bytes written to it.
type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// discardSink is a raft.SnapshotSink that keeps nothing.
type discardSink struct{ io.Writer }

func (discardSink) ID() string    { return "discard" }
func (discardSink) Close() error  { return nil }
func (discardSink) Cancel() error { return nil }

// errOf is a result's error, or why there is no result.
func errOf(r *state.Result) error {
	if r == nil {
		return fmt.Errorf("no result")
	}
	return r.Err
}

// BenchmarkFSMQueuedTaskBytes reports the heap per queued task of an FSM
// (the state, and the event log of the changes) holding 100,000 one-task
// jobs submitted through Apply, after GC (B/task), and while a snapshot's
// Persist is half way (peak-B/task). Raft's own memory (log cache, store)
// is not in it.
//
//	go test -run X -bench FSMQueuedTaskBytes -benchtime 1x ./scheduler/server
func BenchmarkFSMQueuedTaskBytes(b *testing.B) {
	const n = 100_000
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var per, peak float64
	for i := 0; i < b.N; i++ {
		h0 := heap()
		f := NewFSM(state.DefaultDefaults)
		fillOneTaskJobs(b, f, n)
		h1 := heap()
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		var size countWriter
		f.Read(func(s *state.State) {
			if err := s.WriteSnapshot(&size); err != nil {
				b.Fatal(err)
			}
		})
		sink := &halfSink{half: size.n / 2, atHalf: make(chan struct{}), cont: make(chan struct{})}
		done := make(chan error, 1)
		go func() { done <- snap.Persist(sink) }()
		<-sink.atHalf
		h2 := heap()
		close(sink.cont)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		snap.Release()
		runtime.KeepAlive(f)
		per = float64(int64(h1)-int64(h0)) / n
		peak = float64(int64(h2)-int64(h0)) / n
	}
	b.ReportMetric(per, "B/task")
	b.ReportMetric(peak, "peak-B/task")
}

// halfSink is a raft.SnapshotSink that discards what it is given and,
// once past half, signals atHalf and waits for cont.
type halfSink struct {
	discardSink
	n, half      int
	paused       bool
	atHalf, cont chan struct{}
}

func (s *halfSink) Write(p []byte) (int, error) {
	s.n += len(p)
	if !s.paused && s.n >= s.half {
		s.paused = true
		close(s.atHalf)
		<-s.cont
	}
	return len(p), nil
}

// The FSM keeps as many of an entry's change records as its events log
// holds, the last ones: with the log the server gives it (setEvents), and
// after a snapshot's Restore, which makes a new state.
func TestFSMKeepsWhatItsEventsHold(t *testing.T) {
	f := NewFSM(state.DefaultDefaults)
	f.setEvents(events.New(events.Options{Capacity: 100}))
	array := func(index uint64) {
		t.Helper()
		r := applyAt(t, f, index, &fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{
			Jobs: []*pb.JobSpec{{Tasks: []*pb.TaskSpec{{Name: "a", Count: 80, Command: []string{"true"}}}}}}}})
		if r == nil || r.Err != nil {
			t.Fatalf("submit: %v", errOf(r))
		}
		// The job's record and two a task: 161, of which the last 100.
		if len(r.Changes) != 100 || r.Changes[0].Position != 61 || r.Changes[99].Position != 160 {
			t.Fatalf("entry %d: %d records from position %d, want the last 100 of 161", index, len(r.Changes), r.Changes[0].Position)
		}
	}
	array(1)
	snap := snapshotOf(t, f)
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	array(2)
}
