package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/chaos"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The scenarios on the three-server cluster (cluster.go): one run each;
// runScenario repeats them on a fresh cluster.

// inProcess is set for -tls and -observe runs, which still measure
// placement and submission on a one-server raft inside this process.
var inProcess bool

const threeServers = "3 `sched server` processes (raft on disk, fsync per commit), plaintext gRPC on loopback"

// runMicrobatchSetup runs the microbatch scenario and, where it does not
// say its setup itself, records the one it has had: a server and two real
// agents inside this process.
func runMicrobatchSetup(o options) Result {
	r := runMicrobatch(o)
	if r.Setup == nil {
		r.Setup = &Setup{Servers: 1, Processes: "1 server (raft on disk) and 2 real agents (agent.New) inside the benchmark process; tasks and function workers are processes",
			Agents: "2 real, the host's cpus each", Jobs: "one job of n calls of a 5 ms function (10m cpu each): cold, micro-batched, warm",
			Settings: map[string]string{"warm": "32 warm workers per agent in the warm run"}}
	}
	return r
}

// singleSetup is the setup of a -tls or -observe run.
func singleSetup(agents, jobs string) *Setup {
	settings := map[string]string{}
	if tlsKit != nil {
		settings["tls"] = "mutual TLS on every connection"
	}
	if observeOn {
		settings["observe"] = "metrics scraped every second, tracing to a dropping exporter"
	}
	return &Setup{Servers: 1, Processes: "1 server (raft on disk) inside the benchmark process, with the clients (and agents)",
		Agents: agents, Jobs: jobs, Settings: settings}
}

// ackLog records how many tasks were acknowledged by when.
type ackLog struct {
	mu  sync.Mutex
	at  []time.Time
	n   []int64
	tot atomic.Int64
}

func (l *ackLog) add(k int) {
	n := l.tot.Add(int64(k))
	l.mu.Lock()
	l.at = append(l.at, time.Now())
	l.n = append(l.n, n)
	l.mu.Unlock()
}

// before is the count acknowledged at or before t.
func (l *ackLog) before(t time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v int64
	for i, a := range l.at {
		if a.After(t) {
			break
		}
		v = l.n[i]
	}
	return v
}

// leaderLoad reads the leader's CPU time and its scheduling passes.
type leaderLoad struct {
	cpu                time.Duration
	at                 time.Time
	passSum, passCount float64
}

func readLeaderLoad(c *cluster, l *clusterServer) leaderLoad {
	cpu, _ := procCPU(l.proc.pid())
	sum, _ := c.metric(l, "banyan_scheduling_pass_duration_seconds_sum")
	cnt, _ := c.metric(l, "banyan_scheduling_pass_duration_seconds_count")
	return leaderLoad{cpu: cpu, at: time.Now(), passSum: sum, passCount: cnt}
}

// between returns the leader's cores and mean pass time (ms) from a to b.
func (a leaderLoad) between(b leaderLoad) (cores, passMs, passes float64) {
	cores = (b.cpu - a.cpu).Seconds() / b.at.Sub(a.at).Seconds()
	passes = b.passCount - a.passCount
	if passes > 0 {
		passMs = (b.passSum - a.passSum) / passes * 1000
	}
	return cores, passMs, passes
}

// ---------------------------------------------------------------- placement

// runPlacement measures placements while submissions keep arriving:
// submitters in this process feed one-task jobs, 1,000 per SubmitJobs
// call, to the leader as fast as it acknowledges them, and simulated
// agents in their own process complete each task at once. After a warm-up
// the rate of assignments the agents receive is measured over a steady
// window, in which the queue must never run dry (backlog_min > 0: tasks
// acknowledged minus tasks placed, at every sample).
func runPlacement(o options) Result {
	if inProcess {
		r := runPlacementSingle(o)
		r.Setup = singleSetup("1,000 simulated agents in this process (100 with -quick), 64 cpu each",
			"one-task jobs, 1,000 per call, queued behind a pool max and then released; then one job of as many tasks")
		return r
	}
	nAgents := scale(o, 1000, 200)
	warm := time.Duration(scale(o, 3, 2)) * time.Second
	window := time.Duration(scale(o, 10, 4)) * time.Second
	const submitters, perCall = 4, 1000
	c, leader, err := startLedCluster(o, "placement", 3)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.close()
	fleet, err := startFleet(fleetOpts{servers: c.addrs(), n: nAgents, cpuMillis: 64000, memBytes: 256 << 30},
		filepath.Join(c.dir, "simagents.log"))
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.stop()
	if err := fleet.waitConnected(2*time.Minute, nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	cc, err := c.conn(leader.addr)
	if err != nil {
		return Result{Err: err.Error()}
	}
	jobs := pb.NewJobServiceClient(cc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acks ackLog
	var submitErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < submitters; w++ {
		wg.Add(1)
		go func() { // owned by this scenario: ends with ctx
			defer wg.Done()
			for ctx.Err() == nil {
				req := &pb.SubmitJobsRequest{}
				for i := 0; i < perCall; i++ {
					req.Jobs = append(req.Jobs, oneTaskJob("default"))
				}
				if _, err := jobs.SubmitJobs(ctx, req); err != nil {
					if ctx.Err() == nil {
						submitErr.Store(err.Error())
					}
					return
				}
				acks.add(perCall)
			}
		}()
	}
	time.Sleep(warm)
	idx0, err := c.commitIndex(leader)
	if err != nil {
		cancel()
		wg.Wait()
		return Result{Err: err.Error()}
	}
	load0 := readLeaderLoad(c, leader)
	t0 := time.Now()
	time.Sleep(window)
	t1 := time.Now()
	idx1, err := c.commitIndex(leader)
	load1 := readLeaderLoad(c, leader)
	cancel()
	wg.Wait()
	if err != nil {
		return Result{Err: err.Error()}
	}
	if e, ok := submitErr.Load().(string); ok {
		return Result{Err: "submit: " + e}
	}
	time.Sleep(200 * time.Millisecond) // the last samples of the window
	series := fleet.samples()
	placed := rateBetween(series, t0, t1, func(s fleetSample) int64 { return s.assigned })
	completed := rateBetween(series, t0, t1, func(s fleetSample) int64 { return s.acked })
	a0, a1 := sampleAt(series, t0), sampleAt(series, t1)
	if a0 == nil || !a1.at.After(a0.at) {
		return Result{Err: "the simulated agents reported no samples in the window"}
	}
	secs := a1.at.Sub(a0.at).Seconds()
	submitted := float64(acks.before(a1.at)-acks.before(a0.at)) / secs
	backlogMin := int64(-1)
	for _, s := range series {
		if s.at.Before(a0.at) || s.at.After(a1.at) {
			continue
		}
		b := acks.before(s.at) - s.assigned
		if backlogMin < 0 || b < backlogMin {
			backlogMin = b
		}
	}
	entries := float64(idx1 - idx0)
	perEntry := 0.0
	if entries > 0 {
		perEntry = float64(a1.assigned-a0.assigned) / entries
	}
	cores, passMs, passes := load0.between(load1)
	rss, _ := procRSS(leader.proc.pid())
	return Result{
		Summary: fmt.Sprintf("%d sim agents; %d submitters x %d one-task jobs per call: placed %.0f/s while %.0f/s were submitted (backlog never below %d), completed %.0f/s, %.2f placements per raft entry (%.0f entries/s), leader %.2f cores, %.0f passes of %.2f ms",
			nAgents, submitters, perCall, placed, submitted, backlogMin, completed, perEntry, entries/secs, cores, passes, passMs),
		Metrics: map[string]float64{"agents": float64(nAgents), "placed_per_s": placed, "submitted_tasks_per_s": submitted,
			"completed_per_s": completed, "backlog_min": float64(backlogMin), "placements_per_raft_entry": perEntry,
			"raft_entries_per_s": entries / secs, "leader_cpu_cores": cores, "pass_ms_mean": passMs, "passes": passes,
			"window_s": secs, "leader_rss_mib": float64(rss) / (1 << 20)},
		Target: ">=20000 placed/s while submissions keep arriving",
		Setup: &Setup{Servers: 3, Processes: threeServers + "; simulated agents in one child process (banyan-bench simagents); submitters in the benchmark process",
			Agents:   fmt.Sprintf("%d simulated, 64 cpu each, tasks complete at once", nAgents),
			Jobs:     fmt.Sprintf("one-task jobs (default ask 100m), %d per SubmitJobs call, %d submitters calling the leader back to back", perCall, submitters),
			Settings: map[string]string{}},
		Notes: fmt.Sprintf("measured over a %s window after %s of warm-up; placed/s = assignments the agents received; backlog = tasks acknowledged minus placed at each 50 ms sample (must stay > 0: the queue never ran dry); placements per raft entry = placements / (leader commit index delta, from ClusterService.Members), all entries counted (submissions, assignments, events)", window, warm),
	}
}

// --------------------------------------------------------------- submission

// runSubmission measures acknowledged submissions, one job per RPC, from
// K concurrent clients to the leader of the three-server cluster: an ack
// means the job's entry is committed on a quorum.
func runSubmission(o options) Result {
	if inProcess {
		r := runSubmissionSingle(o)
		r.Setup = singleSetup("none", "one one-task job per call, 8 concurrent clients")
		return r
	}
	// An ingest system's pool of submit workers: each waits for its ack
	// (a quorum fsync, some ms) before its next call, so the rate is
	// about clients / commit latency; the leader merges what arrives
	// meanwhile into shared entries.
	const clients = 64
	window := time.Duration(scale(o, 10, 4)) * time.Second
	c, leader, err := startLedCluster(o, "submission", 3)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.close()
	idx0, err := c.commitIndex(leader)
	if err != nil {
		return Result{Err: err.Error()}
	}
	load0 := readLeaderLoad(c, leader)
	start := time.Now()
	// A connection per client, as separate ingest processes have.
	lat, nErrs, firstErr, err := submitOneByOne(leader.addr, clients, start.Add(window), 10*time.Second)
	if err != nil {
		return Result{Err: err.Error()}
	}
	secs := time.Since(start).Seconds()
	load1 := readLeaderLoad(c, leader)
	idx1, err := c.commitIndex(leader)
	if err != nil {
		return Result{Err: err.Error()}
	}
	sortDurations(lat)
	rate := float64(len(lat)) / secs
	cores, _, _ := load0.between(load1)
	perEntry := 0.0
	if idx1 > idx0 {
		perEntry = float64(len(lat)) / float64(idx1-idx0)
	}
	notes := "ack = SubmitJobs returned, i.e. the job's raft entry committed on a quorum; clients call the leader (found via ClusterService.Members), each on its own connection; no agents connected"
	if firstErr != "" {
		notes += "; first error: " + firstErr
	}
	return Result{
		Summary: fmt.Sprintf("%d clients, one job per call: %.0f acks/s, p50 %.2f ms, p99 %.2f ms (%d acked, %d errors), %.1f jobs per raft entry, leader %.2f cores",
			clients, rate, percentile(lat, 50), percentile(lat, 99), len(lat), nErrs, perEntry, cores),
		Metrics: map[string]float64{"clients": clients, "acks_per_s": rate, "p50_ms": percentile(lat, 50),
			"p99_ms": percentile(lat, 99), "acked": float64(len(lat)), "errors": float64(nErrs),
			"jobs_per_raft_entry": perEntry, "leader_cpu_cores": cores},
		Target: ">=5000 acks/s, one job per RPC",
		Setup: &Setup{Servers: 3, Processes: threeServers + "; clients in the benchmark process",
			Agents: "none", Jobs: fmt.Sprintf("one one-task job per SubmitJobs call, %d concurrent clients", clients),
			Settings: map[string]string{}},
		Notes: notes,
	}
}

// ----------------------------------------------------------------- failover

// runFailover kills the leader process with SIGKILL while submitters feed
// it and simulated agents run 20 ms tasks, then measures how soon
// placements are back to half their rate before the kill, and checks
// that every acknowledged job finishes (succeeded) on the new leader.
func runFailover(o options) Result {
	nAgents := scale(o, 100, 30)
	const submitters, perCall = 4, 20
	// Finished jobs past gc-max-jobs (10,000 by default) are removed, and
	// a removed job cannot be told from a lost one: keep them all.
	gc := []string{"--gc-max-jobs", "1000000"}
	c, leader, err := startLedCluster(o, "failover", 3, gc...)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.close()
	fleet, err := startFleet(fleetOpts{servers: c.addrs(), n: nAgents, cpuMillis: 4000, memBytes: 16 << 30,
		duration: 20 * time.Millisecond}, filepath.Join(c.dir, "simagents.log"))
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer fleet.stop()
	if err := fleet.waitConnected(time.Minute, nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	// Submitters: batches of 20 one-task jobs with idempotency keys, to the
	// servers in turn, retrying a batch (same keys) until acknowledged.
	var mu sync.Mutex
	acked := map[string]string{} // idempotency key -> job id
	stopSubmit := make(chan struct{})
	var wg sync.WaitGroup
	var retries atomic.Int64
	addrs := c.addrs()
	for w := 0; w < submitters; w++ {
		wg.Add(1)
		go func() { // owned by this scenario: ends at stopSubmit
			defer wg.Done()
			next := w
			for b := 0; ; b++ {
				req := &pb.SubmitJobsRequest{}
				for i := 0; i < perCall; i++ {
					j := oneTaskJob("default")
					j.IdempotencyKey = fmt.Sprintf("w%d-b%d-%d", w, b, i)
					req.Jobs = append(req.Jobs, j)
				}
				for {
					select {
					case <-stopSubmit:
						return
					default:
					}
					cc, err := c.conn(addrs[next%len(addrs)])
					var r *pb.SubmitJobsResponse
					if err == nil {
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						r, err = pb.NewJobServiceClient(cc).SubmitJobs(ctx, req)
						cancel()
					}
					if err == nil {
						mu.Lock()
						for i, j := range r.Jobs {
							acked[req.Jobs[i].IdempotencyKey] = j.Id
						}
						mu.Unlock()
						break
					}
					retries.Add(1)
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
	time.Sleep(time.Duration(scale(o, 5, 3)) * time.Second)
	kill := time.Now()
	if err := leader.proc.kill9(); err != nil {
		close(stopSubmit)
		wg.Wait()
		return Result{Err: err.Error()}
	}
	newLeader, err := c.waitLeader(30 * time.Second)
	if err != nil {
		close(stopSubmit)
		wg.Wait()
		return Result{Err: err.Error()}
	}
	elected := time.Since(kill).Seconds()
	time.Sleep(6 * time.Second) // the load stays on the new leader a while
	close(stopSubmit)
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	series := fleet.samples()
	assigned := func(s fleetSample) int64 { return s.assigned }
	before := rateBetween(series, kill.Add(-2*time.Second), kill, assigned)
	// Tasks the dead leader sent just before the kill may still be read by
	// the agents just after it: the first 100 ms after the kill are left
	// out of both figures.
	const settle = 100 * time.Millisecond
	resume, first := -1.0, -1.0
	k0 := sampleAt(series, kill.Add(settle))
	for _, s := range series {
		if s.at.Before(kill.Add(settle)) {
			continue
		}
		if first < 0 && k0 != nil && s.assigned > k0.assigned {
			first = s.at.Sub(kill).Seconds()
		}
		if s.at.Sub(kill) >= settle+500*time.Millisecond && rateBetween(series, s.at.Add(-500*time.Millisecond), s.at, assigned) >= before/2 {
			resume = s.at.Sub(kill).Seconds()
			break
		}
	}
	lost, unfinished, failed, err := checkFinished(c, newLeader, acked, 3*time.Minute)
	if err != nil {
		return Result{Err: err.Error()}
	}
	return Result{
		Summary: fmt.Sprintf("%d sim agents: leader SIGKILLed at %.0f placements/s; new leader in %.2fs, placements back to half that rate after %.2fs (first after %.2fs); %d acked jobs: %d lost, %d unfinished, %d failed",
			nAgents, before, elected, resume, first, len(acked), lost, unfinished, failed),
		Metrics: map[string]float64{"agents": float64(nAgents), "elected_s": elected, "resume_s": resume, "first_placement_s": first,
			"placed_per_s_before": before, "acked_jobs": float64(len(acked)), "lost_jobs": float64(lost),
			"unfinished_jobs": float64(unfinished), "failed_jobs": float64(failed), "submit_retries": float64(retries.Load())},
		Target: "placements back to half their rate <3 s after kill -9; every acked job finishes, 0 lost",
		Setup: &Setup{Servers: 3, Processes: threeServers + "; simulated agents in one child process; submitters in the benchmark process",
			Agents:   fmt.Sprintf("%d simulated, 4 cpu each, tasks of 20 ms", nAgents),
			Jobs:     fmt.Sprintf("one-task jobs with idempotency keys, %d per call, %d submitters, retried on another server until acked", perCall, submitters),
			Settings: map[string]string{"gc-max-jobs": "1000000 (default 10000), so that every acknowledged job can still be read once finished"}},
		Notes: "the leader process is killed with SIGKILL (no shutdown); resume = first 50 ms sample at which the placements of the last 500 ms reach half the rate of the 2 s before the kill (the first 100 ms after the kill, when the agents may still read what the dead leader sent, left out); every acknowledged job is then read on the new leader until it has finished: lost = not found (or another key), failed = finished but not succeeded, unfinished = not finished 3 minutes after the load stopped",
	}
}

// checkFinished reads every acknowledged job on the leader until each has
// finished or within has passed.
func checkFinished(c *cluster, leader *clusterServer, acked map[string]string, within time.Duration) (lost, unfinished, failed int, err error) {
	cc, err := c.conn(leader.addr)
	if err != nil {
		return 0, 0, 0, err
	}
	jobs := pb.NewJobServiceClient(cc)
	pending := map[string]string{}
	for k, id := range acked {
		pending[k] = id
	}
	deadline := time.Now().Add(within)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for key, id := range pending {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			j, err := jobs.GetJob(ctx, &pb.GetJobRequest{Id: id})
			cancel()
			switch {
			case status.Code(err) == codes.NotFound || (err == nil && j.IdempotencyKey != key):
				lost++
				delete(pending, key)
			case err != nil:
				return 0, 0, 0, fmt.Errorf("check job %s: %w", id, err)
			case j.State == pb.JobState_JOB_STATE_SUCCEEDED:
				delete(pending, key)
			case j.State == pb.JobState_JOB_STATE_FAILED || j.State == pb.JobState_JOB_STATE_CANCELLED:
				failed++
				delete(pending, key)
			}
		}
		if len(pending) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	return lost, len(pending), failed, nil
}

// --------------------------------------------------------------- /bin/true

// runTrueTasks runs one job of n /bin/true tasks end to end twice: on the
// three-server cluster with two real `sched agent` processes, and through
// `sched dev` itself (one process, its default single agent).
func runTrueTasks(o options) Result {
	n := scale(o, 10_000, 2_000)
	const nAgents = 2
	c, err := startCluster(o, "true", 3)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.close()
	if err := c.startAgents(nAgents); err != nil {
		return Result{Err: err.Error()}
	}
	leader, err := c.waitLeader(10 * time.Second)
	if err != nil {
		return Result{Err: err.Error()}
	}
	clusterRate, err := runTrueJob(c, leader.addr, n, nAgents)
	if err != nil {
		return Result{Err: "cluster: " + err.Error()}
	}
	devRate, err := runTrueDev(o, n)
	if err != nil {
		return Result{Err: "sched dev: " + err.Error()}
	}
	return Result{
		Summary: fmt.Sprintf("%d /bin/true tasks in one job: %.0f tasks/s on 3 servers with %d `sched agent` processes, %.0f tasks/s through `sched dev`",
			n, clusterRate, nAgents, devRate),
		Metrics: map[string]float64{"tasks": float64(n), "tasks_per_s": clusterRate, "dev_tasks_per_s": devRate},
		Target:  ">=300 tasks/s on the cluster and through sched dev",
		Setup: &Setup{Servers: 3, Processes: threeServers + "; 2 `sched agent` processes on the same host (each fingerprints the whole host); then `sched dev` (one process: server and its default single agent)",
			Agents: "real: 2 `sched agent` (cluster), 1 in `sched dev`", Jobs: fmt.Sprintf("one job of %d /bin/true tasks, default ask (100m cpu)", n),
			Settings: map[string]string{}},
		Notes: "submit of the job to the job succeeded (polled every 20 ms), per run: the cluster, then sched dev on a fresh data dir; agents run tasks as this user (--run-as); sched dev gets --http-addr on a free port (its default 7480 may be taken)",
	}
}

// runTrueJob submits one job of n /bin/true tasks to addr once agents
// have registered and returns tasks/s to the job's success.
func runTrueJob(c *cluster, addr string, n, agents int) (float64, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return 0, err
	}
	return trueJob(cc, n, agents)
}

// runTrueDev starts `sched dev` on a fresh data dir and runs the job there.
func runTrueDev(o options, n int) (float64, error) {
	sched, err := schedBinary(o.work)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp(o.dataRoot, "banyan-bench-dev-")
	if err != nil {
		return 0, fmt.Errorf("dev dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ports, err := chaos.FreeLoopbackAddrs(2)
	if err != nil {
		return 0, err
	}
	addr, haddr := ports[0], ports[1]
	p, err := startChild("sched-dev", filepath.Join(dir, "dev.log"), sched, "--addr", addr, "dev",
		"--data-dir", filepath.Join(dir, "data"), "--http-addr", haddr)
	if err != nil {
		return 0, err
	}
	defer p.stop(10 * time.Second)
	conn, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return trueJob(conn, n, 1)
}

// trueJob waits for agents, submits one job of n /bin/true tasks and
// returns tasks/s to its success.
func trueJob(cc grpc.ClientConnInterface, n, agents int) (float64, error) {
	ctx := context.Background()
	ag := pb.NewAgentServiceClient(cc)
	if !waitUntil(60*time.Second, 50*time.Millisecond, func() bool {
		r, err := ag.ListAgents(ctx, &pb.ListAgentsRequest{})
		return err == nil && len(r.Agents) >= agents
	}) {
		return 0, fmt.Errorf("%d agents did not register within 60s", agents)
	}
	jobs := pb.NewJobServiceClient(cc)
	spec := &pb.JobSpec{Name: "true"}
	for i := 0; i < n; i++ {
		spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"/bin/true"}})
	}
	start := time.Now()
	r, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	job, err := waitJob(ctx, jobs, r.Jobs[0].Id)
	if err != nil {
		return 0, err
	}
	secs := time.Since(start).Seconds()
	if job.State != pb.JobState_JOB_STATE_SUCCEEDED {
		return 0, fmt.Errorf("job %v: %s", job.State, job.Reason)
	}
	return float64(n) / secs, nil
}

// submitOneByOne has clients callers, each on its own connection to addr,
// submit one one-task job per call, each call waiting for its ack, until
// stop. It returns every acknowledged call's latency, the failed calls and
// the first failure's message. timeout bounds one call (0: none).
func submitOneByOne(addr string, clients int, stop time.Time, timeout time.Duration) (lat []time.Duration, errs int64, firstErr string, err error) {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		nErrs atomic.Int64
		first atomic.Value
	)
	var callers []pb.JobServiceClient
	for k := 0; k < clients; k++ {
		conn, err := dial(addr)
		if err != nil {
			return nil, 0, "", err
		}
		defer conn.Close()
		callers = append(callers, pb.NewJobServiceClient(conn))
	}
	for _, jobs := range callers {
		wg.Add(1)
		go func() { // owned by this call: ends at stop
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) {
				t := time.Now()
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if timeout > 0 {
					ctx, cancel = context.WithTimeout(ctx, timeout)
				}
				_, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{oneTaskJob("default")}})
				cancel()
				if err != nil {
					nErrs.Add(1)
					first.CompareAndSwap(nil, err.Error())
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
	if e, ok := first.Load().(string); ok {
		firstErr = e
	}
	return lat, nErrs.Load(), firstErr, nil
}
