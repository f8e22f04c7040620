package main

// The microbatch scenario: the same calls run cold (one process per call),
// micro-batched (calls queued to line-protocol workers started for them)
// and warm (workers started before the calls), for two functions:
//
//   - a Python worker (bench/workers/pyworker.py) that imports the
//     libraries a real Python function would before its first call: the
//     start-up the micro-batching and warm capacity are meant to save;
//   - a minimal binary: /bin/sleep per call when cold, and this benchmark's
//     own Go worker (`banyan-bench fn sleep`) when batched or warm, to show
//     what is left when start-up is nearly free.
//
// Every call's work is the same: 5 ms of waiting.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/banyan-sched/banyan/agent"
	"github.com/banyan-sched/banyan/agent/worker"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/protobuf/proto"
)

// pyWorkerPath is the Python worker, relative to the repository root
// (banyan-bench runs from there, as `make bench` does).
const pyWorkerPath = "bench/workers/pyworker.py"

// callMs is every call's work: milliseconds of waiting.
const callMs = 5

// warmPerAgent is how many warm workers each agent keeps in the warm runs.
const warmPerAgent = 32

// fnRates are one function's three runs.
type fnRates struct {
	name                    string
	cold, batch, warm       float64 // calls/s
	coldMs, batchMs, warmMs float64 // mean attempt, started to finished
	coldN, n                int
	startMs, startCPUMs     float64 // one cold start-up and call, measured alone
}

func (f fnRates) batchSpeedup() float64 { return f.batch / f.cold }
func (f fnRates) warmSpeedup() float64  { return f.warm / f.cold }

// runMicrobatch measures both functions three ways on two real agents.
func runMicrobatch(o options) Result {
	n := scale(o, 10_000, 1_000)
	exe, err := os.Executable()
	if err != nil {
		return Result{Err: err.Error()}
	}
	py, err := filepath.Abs(pyWorkerPath)
	if err != nil {
		return Result{Err: err.Error()}
	}
	if _, err := os.Stat(py); err != nil {
		return Result{Err: fmt.Sprintf("python worker (run from the repository root): %v", err)}
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		return Result{Err: "python3: " + err.Error()}
	}
	arg := strconv.Itoa(callMs)
	// A Python process holds 15-20 MB; its calls ask 128 MiB so that cold
	// calls do not start hundreds of interpreters at once on a small host.
	pyFn := fnSetup{
		name:    "python",
		cold:    []string{python, py, "--call", arg},
		worker:  []string{python, py},
		ask:     &pb.Resources{CpuMillis: 10, MemoryBytes: 128 << 20},
		coldN:   scale(o, 2_000, 300), // ~0.15 s of CPU per cold start: fewer calls, same rate
		batchN:  n,
		workers: warmPerAgent,
	}
	minFn := fnSetup{
		name:    "minimal",
		cold:    []string{"/bin/sleep", strconv.FormatFloat(callMs/1000.0, 'f', -1, 64)},
		worker:  []string{exe, "fn", "sleep"},
		ask:     &pb.Resources{CpuMillis: 10, MemoryBytes: 16 << 20},
		coldN:   n,
		batchN:  n,
		workers: warmPerAgent,
	}
	var out []fnRates
	for _, f := range []fnSetup{pyFn, minFn} {
		r, err := f.run()
		if err != nil {
			return Result{Err: f.name + ": " + err.Error()}
		}
		out = append(out, r)
	}
	p, m := out[0], out[1]
	metrics := map[string]float64{"calls": float64(n), "call_work_ms": callMs}
	for _, f := range out {
		k := f.name + "_"
		metrics[k+"cold_calls"], metrics[k+"cold_calls_per_s"], metrics[k+"cold_mean_call_ms"] = float64(f.coldN), f.cold, f.coldMs
		metrics[k+"microbatch_calls_per_s"], metrics[k+"microbatch_mean_call_ms"] = f.batch, f.batchMs
		metrics[k+"warm_calls_per_s"], metrics[k+"warm_mean_call_ms"] = f.warm, f.warmMs
		metrics[k+"microbatch_speedup"], metrics[k+"warm_speedup"] = f.batchSpeedup(), f.warmSpeedup()
		metrics[k+"startup_ms"], metrics[k+"startup_cpu_ms"] = f.startMs, f.startCPUMs
	}
	// The headline speedups are the realistic function's.
	metrics["microbatch_speedup"], metrics["warm_speedup"] = p.batchSpeedup(), p.warmSpeedup()
	line := func(f fnRates, what string) string {
		return fmt.Sprintf("%s (%s; one cold call alone %.0f ms, %.0f ms CPU): cold %.0f calls/s, micro-batched %.0f/s (%.1fx), warm %.0f/s (%.1fx)",
			f.name, what, f.startMs, f.startCPUMs, f.cold, f.batch, f.batchSpeedup(), f.warm, f.warmSpeedup())
	}
	return Result{
		Summary: fmt.Sprintf("%d calls of a %d ms function, 2 real agents: %s; %s", n, callMs,
			line(p, "python3 importing json, decimal, datetime, urllib.parse, email, http.client, sqlite3, xml.etree, asyncio, logging, csv, hashlib, uuid, zlib, base64, re"),
			line(m, "/bin/sleep cold, a Go line-protocol worker batched and warm")),
		Metrics: metrics,
		Target:  ">=10x speedup (micro-batch / warm vs cold) for the Python function", Met: met(p.batchSpeedup() >= 10 && p.warmSpeedup() >= 10),
		Notes: fmt.Sprintf("end to end: submit of one job of n calls to job succeeded; every call waits %d ms; cold Python runs %d calls (rate compared, not totals); "+
			"%d warm workers per agent in the warm run, started and given one 1 s call each by a warm-up job before the timed one; calls ask 10m cpu and 128 MiB (Python) or 16 MiB (minimal)",
			callMs, p.coldN, warmPerAgent),
	}
}

// fnSetup describes one function's three runs.
type fnSetup struct {
	name          string
	cold          []string // the command of one call, cold
	worker        []string // the line-protocol worker
	ask           *pb.Resources
	coldN, batchN int
	workers       int // warm workers per agent
}

func (f fnSetup) run() (fnRates, error) {
	r := fnRates{name: f.name, coldN: f.coldN, n: f.batchN}
	var err error
	if r.startMs, r.startCPUMs, err = startupCost(f.cold, 5); err != nil {
		return r, err
	}
	if r.cold, r.coldMs, err = runFunctionJob(f.coldN, &pb.TaskSpec{Command: f.cold, Resources: f.ask}, nil, 0); err != nil {
		return r, fmt.Errorf("cold: %w", err)
	}
	fns := map[string][]string{f.name: f.worker}
	call := &pb.TaskSpec{Function: f.name, Args: []string{strconv.Itoa(callMs)}, Resources: f.ask}
	if r.batch, r.batchMs, err = runFunctionJob(f.batchN, call, fns, 0); err != nil {
		return r, fmt.Errorf("micro-batched: %w", err)
	}
	if r.warm, r.warmMs, err = runFunctionJob(f.batchN, call, fns, f.workers); err != nil {
		return r, fmt.Errorf("warm: %w", err)
	}
	return r, nil
}

// startupCost runs argv runs times, one after another, and returns the
// mean wall time and CPU time of one run.
func startupCost(argv []string, runs int) (wallMs, cpuMs float64, err error) {
	var wall, cpu time.Duration
	for i := 0; i < runs; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		began := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		wall += time.Since(began)
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(runs) }
	return ms(wall), ms(cpu), nil
}

// runFunctionJob runs n copies of task as one job on an in-process server
// with two real agents that serve fns, and returns calls/s and the mean
// attempt (started to finished, as the agents report it). With warm > 0
// each agent keeps warm workers of task's function, and a warm-up job of
// one 1-second call per warm worker runs first (untimed), so that the
// timed job meets workers that have started, as warm capacity promises.
func runFunctionJob(n int, task *pb.TaskSpec, fns map[string][]string, warm int) (perSec, meanMs float64, err error) {
	dir, cleanup := tempDir("fn")
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
	var warmFns map[string]int
	if warm > 0 {
		warmFns = map[string]int{}
		for name := range fns {
			warmFns[name] = warm
		}
	}
	cpus := int64(runtime.NumCPU())
	for i := 0; i < 2; i++ {
		work := filepath.Join(dir, fmt.Sprintf("agent-%d", i))
		if err := os.MkdirAll(work, 0o755); err != nil {
			return 0, 0, err
		}
		fp := &pb.Fingerprint{Hostname: fmt.Sprintf("fn-%d", i), CpuCores: int32(cpus), MemoryBytes: 8 << 30,
			Capacity: &pb.Resources{CpuMillis: cpus * 1000, MemoryBytes: 8 << 30}}
		a, err := agent.New(agent.Config{ID: fmt.Sprintf("fn-%d", i), Servers: []string{s.Addr()}, Fingerprint: fp,
			WorkDir: work, Logger: quiet(), KillGrace: time.Second, Functions: fns, Warm: warmFns})
		if err != nil {
			return 0, 0, err
		}
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
	jobs := pb.NewJobServiceClient(conn)
	if warm > 0 {
		// One 1 s call per warm worker: the job ends only when about every
		// warm worker has started and taken a call.
		up := proto.Clone(task).(*pb.TaskSpec)
		up.Args = []string{"1000"}
		if _, _, err := runCallsJob(ctx, jobs, "warm-up", 2*warm, up); err != nil {
			return 0, 0, fmt.Errorf("warm-up: %w", err)
		}
	}
	return runCallsJob(ctx, jobs, "calls", n, task)
}

// runCallsJob submits one job of n copies of task, waits for it to
// succeed, and returns calls/s (submit to succeeded) and the mean attempt.
func runCallsJob(ctx context.Context, jobs pb.JobServiceClient, name string, n int, task *pb.TaskSpec) (perSec, meanMs float64, err error) {
	spec := &pb.JobSpec{Name: name}
	for i := 0; i < n; i++ {
		spec.Tasks = append(spec.Tasks, proto.Clone(task).(*pb.TaskSpec))
	}
	start := time.Now()
	r, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		return 0, 0, err
	}
	job, err := waitJob(ctx, jobs, r.Jobs[0].Id)
	if err != nil {
		return 0, 0, err // the caller says which job (cold, warm-up, ...)
	}
	secs := time.Since(start).Seconds()
	if job.State != pb.JobState_JOB_STATE_SUCCEEDED {
		return 0, 0, fmt.Errorf("job %s %v: %s", name, job.State, job.Reason)
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

// serveFunction is `banyan-bench fn sleep [--call MS]`: the Go function
// the microbatch scenario's minimal runs use as a line-protocol worker
// (and, with --call, once).
func serveFunction(args []string) int {
	sleep := func(a []string) (string, error) {
		if len(a) != 1 {
			return "", fmt.Errorf("sleep takes milliseconds")
		}
		ms, err := strconv.Atoi(a[0])
		if err != nil {
			return "", err
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return "", nil
	}
	if len(args) == 0 || args[0] != "sleep" {
		fmt.Fprintln(os.Stderr, "banyan-bench fn: only sleep")
		return 2
	}
	if len(args) > 1 && args[1] == "--call" {
		if _, err := sleep(args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	if err := worker.Serve(os.Stdin, os.Stdout, sleep); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
