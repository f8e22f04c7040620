package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/simagent"
)

func scale(o options, full, quick int) int {
	if o.quick {
		return quick
	}
	return full
}

// oneTaskJob is the smallest job: one task with the default ask.
func oneTaskJob(poolPath string) *pb.JobSpec {
	return &pb.JobSpec{Pool: poolPath, Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}}
}

// ---------------------------------------------------------------- placement

// runPlacementSingle (-tls and -observe runs only) queues the work first
// (the pool's max holds it back to one running task) and then lifts the
// max: what follows is a one-server leader in this process placing from a
// full queue onto 1,000 connected simulated agents that complete each
// task at once.
func runPlacementSingle(o options) Result {
	nAgents := scale(o, 1000, 100)
	nTasks := scale(o, 200_000, 20_000)
	dir, cleanup := tempDir("placement")
	defer cleanup()
	s, err := startSingle(dir, nil)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer s.Close()
	conn, err := dial(s.Addr())
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer conn.Close()
	ctx := context.Background()
	jobs, pools := pb.NewJobServiceClient(conn), pb.NewPoolServiceClient(conn)
	// 64 cpu per agent: room for every task at once (100m each), so the
	// rate is the scheduler's, not the agents' capacity.
	var lastAssign atomic.Int64
	fleet, err := simagent.Start(ctx, simagent.Config{Servers: []string{s.Addr()}, N: nAgents, Credentials: agentCreds(),
		Capacity: &pb.Resources{CpuMillis: 64000, MemoryBytes: 256 << 30},
		OnAssign: func(a simagent.Assignment) { lastAssign.Store(a.At.UnixNano()) }})
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.Stop()
	cctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	connStart := time.Now()
	if err := fleet.WaitConnected(cctx, nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	connSecs := time.Since(connStart).Seconds()

	held := &pb.Pool{Path: "place", Max: &pb.Resources{CpuMillis: 100}, MaxSet: []string{"cpu"}}
	if _, err := pools.CreatePool(ctx, &pb.PoolRequest{Pool: held}); err != nil {
		return Result{Err: err.Error()}
	}
	measure := func(label string, submit func() error) (placed, completed, subRate float64, err error) {
		if _, err := pools.UpdatePool(ctx, &pb.PoolRequest{Pool: held}); err != nil {
			return 0, 0, 0, err
		}
		base := fleet.Stats()
		t0 := time.Now()
		if err := submit(); err != nil {
			return 0, 0, 0, err
		}
		subRate = float64(nTasks) / time.Since(t0).Seconds()
		if !waitUntil(60*time.Second, 5*time.Millisecond, func() bool {
			return queueLen(s)+int(fleet.Stats().Assigned-base.Assigned) >= nTasks
		}) {
			return 0, 0, 0, fmt.Errorf("%s: queue never filled", label)
		}
		before := fleet.Stats()
		trickled := before.Assigned - base.Assigned
		start := time.Now()
		if _, err := pools.UpdatePool(ctx, &pb.PoolRequest{Pool: &pb.Pool{Path: "place"}}); err != nil {
			return 0, 0, 0, err
		}
		want := int64(nTasks)
		if !waitUntil(10*time.Minute, 2*time.Millisecond, func() bool {
			return fleet.Stats().Assigned-base.Assigned >= want
		}) {
			return 0, 0, 0, fmt.Errorf("%s: only %d of %d placed", label, fleet.Stats().Assigned-base.Assigned, want)
		}
		placedSecs := time.Unix(0, lastAssign.Load()).Sub(start).Seconds()
		if !waitUntil(10*time.Minute, 2*time.Millisecond, func() bool {
			return fleet.Stats().Acked-base.Acked >= want
		}) {
			return 0, 0, 0, fmt.Errorf("%s: only %d of %d completed", label, fleet.Stats().Acked-base.Acked, want)
		}
		doneSecs := time.Since(start).Seconds()
		n := float64(want - trickled)
		return n / placedSecs, n / doneSecs, subRate, nil
	}
	// (a) one-task jobs, 1,000 jobs per SubmitJobs call, 4 calls in flight.
	pa, ca, sa, err := measure("one-task jobs", func() error {
		const perCall = 1000
		calls := make(chan int)
		errc := make(chan error, 4)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range calls {
					req := &pb.SubmitJobsRequest{}
					for i := 0; i < n; i++ {
						req.Jobs = append(req.Jobs, oneTaskJob("place"))
					}
					if _, err := jobs.SubmitJobs(ctx, req); err != nil {
						select {
						case errc <- err:
						default:
						}
						return
					}
				}
			}()
		}
		for left := nTasks; left > 0; left -= perCall {
			calls <- min(left, perCall)
		}
		close(calls)
		wg.Wait()
		select {
		case err := <-errc:
			return err
		default:
			return nil
		}
	})
	if err != nil {
		return Result{Err: err.Error()}
	}
	// (b) one job of nTasks tasks.
	pb_, cb, sb, err := measure("one big job", func() error {
		spec := &pb.JobSpec{Pool: "place", Name: "big"}
		for i := 0; i < nTasks; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"x"}})
		}
		_, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
		return err
	})
	if err != nil {
		return Result{Err: err.Error()}
	}
	return Result{
		Summary: fmt.Sprintf("%d agents, %d tasks: one-task jobs placed %.0f/s completed %.0f/s; one %d-task job placed %.0f/s completed %.0f/s",
			nAgents, nTasks, pa, ca, nTasks, pb_, cb),
		Metrics: map[string]float64{"agents": float64(nAgents), "tasks": float64(nTasks),
			"placed_per_s": min(pa, pb_), "placed_per_s_jobs": pa, "completed_per_s_jobs": ca, "submitted_tasks_per_s_jobs": sa,
			"placed_per_s_bigjob": pb_, "completed_per_s_bigjob": cb, "submitted_tasks_per_s_bigjob": sb,
			"agents_connect_s": connSecs},
		Target: ">=20000 placed/s", Met: met(min(pa, pb_) >= 20000),
		Notes: "queue filled first behind a pool max of one task, then the max lifted; placed/s counts assignments received by sim agents, completed/s finished events committed and acked",
	}
}

// --------------------------------------------------------------- submission

// runSubmissionSingle (-tls and -observe runs only): 8 clients, one job per
// call, against a one-server raft in this process.
func runSubmissionSingle(o options) Result {
	const clients = 8
	window := time.Duration(scale(o, 10, 3)) * time.Second
	dir, cleanup := tempDir("submission")
	defer cleanup()
	s, err := startSingle(dir, nil)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer s.Close()
	start := time.Now()
	lat, nErrs, _, err := submitOneByOne(s.Addr(), clients, start.Add(window), 0)
	if err != nil {
		return Result{Err: err.Error()}
	}
	secs := time.Since(start).Seconds()
	sortDurations(lat)
	rate := float64(len(lat)) / secs
	return Result{
		Summary: fmt.Sprintf("%d clients, one job per call: %.0f acks/s, p50 %.2f ms, p99 %.2f ms (%d acked, %d errors)",
			clients, rate, percentile(lat, 50), percentile(lat, 99), len(lat), nErrs),
		Metrics: map[string]float64{"clients": clients, "acks_per_s": rate, "p50_ms": percentile(lat, 50),
			"p99_ms": percentile(lat, 99), "acked": float64(len(lat)), "errors": float64(nErrs)},
		Target: ">=5000 acks/s", Met: met(rate >= 5000),
		Notes: "no agents connected; each call is one raft entry (raft batches concurrent appends into one fsync)",
	}
}

// ------------------------------------------------------------------- memory

// runMemory measures the leader's heap per queued task with one-task jobs
// (a realistic encode-chunk command line and ask each), 1,000 jobs per
// SubmitJobs call, on a one-server raft in this process (so that the heap
// can be read after a forced GC), then the peak of the heap while the
// state machine takes a snapshot (FSM.Snapshot, what raft calls).
func runMemory(o options) Result {
	nTasks := scale(o, 1_000_000, 100_000)
	dir, cleanup := tempDir("memory")
	defer cleanup()
	s, err := startSingle(dir, nil)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer s.Close()
	conn, err := dial(s.Addr())
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer conn.Close()
	jobs := pb.NewJobServiceClient(conn)
	heap := func() (uint64, int64) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rss, _ := procRSS(os.Getpid())
		return ms.HeapAlloc, rss
	}
	h0, r0 := heap()
	const perCall = 1000
	var specBytes int
	for done := 0; done < nTasks; done += perCall {
		req := &pb.SubmitJobsRequest{}
		for i := done; i < min(done+perCall, nTasks); i++ {
			req.Jobs = append(req.Jobs, &pb.JobSpec{Name: "encode-" + strconv.Itoa(i), Pool: "default",
				Tasks: []*pb.TaskSpec{{Command: []string{"@sched", "encoder", "encode-chunk", "--chunk", strconv.Itoa(i)},
					Resources: &pb.Resources{CpuMillis: 4000, MemoryBytes: 2 << 30}}}})
		}
		if done == 0 {
			specBytes = len(req.Jobs[0].String())
		}
		if _, err := jobs.SubmitJobs(context.Background(), req); err != nil {
			return Result{Err: err.Error()}
		}
	}
	if q := queueLen(s); q != nTasks {
		return Result{Err: fmt.Sprintf("queue holds %d of %d", q, nTasks)}
	}
	h1, r1 := heap()
	writeHeapProfile(o, "memory")
	// The snapshot's peak: HeapAlloc sampled every 2 ms while it is taken.
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // owned by this scenario: ends at stop
		defer close(sampled)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	// What raft does: Snapshot under the state lock, then Persist (here
	// to a sink that drops the bytes; raft's writes them to a file).
	snapStart := time.Now()
	snap, err := s.FSM().Snapshot()
	holdSecs := time.Since(snapStart).Seconds()
	if err == nil {
		err = snap.Persist(&discardSink{})
	}
	snapSecs := time.Since(snapStart).Seconds()
	close(stop)
	<-sampled
	if err != nil {
		return Result{Err: "snapshot: " + err.Error()}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	peakAlloc := max(peak.Load(), ms.HeapAlloc)
	snap.Release()
	perHeap := float64(int64(h1)-int64(h0)) / float64(nTasks)
	perPeak := float64(int64(peakAlloc)-int64(h0)) / float64(nTasks)
	perRSS := float64(r1-r0) / float64(nTasks)
	return Result{
		Summary: fmt.Sprintf("%d queued one-task jobs: heap %.0f B/task (+%.0f MiB), at the peak of a snapshot %.0f B/task (the state held %.1f ms, the snapshot written in %.2fs), RSS %.0f B/task",
			nTasks, perHeap, float64(h1-h0)/(1<<20), perPeak, holdSecs*1000, snapSecs, perRSS),
		Metrics: map[string]float64{"tasks": float64(nTasks), "heap_bytes_per_task": perHeap, "snapshot_peak_bytes_per_task": perPeak,
			"rss_bytes_per_task": perRSS, "heap_delta_mib": float64(h1-h0) / (1 << 20), "rss_delta_mib": float64(r1-r0) / (1 << 20),
			"snapshot_s": snapSecs, "snapshot_hold_ms": holdSecs * 1000, "spec_text_bytes": float64(specBytes)},
		Target: "<1024 B/task queued, <1536 B/task at the peak of a snapshot",
		Setup: &Setup{Servers: 1, Processes: "1 server (raft on disk, fsync per commit) inside the benchmark process, so that the heap is read after a forced GC; the client in the same process",
			Agents: "none", Jobs: fmt.Sprintf("one-task jobs (an encode-chunk command line, 4 cpu and 2 GiB), %d per SubmitJobs call", perCall),
			Settings: map[string]string{}},
		Notes: "not moved to the 3-server cluster: another process's heap after GC cannot be read from outside; heap = HeapAlloc after runtime.GC (leader state plus what raft retains); peak = the highest HeapAlloc sampled every 2 ms from FSM.Snapshot (under the state's lock: snapshot_hold_ms) through Persist to a sink that drops the bytes (raft's writes a file); RSS includes the boltdb mmap",
	}
}

// discardSink is a raft.SnapshotSink that drops what it is given.
type discardSink struct{ n int64 }

func (d *discardSink) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discardSink) Close() error                { return nil }
func (d *discardSink) ID() string                  { return "discard" }
func (d *discardSink) Cancel() error               { return nil }
