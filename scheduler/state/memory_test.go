package state

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/proto"
)

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// submitOneTaskJobs submits n one-task jobs of an encoding shape (a
// command of five words and a resource ask), batch per entry. Each entry
// is marshalled and decoded first, as raft hands it to the FSM, so the
// state holds decoded strings as it does on a server.
func submitOneTaskJobs(tb testing.TB, s *State, n, batch int) {
	tb.Helper()
	submitJobs(tb, s, n, batch, false)
}

// submitJobs is submitOneTaskJobs; keyed gives each job an idempotency
// key of the length a server gives a submission that has none.
func submitJobs(tb testing.TB, s *State, n, batch int, keyed bool) {
	tb.Helper()
	for done := 0; done < n; done += batch {
		specs := make([]*pb.JobSpec, 0, batch)
		for i := done; i < min(done+batch, n); i++ {
			spec := &pb.JobSpec{Name: "encode-" + strconv.Itoa(i), Pool: DefaultPool,
				Tasks: []*pb.TaskSpec{{Command: []string{"@sched", "encoder", "encode-chunk", "--chunk", strconv.Itoa(i)},
					Resources: &pb.Resources{CpuMillis: 4000, MemoryBytes: 2 << 30}}}}
			if keyed {
				spec.IdempotencyKey = fmt.Sprintf("auto:%026d", i) // "auto:" and rand.Text()'s 26 characters
			}
			specs = append(specs, spec)
		}
		applyDecoded(tb, s, &fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: specs}}})
	}
}

// applyDecoded applies c as raft hands it to the FSM: marshalled and
// decoded first, so that the state holds decoded messages and strings, as
// on a server, and none of the caller's.
func applyDecoded(tb testing.TB, s *State, c *fsmpb.Command) {
	tb.Helper()
	data, err := proto.Marshal(c)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := &fsmpb.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		tb.Fatal(err)
	}
	if r := s.Apply(cmd); r.Err != nil {
		tb.Fatal(r.Err)
	}
}

// countingWriter counts what is written to it.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// pauseWriter discards what is written to it; once past half, it signals
// half and waits for resume.
type pauseWriter struct {
	n, half      int
	paused       bool
	atHalf, cont chan struct{}
}

func (w *pauseWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if !w.paused && w.n >= w.half {
		w.paused = true
		close(w.atHalf)
		<-w.cont
	}
	return len(p), nil
}

// snapshotMemory measures, for a state of n queued one-task jobs, the live
// heap per task (after GC), the heap per task while a snapshot's Persist
// is half way, and the same after churn cancels one job in churn while it
// is (each cancel copies the job's and its task's records for the view).
func snapshotMemory(tb testing.TB, n, churn int) (perTask, atPeak, atPeakChurn float64) {
	base := heapAfterGC()
	s := New(DefaultDefaults)
	submitOneTaskJobs(tb, s, n, 1000)
	queued := heapAfterGC()
	var size countingWriter
	if err := s.WriteSnapshot(&size); err != nil {
		tb.Fatal(err)
	}
	v, err := s.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	w := &pauseWriter{half: size.n / 2, atHalf: make(chan struct{}), cont: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- v.Persist(w) }()
	<-w.atHalf
	peak := heapAfterGC()
	ids := s.JobIDs()
	for i := 0; i < len(ids); i += churn {
		s.Apply(&fsmpb.Command{NowUnixMs: 2000, Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: ids[i]}}})
	}
	peakChurn := heapAfterGC()
	close(w.cont)
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	v.Release()
	runtime.KeepAlive(s)
	per := func(h uint64) float64 { return float64(int64(h)-int64(base)) / float64(n) }
	return per(queued), per(peak), per(peakChurn)
}

// BenchmarkQueuedTaskBytes reports the heap per queued task with 100,000
// one-task jobs (B/task), and at the peak of a snapshot: while Persist is
// half way (peak-B/task), and after a tenth of the jobs were cancelled
// meanwhile (peak-churn-B/task).
//
//	go test -run X -bench QueuedTaskBytes -benchtime 1x ./scheduler/state
func BenchmarkQueuedTaskBytes(b *testing.B) {
	var per, peak, churn float64
	for i := 0; i < b.N; i++ {
		per, peak, churn = snapshotMemory(b, 100_000, 10)
	}
	b.ReportMetric(per, "B/task")
	b.ReportMetric(peak, "peak-B/task")
	b.ReportMetric(churn, "peak-churn-B/task")
}

// A snapshot being written costs almost no memory beyond the state: Persist
// streams frozen records and copies nothing (the state used to be
// serialised whole into memory first, about 70 bytes per task); a record
// changed meanwhile costs one copy.
func TestSnapshotPersistAddsLittleMemory(t *testing.T) {
	per, peak, churn := snapshotMemory(t, 50_000, 10)
	t.Logf("%.0f B per queued task; %.0f B while a snapshot is half written; %.0f B after a tenth of the jobs changed meanwhile",
		per, peak, churn)
	if peak-per > 16 {
		t.Errorf("a snapshot half written adds %.0f B per task to %.0f, want at most 16", peak-per, per)
	}
	if churn <= peak {
		t.Errorf("cancelling a tenth of the jobs during Persist added nothing (%.0f -> %.0f B/task): records were changed in place", peak, churn)
	}
}

// queuedServerTaskBytes is the live heap per queued task of n one-task
// jobs submitted as a server submits them: each with an idempotency key
// (the server gives one to every submission without), and change records
// on (the server's event stream keeps them).
func queuedServerTaskBytes(tb testing.TB, n int) float64 {
	base := heapAfterGC()
	s := New(DefaultDefaults)
	s.RecordChanges(true)
	submitJobs(tb, s, n, 1000, true)
	per := float64(int64(heapAfterGC())-int64(base)) / float64(n)
	runtime.KeepAlive(s)
	return per
}

// A queued one-task job costs a server less than 1 KiB. The bench's
// memory scenario (1,000,000 jobs through a one-server raft) measured 975
// B per task where this measured 898 at 50,000: the bound leaves those 77
// B (map sizes at a million, the events ring, raft's buffers) and a little
// more as the server's share. It measures 884 since jobs are held in pages
// by number (jobtable.go) instead of a map, and the bound came down with
// it: 30 B are left, so a 16-byte allocation per task still passes, but
// one held by a new field of Task does not.
func TestQueuedTaskUnderOneKiB(t *testing.T) {
	limit := 1024 - 110
	if raceBuild {
		limit += 32 // measured 17 B more per task
	}
	per := queuedServerTaskBytes(t, 50_000)
	t.Logf("%.0f B per queued one-task job with an idempotency key", per)
	if per >= float64(limit) {
		t.Errorf("%.0f B per queued one-task job, want under %d (1 KiB less the server's extras)", per, limit)
	}
}

var _ io.Writer = (*pauseWriter)(nil)
