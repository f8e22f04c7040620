package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/simagent"
)

// ----------------------------------------------------------------- priority

// runPriority fills the cluster with long batch work, queues a large
// backlog of batch and opportunistic work, then submits a stream of
// latency-class one-task jobs to a pool with a guarantee: with the
// cluster full, each must preempt (at the default preemption settings) or
// take a slot a finished latency task left, and the figure is the time
// from its submit to its arrival at an agent.
func runPriority(o options) Result {
	nAgents := scale(o, 200, 50)
	backlog := scale(o, 1_000_000, 50_000)
	nLatency := scale(o, 1000, 200)
	const cpusPerAgent = 8
	const perJob = 10_000
	c, leader, err := startLedCluster(o, "priority", 3)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.close()
	cc, err := c.conn(leader.addr)
	if err != nil {
		return Result{Err: err.Error()}
	}
	ctx := context.Background()
	jobs, pools := pb.NewJobServiceClient(cc), pb.NewPoolServiceClient(cc)
	clusterCPU := int64(nAgents * cpusPerAgent * 1000)
	for _, p := range []*pb.Pool{{Path: "batch"}, {Path: "latency", Guaranteed: &pb.Resources{CpuMillis: clusterCPU / 10}}} {
		if _, err := pools.CreatePool(ctx, &pb.PoolRequest{Pool: p}); err != nil {
			return Result{Err: err.Error()}
		}
	}
	fleet, err := startFleet(fleetOpts{servers: c.addrs(), n: nAgents, cpuMillis: cpusPerAgent * 1000, memBytes: 64 << 30,
		duration: 10 * time.Minute, reportPrefix: "lat-"}, filepath.Join(c.dir, "simagents.log"))
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.stop()
	if err := fleet.waitConnected(time.Minute, nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	// Backlog: 90% batch, 10% opportunistic, 1 cpu each, in jobs of 10,000.
	qStart := time.Now()
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
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := jobs.SubmitJobs(cctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
		cancel()
		if err != nil {
			return Result{Err: "backlog: " + err.Error()}
		}
	}
	queueSecs := time.Since(qStart).Seconds()
	full := int64(nAgents * cpusPerAgent)
	if !waitUntil(2*time.Minute, 10*time.Millisecond, func() bool { return fleet.last().running >= full }) {
		return Result{Err: fmt.Sprintf("cluster not full: %d of %d running", fleet.last().running, full)}
	}
	time.Sleep(5500 * time.Millisecond) // past the default minimum run time (5 s)
	// The latency stream: 20 jobs/s, 1 cpu, 200 ms each.
	submitted := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	tick := time.NewTicker(50 * time.Millisecond)
	for i := 0; i < nLatency; i++ {
		<-tick.C
		name := "lat-" + strconv.Itoa(i)
		spec := &pb.JobSpec{Pool: "latency", Class: pb.JobClass_JOB_CLASS_LATENCY, Tasks: []*pb.TaskSpec{{Name: name,
			Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000},
			Env: map[string]string{simagent.DurationEnv: "200"}}}}
		mu.Lock()
		submitted[name] = time.Now()
		mu.Unlock()
		wg.Add(1)
		go func() { // owned by this scenario: waited for below
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := jobs.SubmitJobs(cctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
				mu.Lock()
				delete(submitted, name)
				mu.Unlock()
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	var lat []time.Duration
	waitUntil(30*time.Second, 50*time.Millisecond, func() bool {
		lat = lat[:0]
		mu.Lock()
		defer mu.Unlock()
		for name, at := range submitted {
			if got, ok := fleet.assignedAt(name); ok {
				lat = append(lat, got.Sub(at))
			}
		}
		return len(lat) >= nLatency
	})
	sortDurations(lat)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	st := fleet.last()
	return Result{
		Summary: fmt.Sprintf("%d sim agents full, %d queued: %d latency jobs submit->agent p50 %.1f ms p99 %.1f ms max %.1f ms (%d preemptions)",
			nAgents, backlog, len(lat), p50, p99, percentile(lat, 100), st.cancelled),
		Metrics: map[string]float64{"agents": float64(nAgents), "backlog": float64(backlog), "latency_jobs": float64(len(lat)),
			"p50_ms": p50, "p99_ms": p99, "max_ms": percentile(lat, 100), "preemptions": float64(st.cancelled),
			"backlog_submit_s": queueSecs, "missing": float64(nLatency - len(lat))},
		Target: "p99 <50 ms, >=1000 samples",
		Setup: &Setup{Servers: 3, Processes: threeServers + "; simulated agents in one child process; clients in the benchmark process",
			Agents: fmt.Sprintf("%d simulated, %d cpu each, backlog tasks run 10 min (the cluster stays full)", nAgents, cpusPerAgent),
			Jobs: fmt.Sprintf("backlog: %d tasks of 1 cpu in jobs of %d (90%% batch, 10%% opportunistic); then %d latency-class one-task jobs, one per call, 20/s, 1 cpu, 200 ms each, to a pool guaranteed 10%% of the cluster's cpu",
				backlog, perJob, nLatency),
			Settings: map[string]string{}},
		Notes: "default preemption settings (minimum run time 5 s, preemption rate 10/s, burst 20); latency = submit call start to the agent's receipt of the task (same host clock)",
	}
}

// ----------------------------------------------------------- agents at scale

// runAgentsAtScale connects N simulated agents (in their own process, one
// gRPC connection each) to the three-server cluster and reads the
// leader's CPU time from /proc: first with the fleet idle (heartbeats
// only), then with submitters feeding 1,000 one-second one-task jobs a
// second (2,000 task events a second: each task's started and finished),
// where it also reports the mean scheduling pass from the leader's
// /metrics.
func runAgentsAtScale(o options) Result {
	n := scale(o, 10_000, 2_000)
	// The default lease, 10 s: heartbeats every 2.5 s until the fleet
	// outgrows the leader's default bound of 1,000 heartbeats a second,
	// then less often (scheduler/server/heartbeat.go); the interval the
	// fleet keeps is reported as measured.
	const lease = 10 * time.Second
	window := time.Duration(scale(o, 30, 10)) * time.Second
	const tasksPerSec = 1000
	c, leader, err := startLedCluster(o, "agents", 3)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.close()
	start := time.Now()
	fleet, err := startFleet(fleetOpts{servers: c.addrs(), n: n, cpuMillis: 8000, memBytes: 32 << 30,
		duration: time.Second, rtt: true}, filepath.Join(c.dir, "simagents.log"))
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.stop()
	if err := fleet.waitConnected(5*time.Minute, n); err != nil {
		return Result{Err: err.Error()}
	}
	connectSecs := time.Since(start).Seconds()
	time.Sleep(lease) // let the registration burst, and the longer terms it brought, settle
	// Idle.
	fleet.measureRTT(true)
	hb0 := fleet.last().heartbeats
	idle0 := readLeaderLoad(c, leader)
	time.Sleep(window)
	idle1 := readLeaderLoad(c, leader)
	hb1 := fleet.last().heartbeats
	rtts := fleet.measureRTT(false)
	idleCores, _, _ := idle0.between(idle1)
	hbRate := float64(hb1-hb0) / idle1.at.Sub(idle0.at).Seconds()
	every := time.Duration(float64(n) / max(hbRate, 1e-9) * float64(time.Second)).Round(100 * time.Millisecond)
	sortDurations(rtts)
	// Busy: 100 one-task jobs every 100 ms.
	cc, err := c.conn(leader.addr)
	if err != nil {
		return Result{Err: err.Error()}
	}
	jobs := pb.NewJobServiceClient(cc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var submitErr error
	done := make(chan struct{})
	go func() { // owned by this scenario: ends with ctx
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			req := &pb.SubmitJobsRequest{}
			for i := 0; i < tasksPerSec/10; i++ {
				req.Jobs = append(req.Jobs, oneTaskJob("default"))
			}
			if _, err := jobs.SubmitJobs(ctx, req); err != nil && ctx.Err() == nil {
				submitErr = err
				return
			}
		}
	}()
	time.Sleep(3 * time.Second) // warm-up: tasks start finishing after 1 s
	busy0, f0 := readLeaderLoad(c, leader), fleet.last()
	time.Sleep(window)
	busy1, f1 := readLeaderLoad(c, leader), fleet.last()
	cancel()
	<-done
	if submitErr != nil {
		return Result{Err: "submit: " + submitErr.Error()}
	}
	if n := c.elections(); n != 1 {
		return Result{Err: fmt.Sprintf("leadership changed during the run (%d elections won): the leader's figures would be a follower's; the servers' logs say: %s", n, c.leadershipLines())}
	}
	busyCores, passMs, passes := busy0.between(busy1)
	secs := f1.at.Sub(f0.at).Seconds()
	events := float64((f1.assigned-f0.assigned)+(f1.finished-f0.finished)) / secs
	rss, _ := procRSS(leader.proc.pid())
	connected := fleet.last().connected
	return Result{
		Summary: fmt.Sprintf("%d sim agents (heartbeat %s): leader %.3f cores idle (%.0f heartbeats/s, RTT p50 %.2f ms p99 %.2f ms); %.3f cores at %.0f task events/s (%d passes, mean %.2f ms); leader RSS %.0f MiB; all connected in %.1fs",
			n, every, idleCores, hbRate, percentile(rtts, 50), percentile(rtts, 99), busyCores, events, int(passes), passMs,
			float64(rss)/(1<<20), connectSecs),
		Metrics: map[string]float64{"agents": float64(n), "heartbeat_ms": float64(every.Milliseconds()),
			"leader_cpu_cores": idleCores, "leader_cpu_cores_busy": busyCores, "task_events_per_s": events,
			"pass_ms_mean": passMs, "passes": passes, "heartbeats_per_s": hbRate,
			"rtt_p50_ms": percentile(rtts, 50), "rtt_p99_ms": percentile(rtts, 99),
			"leader_rss_mib": float64(rss) / (1 << 20), "connect_all_s": connectSecs, "connected_at_end": float64(connected)},
		Target: "<0.5 core idle and <1 core at 2,000 task events/s with 10,000 agents",
		Setup: &Setup{Servers: 3, Processes: threeServers + "; simulated agents in one child process, one gRPC connection each; the submitter in the benchmark process",
			Agents:   fmt.Sprintf("%d simulated, 8 cpu each, tasks of 1 s", n),
			Jobs:     fmt.Sprintf("idle: none; busy: %d one-task jobs a second, %d per call every 100 ms", tasksPerSec, tasksPerSec/10),
			Settings: map[string]string{}},
		Notes: fmt.Sprintf("leader CPU from /proc/PID/stat of the leader process over %s windows (idle, then busy after 3 s of warm-up); task events = starts + finishes the agents reported; pass time from the leader's banyan_scheduling_pass_duration_seconds (passes with queued work); RTT measured by the agents, which share the CPUs", window),
	}
}
