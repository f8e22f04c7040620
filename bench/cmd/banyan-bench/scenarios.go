package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/simagent"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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

// runPlacement queues the work first (the pool's max holds it back to one
// running task) and then lifts the max: what follows is the leader placing
// from a full queue onto 1,000 connected simulated agents that complete
// each task at once.
func runPlacement(o options) Result {
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
			"placed_per_s_jobs": pa, "completed_per_s_jobs": ca, "submitted_tasks_per_s_jobs": sa,
			"placed_per_s_bigjob": pb_, "completed_per_s_bigjob": cb, "submitted_tasks_per_s_bigjob": sb,
			"agents_connect_s": connSecs},
		Target: ">=20000 placed/s", Met: met(min(pa, pb_) >= 20000),
		Notes: "queue filled first behind a pool max of one task, then the max lifted; placed/s counts assignments received by sim agents, completed/s finished events committed and acked",
	}
}

// --------------------------------------------------------------- submission

func runSubmission(o options) Result {
	const clients = 8
	window := time.Duration(scale(o, 10, 3)) * time.Second
	dir, cleanup := tempDir("submission")
	defer cleanup()
	s, err := startSingle(dir, nil)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer s.Close()
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(window)
	start := time.Now()
	for c := 0; c < clients; c++ {
		conn, err := dial(s.Addr())
		if err != nil {
			return Result{Err: err.Error()}
		}
		defer conn.Close()
		jobs := pb.NewJobServiceClient(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) {
				t := time.Now()
				if _, err := jobs.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{
					Jobs: []*pb.JobSpec{oneTaskJob("default")}}); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	sortDurations(lat)
	rate := float64(len(lat)) / secs
	return Result{
		Summary: fmt.Sprintf("%d clients, one job per call: %.0f acks/s, p50 %.2f ms, p99 %.2f ms (%d acked, %d errors)",
			clients, rate, percentile(lat, 50), percentile(lat, 99), len(lat), errs.Load()),
		Metrics: map[string]float64{"clients": clients, "acks_per_s": rate, "p50_ms": percentile(lat, 50),
			"p99_ms": percentile(lat, 99), "acked": float64(len(lat)), "errors": float64(errs.Load())},
		Target: ">=5000 acks/s", Met: met(rate >= 5000),
		Notes: "no agents connected; each call is one raft entry (raft batches concurrent appends into one fsync)",
	}
}

// ----------------------------------------------------------------- priority

// runPriority fills the cluster with long batch work, queues a large backlog
// of batch and opportunistic work, then submits latency-class one-task jobs
// to a pool with a guarantee: each must preempt to start.
func runPriority(o options) Result {
	nAgents := scale(o, 200, 50)
	backlog := scale(o, 1_000_000, 50_000)
	nLatency := scale(o, 200, 60)
	const cpusPerAgent = 8
	dir, cleanup := tempDir("priority")
	defer cleanup()
	s, err := startSingle(dir, func(c *server.Config) {
		c.MinRuntime = 500 * time.Millisecond
		c.PreemptRate, c.PreemptBurst = 1000, 1000
	})
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
	clusterCPU := int64(nAgents * cpusPerAgent * 1000)
	for _, p := range []*pb.Pool{{Path: "batch"}, {Path: "latency", Guaranteed: &pb.Resources{CpuMillis: clusterCPU / 10}}} {
		if _, err := pools.CreatePool(ctx, &pb.PoolRequest{Pool: p}); err != nil {
			return Result{Err: err.Error()}
		}
	}
	var submitted sync.Map // task name -> submit time
	var mu sync.Mutex
	var lat []time.Duration
	fleet, err := simagent.Start(ctx, simagent.Config{Servers: []string{s.Addr()}, N: nAgents, Credentials: agentCreds(),
		Capacity: &pb.Resources{CpuMillis: cpusPerAgent * 1000, MemoryBytes: 64 << 30},
		Duration: 10 * time.Minute,
		OnAssign: func(a simagent.Assignment) {
			if v, ok := submitted.LoadAndDelete(a.Task.Spec.Name); ok {
				mu.Lock()
				lat = append(lat, a.At.Sub(v.(time.Time)))
				mu.Unlock()
			}
		}})
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.Stop()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := fleet.WaitConnected(cctx, nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	// Backlog: 90% batch, 10% opportunistic, 1 cpu each, in jobs of 10,000.
	qStart := time.Now()
	const perJob = 10_000
	for done := 0; done < backlog; done += perJob {
		n := min(perJob, backlog-done)
		class := pb.JobClass_JOB_CLASS_BATCH
		if done*10 >= backlog*9 {
			class = pb.JobClass_JOB_CLASS_OPPORTUNISTIC
		}
		spec := &pb.JobSpec{Pool: "batch", Class: class, Name: "backlog"}
		for i := 0; i < n; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}})
		}
		if _, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
			return Result{Err: err.Error()}
		}
	}
	queueSecs := time.Since(qStart).Seconds()
	full := nAgents * cpusPerAgent
	if !waitUntil(60*time.Second, 10*time.Millisecond, func() bool { return fleet.Running() >= full }) {
		return Result{Err: fmt.Sprintf("cluster not full: %d of %d running", fleet.Running(), full)}
	}
	time.Sleep(700 * time.Millisecond) // past the minimum run time
	// The latency stream: 20 jobs/s, 1 cpu, 200 ms each.
	tick := time.NewTicker(50 * time.Millisecond)
	for i := 0; i < nLatency; i++ {
		<-tick.C
		name := "lat-" + strconv.Itoa(i)
		spec := &pb.JobSpec{Pool: "latency", Class: pb.JobClass_JOB_CLASS_LATENCY, Tasks: []*pb.TaskSpec{{Name: name,
			Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000},
			Env: map[string]string{simagent.DurationEnv: "200"}}}}
		submitted.Store(name, time.Now())
		go func() {
			if _, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
				submitted.Delete(name)
			}
		}()
	}
	tick.Stop()
	waitUntil(10*time.Second, 10*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lat) >= nLatency
	})
	mu.Lock()
	got := append([]time.Duration(nil), lat...)
	mu.Unlock()
	sortDurations(got)
	p50, p99 := percentile(got, 50), percentile(got, 99)
	st := fleet.Stats()
	return Result{
		Summary: fmt.Sprintf("%d agents full, %d queued: %d latency jobs submit->agent p50 %.1f ms p99 %.1f ms max %.1f ms (%d preemptions)",
			nAgents, backlog, len(got), p50, p99, percentile(got, 100), st.Cancelled),
		Metrics: map[string]float64{"agents": float64(nAgents), "backlog": float64(backlog), "latency_jobs": float64(len(got)),
			"p50_ms": p50, "p99_ms": p99, "max_ms": percentile(got, 100), "preemptions": float64(st.Cancelled),
			"backlog_submit_s": queueSecs, "missing": float64(nLatency - len(got))},
		Target: "p99 <50 ms", Met: met(len(got) == nLatency && p99 < 50),
		Notes: "MinRuntime 500ms, PreemptRate 1000/s burst 1000; latency pool guaranteed 10% of cluster cpu; latency stream 20 jobs/s of 200 ms tasks",
	}
}

// ------------------------------------------------------------------- memory

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
		return ms.HeapInuse, rss
	}
	h0, r0 := heap()
	// A realistic encoding task: a command line of a few words, resources,
	// in jobs of 10,000 tasks.
	const perJob = 10_000
	var specBytes int
	for done := 0; done < nTasks; done += perJob {
		n := min(perJob, nTasks-done)
		spec := &pb.JobSpec{Name: fmt.Sprintf("encode-%d", done), Pool: "default"}
		for i := 0; i < n; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{
				Command:   []string{"@sched", "encoder", "encode-chunk", "--chunk", strconv.Itoa(i)},
				Resources: &pb.Resources{CpuMillis: 4000, MemoryBytes: 2 << 30}})
		}
		if done == 0 {
			specBytes = len(spec.Tasks[0].String())
		}
		if _, err := jobs.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
			return Result{Err: err.Error()}
		}
	}
	if q := queueLen(s); q != nTasks {
		return Result{Err: fmt.Sprintf("queue holds %d of %d", q, nTasks)}
	}
	h1, r1 := heap()
	writeHeapProfile(o, "memory")
	perHeap := float64(int64(h1)-int64(h0)) / float64(nTasks)
	perRSS := float64(r1-r0) / float64(nTasks)
	return Result{
		Summary: fmt.Sprintf("%d queued tasks: heap %.0f B/task (HeapInuse +%.0f MiB), RSS %.0f B/task (+%.0f MiB)",
			nTasks, perHeap, float64(h1-h0)/(1<<20), perRSS, float64(r1-r0)/(1<<20)),
		Metrics: map[string]float64{"tasks": float64(nTasks), "heap_bytes_per_task": perHeap, "rss_bytes_per_task": perRSS,
			"heap_inuse_delta_mib": float64(h1-h0) / (1 << 20), "rss_delta_mib": float64(r1-r0) / (1 << 20),
			"spec_text_bytes": float64(specBytes)},
		Target: "<1024 B/task", Met: met(perHeap < 1024),
		Notes: "server in process, no agents; HeapInuse after GC (leader state + whatever raft retains); RSS includes the boltdb mmap",
	}
}

// ----------------------------------------------------------- agents at scale

// runAgentsAtScale runs the server in a child process (this binary with
// -serve) and N simulated agents here, each on its own connection, and
// reads the child's CPU time over a window of steady heartbeats.
func runAgentsAtScale(o options) Result {
	n := scale(o, 10_000, 2_000)
	lease := 10 * time.Second // heartbeats every 2.5 s (the default lease)
	window := time.Duration(scale(o, 30, 12)) * time.Second
	dir, cleanup := tempDir("agents")
	defer cleanup()
	self, err := os.Executable()
	if err != nil {
		return Result{Err: err.Error()}
	}
	args := []string{"-serve", "-serve-data", dir, "-serve-lease", lease.String()}
	if o.profile != "" {
		args = append(args, "-serve-cpuprofile", filepath.Join(o.profile, "agents-leader.cpu.pprof"))
	}
	cmd := exec.Command(self, args...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return Result{Err: err.Error()}
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	var addr string
	buf := make([]byte, 256)
	var line strings.Builder
	for !strings.Contains(line.String(), "\n") {
		k, err := stdout.Read(buf)
		if err != nil {
			return Result{Err: "child server: " + err.Error()}
		}
		line.Write(buf[:k])
	}
	addr = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(line.String(), "\n", 2)[0], "ADDR "))
	var mu sync.Mutex
	var rtts []time.Duration
	measuring := atomic.Bool{}
	fleet, err := simagent.Start(context.Background(), simagent.Config{Servers: []string{addr}, N: n,
		AgentsPerConn: 1, OnHeartbeatRTT: func(d time.Duration) {
			if measuring.Load() {
				mu.Lock()
				rtts = append(rtts, d)
				mu.Unlock()
			}
		}})
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.Stop()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := fleet.WaitConnected(ctx, n); err != nil {
		return Result{Err: err.Error()}
	}
	connectSecs := time.Since(start).Seconds()
	time.Sleep(lease / 2) // let the registration burst settle
	pid := cmd.Process.Pid
	if o.profile != "" {
		_ = cmd.Process.Signal(syscall.SIGUSR1)
	}
	c0, _ := procCPU(pid)
	t0 := time.Now()
	hb0 := fleet.Stats().Heartbeats
	measuring.Store(true)
	time.Sleep(window)
	measuring.Store(false)
	c1, _ := procCPU(pid)
	wall := time.Since(t0)
	hbs := fleet.Stats().Heartbeats - hb0
	rss, _ := procRSS(pid)
	cores := c1.Seconds() - c0.Seconds()
	cores /= wall.Seconds()
	mu.Lock()
	sortDurations(rtts)
	p50, p99 := percentile(rtts, 50), percentile(rtts, 99)
	mu.Unlock()
	connected := fleet.Stats().Connected
	return Result{
		Summary: fmt.Sprintf("%d agents (heartbeat %s): leader %.3f cores, %.0f heartbeats/s, RTT p50 %.2f ms p99 %.2f ms, leader RSS %.0f MiB, all connected in %.1fs",
			n, lease/4, cores, float64(hbs)/wall.Seconds(), p50, p99, float64(rss)/(1<<20), connectSecs),
		Metrics: map[string]float64{"agents": float64(n), "heartbeat_ms": float64((lease / 4).Milliseconds()),
			"leader_cpu_cores": cores, "heartbeats_per_s": float64(hbs) / wall.Seconds(), "rtt_p50_ms": p50,
			"rtt_p99_ms": p99, "leader_rss_mib": float64(rss) / (1 << 20), "connect_all_s": connectSecs,
			"connected_at_end": float64(connected)},
		Target: "<0.5 core at 10,000 agents", Met: met(cores < 0.5 && connected == int64(n)),
		Notes: fmt.Sprintf("leader is a child process (CPU from /proc/PID/stat over %s); agents in this process, one gRPC connection each; RTT is measured by the agents, which share the CPUs", window),
	}
}

// ------------------------------------------------- micro-batching and /bin/true

// runReal runs n calls of command as one job on an in-process server with two
// real agents (agent.New) and returns tasks/s and the job's mean attempt
// duration (started to finished, as the agents report it).
func runReal(n int, command []string) (perSec, meanMs float64, err error) {
	return runRealWith(n, &pb.TaskSpec{Command: command}, nil, nil)
}

// runRealWith runs n copies of task as one job on two real agents that
// serve fns, with warm workers per function.
func runRealWith(n int, task *pb.TaskSpec, fns map[string][]string, warm map[string]int) (perSec, meanMs float64, err error) {
	dir, cleanup := tempDir("real")
	defer cleanup()
	s, err := startSingle(dir, nil)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	cpus := int64(runtime.NumCPU())
	var realAgents []*agent.Agent
	for i := 0; i < 2; i++ {
		work := filepath.Join(dir, fmt.Sprintf("agent-%d", i))
		if err := os.MkdirAll(work, 0o755); err != nil {
			return 0, 0, err
		}
		fp := &pb.Fingerprint{Hostname: fmt.Sprintf("real-%d", i), CpuCores: int32(cpus), MemoryBytes: 8 << 30,
			Capacity: &pb.Resources{CpuMillis: cpus * 1000, MemoryBytes: 8 << 30}}
		a, err := agent.New(agent.Config{ID: fmt.Sprintf("real-%d", i), Servers: []string{s.Addr()}, Fingerprint: fp,
			WorkDir: work, Logger: quiet(), KillGrace: time.Second, Functions: fns, Warm: warm})
		if err != nil {
			return 0, 0, err
		}
		realAgents = append(realAgents, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Run(ctx)
		}()
	}
	conn, err := dial(s.Addr())
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	agents := pb.NewAgentServiceClient(conn)
	if !waitUntil(20*time.Second, 20*time.Millisecond, func() bool {
		r, err := agents.ListAgents(ctx, &pb.ListAgentsRequest{})
		return err == nil && len(r.Agents) == 2
	}) {
		return 0, 0, fmt.Errorf("agents did not register")
	}
	if len(warm) > 0 {
		time.Sleep(time.Second) // let the warm workers start before the calls come
	}
	jobs := pb.NewJobServiceClient(conn)
	spec := &pb.JobSpec{Name: "real"}
	for i := 0; i < n; i++ {
		spec.Tasks = append(spec.Tasks, proto.Clone(task).(*pb.TaskSpec))
	}
	start := time.Now()
	r, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		return 0, 0, err
	}
	var job *pb.Job
	if !waitUntil(3*time.Minute, 20*time.Millisecond, func() bool {
		job, err = jobs.GetJob(ctx, &pb.GetJobRequest{Id: r.Jobs[0].Id})
		return err == nil && job.State != pb.JobState_JOB_STATE_QUEUED && job.State != pb.JobState_JOB_STATE_RUNNING
	}) {
		// Say where it stuck: what the leader thinks runs on each agent
		// against what the agents run.
		var where []string
		if la, err := agents.ListAgents(ctx, &pb.ListAgentsRequest{}); err == nil {
			for _, a := range la.Agents {
				where = append(where, fmt.Sprintf("%s: leader says %d running", a.Id, a.RunningTasks))
			}
		}
		for i, a := range realAgents {
			where = append(where, fmt.Sprintf("real-%d runs %d", i, a.Running()))
		}
		return 0, 0, fmt.Errorf("job not done after 3m: %v; %s", job.GetCounts(), strings.Join(where, "; "))
	}
	secs := time.Since(start).Seconds()
	if job.State != pb.JobState_JOB_STATE_SUCCEEDED {
		return 0, 0, fmt.Errorf("job %v: %s", job.State, job.Reason)
	}
	full, err := jobs.GetJob(ctx, &pb.GetJobRequest{Id: r.Jobs[0].Id, WithTasks: true})
	if err != nil {
		return 0, 0, err
	}
	var sum int64
	for _, t := range full.Tasks {
		a := t.Attempts[len(t.Attempts)-1]
		sum += a.FinishedUnixMs - a.StartedUnixMs
	}
	return float64(n) / secs, float64(sum) / float64(n), nil
}

func runTrueTasks(o options) Result {
	n := scale(o, 10_000, 2_000)
	rate, mean, err := runReal(n, []string{"/bin/true"})
	if err != nil {
		return Result{Err: err.Error()}
	}
	return Result{
		Summary: fmt.Sprintf("%d /bin/true tasks, 2 real agents: %.0f tasks/s end to end, mean attempt %.1f ms", n, rate, mean),
		Metrics: map[string]float64{"tasks": float64(n), "tasks_per_s": rate, "mean_attempt_ms": mean},
		Target:  ">=300 tasks/s", Met: met(rate >= 300),
		Notes: "one job, submit to job succeeded; agents get cpus x 1000m capacity each, tasks ask the default 100m",
	}
}

// ----------------------------------------------------------------- failover

func runFailover(o options) Result {
	nAgents := scale(o, 100, 30)
	dir, cleanup := tempDir("failover")
	defer cleanup()
	var peers []server.Peer
	var lns []*listenerAddr
	for i := 0; i < 3; i++ {
		l, err := newListener()
		if err != nil {
			return Result{Err: err.Error()}
		}
		lns = append(lns, l)
		peers = append(peers, server.Peer{ID: fmt.Sprintf("s%d", i+1), Addr: l.addr})
	}
	servers := make([]*server.Server, 3)
	var addrs []string
	for i, l := range lns {
		s, err := server.New(server.Config{NodeID: peers[i].ID, DataDir: filepath.Join(dir, peers[i].ID),
			Listener: l.ln, Peers: peers, Lease: 5 * time.Second, Logger: quiet(), RaftLogLevel: "off"})
		if err != nil {
			return Result{Err: err.Error()}
		}
		servers[i] = s
		addrs = append(addrs, l.addr)
	}
	defer func() {
		for _, s := range servers {
			if s != nil {
				s.Close()
			}
		}
	}()
	leader, err := findLeader(15*time.Second, servers...)
	if err != nil {
		return Result{Err: err.Error()}
	}
	var killedAt atomic.Int64
	var killedAddr atomic.Value
	killedAddr.Store("")
	var resumedAt atomic.Int64
	fleet, err := simagent.Start(context.Background(), simagent.Config{Servers: addrs, N: nAgents,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 16 << 30}, Duration: 20 * time.Millisecond,
		OnAssign: func(a simagent.Assignment) {
			k := killedAt.Load()
			if k != 0 && a.Server != killedAddr.Load().(string) && a.At.UnixNano() > k {
				resumedAt.CompareAndSwap(0, a.At.UnixNano())
			}
		}})
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fleet.WaitConnected(ctx, nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	// Submitters: each sends batches of 20 one-task jobs with idempotency
	// keys to the servers in turn, retrying a batch (same keys) until acked.
	var mu sync.Mutex
	acked := map[string]string{} // idempotency key -> job id
	stopSubmit := make(chan struct{})
	var wg sync.WaitGroup
	var submitErrs atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var clients []pb.JobServiceClient
			for _, a := range addrs {
				c, err := dial(a)
				if err != nil {
					return
				}
				defer c.Close()
				clients = append(clients, pb.NewJobServiceClient(c))
			}
			next := w
			for b := 0; ; b++ {
				select {
				case <-stopSubmit:
					return
				default:
				}
				req := &pb.SubmitJobsRequest{}
				for i := 0; i < 20; i++ {
					j := oneTaskJob("default")
					j.IdempotencyKey = fmt.Sprintf("w%d-b%d-%d", w, b, i)
					req.Jobs = append(req.Jobs, j)
				}
				for {
					cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
					r, err := clients[next%len(clients)].SubmitJobs(cctx, req)
					ccancel()
					if err == nil {
						mu.Lock()
						for i, j := range r.Jobs {
							acked[req.Jobs[i].IdempotencyKey] = j.Id
						}
						mu.Unlock()
						break
					}
					submitErrs.Add(1)
					next++
					select {
					case <-stopSubmit:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	var idx int
	for i, s := range servers {
		if s == leader {
			idx = i
		}
	}
	killedAddr.Store(leader.Addr())
	killedAt.Store(time.Now().UnixNano())
	kill := time.Now()
	_ = leader.Close()
	servers[idx] = nil
	newLeader, err := findLeader(30*time.Second, servers...)
	if err != nil {
		close(stopSubmit)
		wg.Wait()
		return Result{Err: err.Error()}
	}
	electedSecs := time.Since(kill).Seconds()
	waitUntil(30*time.Second, 5*time.Millisecond, func() bool { return resumedAt.Load() != 0 })
	time.Sleep(2 * time.Second) // keep the load on the new leader a while
	close(stopSubmit)
	wg.Wait()
	resume := -1.0
	if r := resumedAt.Load(); r != 0 {
		resume = time.Unix(0, r).Sub(kill).Seconds()
	}
	// Every acknowledged job must exist on the new leader.
	conn, err := dial(newLeader.Addr())
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer conn.Close()
	jobs := pb.NewJobServiceClient(conn)
	lost := 0
	for key, id := range acked {
		j, err := jobs.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
		if status.Code(err) == codes.NotFound || (err == nil && j.IdempotencyKey != key) {
			lost++
		} else if err != nil {
			return Result{Err: "check jobs: " + err.Error()}
		}
	}
	ok := resume >= 0 && resume < 3 && lost == 0
	return Result{
		Summary: fmt.Sprintf("3 servers, %d agents: leader closed under load; new leader in %.2fs, placements resumed after %.2fs; %d acked jobs, %d lost",
			nAgents, electedSecs, resume, len(acked), lost),
		Metrics: map[string]float64{"agents": float64(nAgents), "elected_s": electedSecs, "resume_s": resume,
			"acked_jobs": float64(len(acked)), "lost_jobs": float64(lost), "submit_retries": float64(submitErrs.Load())},
		Target: "resume <3 s, 0 lost", Met: met(ok),
		Notes: "in-process servers with static peers; the leader is stopped with Server.Close (raft shut down, no leadership transfer); resume = first task a sim agent receives from another server",
	}
}
