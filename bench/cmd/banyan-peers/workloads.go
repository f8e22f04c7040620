package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/bench/peers"
	"github.com/banyan-sched/banyan/bench/schedbuild"
)

// harness runs each workload on a fresh Slurm cluster, then on a fresh
// sched dev, in the same process and temp dir.
type harness struct {
	o     options
	tmp   string
	cpus  int
	memMB int
	seq   int
}

// dir returns a new directory under the temp dir.
func (h *harness) dir(name string) string {
	h.seq++
	d := filepath.Join(h.tmp, fmt.Sprintf("%02d-%s", h.seq, name))
	_ = os.MkdirAll(d, 0o755)
	return d
}

func (h *harness) slurmConfig(dir string) peers.SlurmConfig {
	return peers.SlurmConfig{Dir: dir, CPUs: h.cpus, MemoryMB: h.memMB,
		MaxArraySize: max(h.o.tasks, h.o.queued, 1000) + 1, MaxJobCount: max(h.o.queued, h.o.queuedJobs, h.o.submissions*h.o.runs) + 10_000}
}

func (h *harness) startSlurm(ctx context.Context, name string) (*peers.Slurm, error) {
	c := h.slurmConfig(h.dir("slurm-" + name))
	var err error
	if c.CtldPort, err = peers.FreePort(); err != nil {
		return nil, err
	}
	if c.SlurmdPort, err = peers.FreePort(); err != nil {
		return nil, err
	}
	for c.SlurmdPort == c.CtldPort {
		if c.SlurmdPort, err = peers.FreePort(); err != nil {
			return nil, err
		}
	}
	return peers.StartSlurm(ctx, c)
}

func (h *harness) startDev(ctx context.Context, name string) (*peers.Dev, error) {
	return peers.StartDev(ctx, h.o.sched, h.dir("banyan-"+name), 1)
}

// workload builds a Workload from both sides' runs.
func workload(name, what, unit string, higher bool, slurm, banyan []float64, notes string) (peers.Workload, error) {
	s, err := peers.Summarize(slurm)
	if err != nil {
		return peers.Workload{}, fmt.Errorf("%s: slurm: %w", name, err)
	}
	b, err := peers.Summarize(banyan)
	if err != nil {
		return peers.Workload{}, fmt.Errorf("%s: banyan: %w", name, err)
	}
	return peers.Workload{Name: name, What: what, Unit: unit, HigherIsBetter: higher, Slurm: s, Banyan: b,
		Ratio: peers.Ratio(b, s), Notes: notes}, nil
}

// writeFile writes a job file under dir.
func writeFile(dir, name, body string) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}

// jobID is the first field of `sched job submit`'s line for a job.
func jobID(out string) (string, error) {
	f := strings.Fields(out)
	if len(f) == 0 || !strings.HasPrefix(f[0], "job-") {
		return "", fmt.Errorf("submit printed %q: want a job id first", strings.TrimSpace(out))
	}
	return f[0], nil
}

// ------------------------------------------------------------ submissions

func (h *harness) submit(ctx context.Context) ([]peers.Workload, error) {
	n := h.o.submissions
	var sl, bn []float64
	s, err := h.startSlurm(ctx, "submit")
	if err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		rate, err := loopRate(n, func() error {
			_, err := s.Run(ctx, "sbatch", "-Q", "-o", "/dev/null", "--wrap=true")
			return err
		})
		if err != nil {
			s.Stop(ctx)
			return nil, fmt.Errorf("slurm run %d: %w", r+1, err)
		}
		sl = append(sl, rate)
		if err := s.CancelAll(ctx); err != nil {
			s.Stop(ctx)
			return nil, err
		}
	}
	s.Stop(ctx)
	var ge []float64
	if h.o.gridEngine {
		if ge, err = h.geSubmit(ctx, n); err != nil {
			return nil, err
		}
	}
	d, err := h.startDev(ctx, "submit")
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	defer func() { _, _ = d.StopHelper(context.WithoutCancel(ctx)) }()
	file, err := writeFile(h.tmp, "one.yaml", peers.SubmitJobYAML)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "  building the CLI probes (bench/cliprobe)")
	probes, err := schedbuild.BuildProbes(ctx, h.tmp, os.Stderr)
	if err != nil {
		return nil, err
	}
	// Each run times sched's loop, then each probe's loop of the same
	// length against the same sched dev, so drift in the machine's speed
	// reaches them alike. sched's loop starts with no client helper: its
	// first call runs in sched-client and starts one, as a user's first
	// call does; the helper is stopped after the loop.
	probeRuns := map[string][]float64{}
	for r := 0; r < h.o.runs; r++ {
		if _, err := d.StopHelper(ctx); err != nil {
			return nil, fmt.Errorf("banyan run %d: %w", r+1, err)
		}
		submit := func(env []string) func() error {
			return func() error {
				out, err := d.SchedEnv(ctx, env, "job", "submit", file)
				if err == nil {
					_, err = jobID(out)
				}
				return err
			}
		}
		rate, err := loopRate(n, submit(nil))
		if err != nil {
			return nil, fmt.Errorf("banyan run %d: %w", r+1, err)
		}
		bn = append(bn, rate)
		if _, err := d.StopHelper(ctx); err != nil {
			return nil, fmt.Errorf("banyan run %d: %w", r+1, err)
		}
		rate, err = loopRate(n, submit([]string{"SCHED_HELPER=off"}))
		if err != nil {
			return nil, fmt.Errorf("banyan run %d, the helper off: %w", r+1, err)
		}
		probeRuns[helperOff] = append(probeRuns[helperOff], rate)
		for _, name := range schedbuild.Probes {
			argv := []string{probes[name], d.Addr}
			if name == "noop" {
				argv = argv[:1]
			}
			rate, err := loopRate(n, func() error {
				out, err := d.Run(ctx, argv...)
				if err == nil && name != "noop" {
					_, err = jobID(out)
				}
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("probe %s, run %d: %w", name, r+1, err)
			}
			probeRuns[name] = append(probeRuns[name], rate)
		}
	}
	w, err := workload("submit_per_s", fmt.Sprintf("%d one-job submissions, one CLI process each, in a loop", n), "jobs/s", true, sl, bn,
		"`sbatch -Q -o /dev/null --wrap=true` vs `sched job submit one.yaml` (one task `true`, cpu 1); each call returns once the job is acknowledged; the jobs run meanwhile; Slurm's queue is cancelled between runs"+
			geNote(h, "; Grid Engine: `qsub -b y -o /dev/null -j y /bin/true`, its queue deleted between runs")+
			"; sched is the front (cmd/schedfront), which hands each submit to the client helper (a sched-client process it starts on its first call, which then runs in sched-client itself; the helper keeps its connection to the server open) and prints its answer; the helper is stopped before each run"+
			"; the probes ran in the same runs, each right after sched's loop, against the same sched dev, built like the thin sched (no cgo, its tags, -trimpath)")
	ws, err := withGridEngine(w, err, ge)
	if err != nil {
		return nil, err
	}
	for _, name := range append([]string{helperOff}, schedbuild.Probes...) {
		if err := ws[0].AddBound(name, probeWhat[name], probeRuns[name]); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// helperOff is the probe row of `sched job submit` with SCHED_HELPER=off.
const helperOff = "sched-helper-off"

// probeWhat says what each CLI probe does (bench/cliprobe).
var probeWhat = map[string]string{
	helperOff: "`sched job submit` with SCHED_HELPER=off: each call in a sched-client process of its own (start-up, dial and call), as every call ran before the client helper",
	"noop":    "a Go program that does nothing: the runtime's start and exit, no call (the floor of any Go CLI)",
	"grpcgo":  "the same job in one SubmitJobs call with the least grpc-go allows (grpc.NewClient, the generated stub and wire codec); no flags, job file, cobra, retries or token",
	"h2frame": "the same job in one gRPC call framed by hand (x/net/http2's Framer and hpack, the protobuf encoded by hand), linking neither grpc-go nor the protobuf module",
	"wire":    "the same job with no HTTP/2 or gRPC library: preface, SETTINGS, HEADERS and DATA in one write, the reply's frames read by hand (x/net/http2/hpack decodes its headers); the leanest Go process we could write that makes the call",
}

// loopRate calls call n times in a row and returns the calls per second.
func loopRate(n int, call func() error) (float64, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := call(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// geNote is note when Grid Engine is measured, else nothing.
func geNote(h *harness, note string) string {
	if !h.o.gridEngine {
		return ""
	}
	return note
}

// withGridEngine adds Grid Engine's runs, when measured, to w.
func withGridEngine(w peers.Workload, err error, ge []float64) ([]peers.Workload, error) {
	if err != nil {
		return nil, err
	}
	if ge != nil {
		if err := w.AddGridEngine(ge); err != nil {
			return nil, err
		}
	}
	return []peers.Workload{w}, nil
}

// ------------------------------------------------------------------ tasks

func (h *harness) tasks(ctx context.Context) ([]peers.Workload, error) {
	n := h.o.tasks
	var sl, bn []float64
	s, err := h.startSlurm(ctx, "tasks")
	if err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		start := time.Now()
		if _, err := s.Run(ctx, "sbatch", "-Q", "-o", "/dev/null", fmt.Sprintf("--array=1-%d", n), "--wrap=/bin/true"); err != nil {
			s.Stop(ctx)
			return nil, fmt.Errorf("slurm run %d: %w", r+1, err)
		}
		if err := waitEmpty(ctx, s, time.Duration(n)*time.Second+time.Minute); err != nil {
			s.Stop(ctx)
			return nil, fmt.Errorf("slurm run %d: %w", r+1, err)
		}
		secs := time.Since(start).Seconds()
		sl = append(sl, float64(n)/secs)
		fmt.Fprintf(os.Stderr, "  slurm run %d: %d tasks in %.1fs\n", r+1, n, secs)
	}
	s.Stop(ctx)
	var ge []float64
	if h.o.gridEngine {
		if ge, err = h.geTasks(ctx, h.o.geTasks); err != nil {
			return nil, err
		}
	}
	d, err := h.startDev(ctx, "tasks")
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	file, err := writeFile(h.tmp, "true.yaml", fmt.Sprintf("name: true-tasks\ntasks:\n  - name: t\n    count: %d\n    command: [/bin/true]\n    resources: {cpu: 1, memory: 16Mi}\n", n))
	if err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		start := time.Now()
		out, err := d.Sched(ctx, "job", "submit", "--watch", file)
		if err != nil {
			return nil, fmt.Errorf("banyan run %d: %w", r+1, err)
		}
		if !strings.Contains(out, "succeeded") {
			return nil, fmt.Errorf("banyan run %d: the job did not succeed: %s", r+1, strings.TrimSpace(out))
		}
		secs := time.Since(start).Seconds()
		bn = append(bn, float64(n)/secs)
		fmt.Fprintf(os.Stderr, "  banyan run %d: %d tasks in %.1fs\n", r+1, n, secs)
	}
	w, err := workload("true_tasks_per_s", fmt.Sprintf("%d `/bin/true` tasks end to end on %d cpus", n, h.cpus), "tasks/s", true, sl, bn,
		"from the submitting command's start until the last task ended: Slurm `sbatch --array=1-N --wrap=/bin/true` (one CPU each, CR_CPU) polled with squeue every 100 ms until no job is pending, running or completing; Banyan one job of N tasks (cpu 1 each) with `sched job submit --watch`"+
			geNote(h, fmt.Sprintf("; Grid Engine: %d tasks, not N (its rate is its slots per scheduling pass, at most one pass a second; N would take hours): `qsub -b y -o /dev/null -j y -t 1-%d /bin/true` (one slot each, as many slots as cpus) polled with qstat every 100 ms until it lists nothing", h.o.geTasks, h.o.geTasks)))
	return withGridEngine(w, err, ge)
}

// waitEmpty polls squeue until no job is left.
func waitEmpty(ctx context.Context, s *peers.Slurm, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		n, err := s.Count(ctx, peers.Active)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d jobs still queued or running after %s", n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ------------------------------------------------------------- preemption

// minRunPause is how long the filling tasks run before the urgent one is
// submitted: past Banyan's default minimum run time (5 s) before a task
// may be preempted. Slurm gets the same pause.
const minRunPause = 6 * time.Second

func (h *harness) preempt(ctx context.Context) ([]peers.Workload, error) {
	var sl, bn []float64
	s, err := h.startSlurm(ctx, "preempt")
	if err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		dir := h.dir("slurm-preempt-sample")
		marks := filepath.Join(dir, "started")
		if err := os.MkdirAll(marks, 0o755); err != nil {
			s.Stop(ctx)
			return nil, fmt.Errorf("marks: %w", err)
		}
		fill := fmt.Sprintf("touch %s/$SLURM_ARRAY_TASK_ID; exec sleep 300", marks)
		if _, err := s.Run(ctx, "sbatch", "-Q", "-p", "low", "-o", "/dev/null", fmt.Sprintf("--array=1-%d", h.cpus), "--wrap="+fill); err != nil {
			s.Stop(ctx)
			return nil, err
		}
		lat, err := h.urgentStart(ctx, dir, marks, func(ts string) error {
			_, err := s.Run(ctx, "sbatch", "-Q", "-p", "high", "-o", "/dev/null", "--wrap="+stampCmd(ts))
			return err
		})
		if err == nil {
			err = s.CancelAll(ctx)
		}
		if err != nil {
			s.Stop(ctx)
			return nil, fmt.Errorf("slurm sample %d: %w", r+1, err)
		}
		sl = append(sl, lat)
	}
	s.Stop(ctx)
	var ge []float64
	if h.o.gridEngine {
		if ge, err = h.gePreempt(ctx); err != nil {
			return nil, err
		}
	}
	d, err := h.startDev(ctx, "preempt")
	if err != nil {
		return nil, err
	}
	defer d.Stop()
	if _, err := d.Sched(ctx, "pool", "create", "fill"); err != nil {
		return nil, err
	}
	if _, err := d.Sched(ctx, "pool", "create", "urgent", "--guaranteed", "cpu=1,memory=1Gi"); err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		dir := h.dir("banyan-preempt-sample")
		marks := filepath.Join(dir, "started")
		if err := os.MkdirAll(marks, 0o755); err != nil {
			return nil, fmt.Errorf("marks: %w", err)
		}
		fillFile, err := writeFile(dir, "fill.yaml", fmt.Sprintf("name: fill\npool: fill\nclass: opportunistic\ntasks:\n  - name: f\n    count: %d\n    command: [sh, -c, %q]\n    resources: {cpu: 1, memory: 16Mi}\n",
			h.cpus, fmt.Sprintf("touch %s/${INDEX}; exec sleep 300", marks)))
		if err != nil {
			return nil, err
		}
		out, err := d.Sched(ctx, "job", "submit", fillFile)
		if err != nil {
			return nil, err
		}
		fillID, err := jobID(out)
		if err != nil {
			return nil, err
		}
		lat, err := h.urgentStart(ctx, dir, marks, func(ts string) error {
			f, err := writeFile(dir, "urgent.yaml", fmt.Sprintf("name: urgent\npool: urgent\nclass: latency\npriority: 100\ntasks:\n  - name: u\n    command: [sh, -c, %q]\n    resources: {cpu: 1, memory: 16Mi}\n", stampCmd(ts)))
			if err != nil {
				return err
			}
			_, err = d.Sched(ctx, "job", "submit", f)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("banyan sample %d: %w", r+1, err)
		}
		if _, err := d.Sched(ctx, "job", "cancel", fillID); err != nil {
			return nil, fmt.Errorf("banyan sample %d: %w", r+1, err)
		}
		bn = append(bn, lat)
	}
	w, err := workload("preempt_start_s", fmt.Sprintf("high-priority task's start, all %d cpus busy, preemption on", h.cpus), "s", false, sl, bn,
		fmt.Sprintf("one sample per run: fill every cpu with low-priority `sleep` tasks, wait until all started plus %s (Banyan's default minimum run time is 5 s), then time from just before the submitting command to the timestamp the urgent task writes (`date +%%s.%%N`); Slurm: partitions low/high with PriorityTier 1/2, preempt/partition_prio, PreemptMode=REQUEUE; Banyan: opportunistic fill in pool fill, urgent job class latency priority 100 in pool urgent (cpu=1,memory=1Gi guaranteed: preemption is for a pool within its guarantee), default preemption settings", minRunPause)+
			geNote(h, "; Grid Engine: fill `qsub -q batch.q -t 1-CPUS`, urgent `qsub -q urgent.q` (one slot, batch.q subordinate to it: its jobs are suspended while urgent.q runs one, not requeued)"))
	return withGridEngine(w, err, ge)
}

// stampCmd writes the current time (seconds, nanoseconds) to ts.
func stampCmd(ts string) string {
	return fmt.Sprintf("date +%%s.%%N > %s.tmp && mv %s.tmp %s", ts, ts, ts)
}

// urgentStart waits until h.cpus tasks have marked their start in marks,
// then minRunPause, then calls submit and returns the seconds from just
// before it to the time the urgent task wrote.
func (h *harness) urgentStart(ctx context.Context, dir, marks string, submit func(ts string) error) (float64, error) {
	if err := poll(ctx, 2*time.Minute, 50*time.Millisecond, func() bool {
		es, _ := os.ReadDir(marks)
		return len(es) >= h.cpus
	}); err != nil {
		return 0, fmt.Errorf("cluster not full: %w", err)
	}
	time.Sleep(minRunPause)
	ts := filepath.Join(dir, "urgent.ts")
	t0 := time.Now()
	if err := submit(ts); err != nil {
		return 0, err
	}
	var b []byte
	if err := poll(ctx, 2*time.Minute, 5*time.Millisecond, func() bool {
		var err error
		b, err = os.ReadFile(ts)
		return err == nil
	}); err != nil {
		return 0, fmt.Errorf("urgent task never started: %w", err)
	}
	sec, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return 0, fmt.Errorf("urgent task's timestamp %q: %w", b, err)
	}
	return sec - float64(t0.UnixNano())/1e9, nil
}

func poll(ctx context.Context, limit, step time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
	}
	return nil
}

// ----------------------------------------------------------------- memory

// settle is how long a controller is left after start and after the queue
// is filled before its RSS is read.
const settle = 3 * time.Second

func (h *harness) memory(ctx context.Context) ([]peers.Workload, error) {
	q := h.o.queued
	var sl, bn, slD, bnD []float64
	slRetries := 0
	for r := 0; r < h.o.runs; r++ {
		s, err := h.startSlurm(ctx, "memory")
		if err != nil {
			return nil, err
		}
		before, after, err := rssAround(h.slurmRSS(s), func() error {
			_, retries, err := s.RunRetried(ctx, sbatchTries, "sbatch", "-Q", "-H", "-o", "/dev/null", fmt.Sprintf("--array=1-%d", q), "--wrap=/bin/true")
			slRetries += retries
			noteRetries(r, retries)
			return err
		})
		s.Stop(ctx)
		if err != nil {
			return nil, fmt.Errorf("slurm run %d: %w", r+1, err)
		}
		sl, slD = append(sl, mib(after)), append(slD, mib(after-before))
	}
	var ge, geD []float64
	if h.o.gridEngine {
		var err error
		if ge, geD, err = h.geMemory(ctx, q); err != nil {
			return nil, err
		}
	}
	file, err := writeFile(h.tmp, "queued.yaml", fmt.Sprintf("name: queued\ntasks:\n  - name: q\n    count: %d\n    command: [/bin/true]\n    resources: {cpu: 1, memory: 16Mi}\n    constraints: [peers=never]\n", q))
	if err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		d, err := h.startDev(ctx, "memory")
		if err != nil {
			return nil, err
		}
		before, after, err := rssAround(func() (int64, error) { return peers.RSS(d.PID()) }, func() error {
			_, err := d.Sched(ctx, "job", "submit", file)
			return err
		})
		d.Stop()
		if err != nil {
			return nil, fmt.Errorf("banyan run %d: %w", r+1, err)
		}
		bn, bnD = append(bn, mib(after)), append(bnD, mib(after-before))
	}
	what := fmt.Sprintf("controller RSS with %d tasks queued as one array", q)
	notes := "Slurm: slurmctld's VmRSS after `sbatch -H --array=1-N --wrap=/bin/true` (held; a pending array is one job record until its tasks start); Banyan: the sched dev process's VmRSS (server and its local agent) after one job of N tasks constrained to a label no agent has; read 3 s after the submit, with no forced GC, so Banyan's figure includes heap the Go runtime has not yet returned to the OS after the submit; a fresh controller per run"
	notes += retriesNote(slRetries)
	notes += geNote(h, "; Grid Engine: sge_qmaster's VmRSS after `qsub -h -t 1-N -b y /bin/true` (held)")
	w1, err := workload("memory_array_mib", what, "MiB", false, sl, bn, notes)
	out, err := withGridEngine(w1, err, ge)
	if err != nil {
		return nil, err
	}
	w2, err := workload("memory_array_delta_mib", what+", less its RSS before the submit", "MiB", false, slD, bnD, "the same runs")
	more, err := withGridEngine(w2, err, geD)
	if err != nil {
		return nil, err
	}
	out = append(out, more...)
	if h.o.queuedJobs == 0 {
		return out, nil
	}
	jobs, err := h.memoryJobs(ctx)
	return append(out, jobs...), err
}

// memoryJobs is the memory figure with one-task jobs: Slurm's held jobs
// are one record each.
func (h *harness) memoryJobs(ctx context.Context) ([]peers.Workload, error) {
	q := h.o.queuedJobs
	var sl, bn []float64
	slRetries := 0
	for r := 0; r < h.o.runs; r++ {
		s, err := h.startSlurm(ctx, "memory-jobs")
		if err != nil {
			return nil, err
		}
		_, after, err := rssAround(h.slurmRSS(s), func() error {
			all := 0
			defer func() { slRetries += all; noteRetries(r, all) }()
			for i := 0; i < q; i++ {
				_, retries, err := s.RunRetried(ctx, sbatchTries, "sbatch", "-Q", "-H", "-o", "/dev/null", "--wrap=/bin/true")
				all += retries
				if err != nil {
					return err
				}
			}
			return nil
		})
		s.Stop(ctx)
		if err != nil {
			return nil, fmt.Errorf("slurm run %d: %w", r+1, err)
		}
		sl = append(sl, mib(after))
	}
	var ge []float64
	if h.o.gridEngine {
		var err error
		if ge, err = h.geMemoryJobs(ctx, q); err != nil {
			return nil, err
		}
	}
	var b strings.Builder
	b.WriteString("jobs:\n")
	for i := 0; i < q; i++ {
		b.WriteString("  - name: q\n    tasks:\n      - name: q\n        command: [/bin/true]\n        resources: {cpu: 1, memory: 16Mi}\n        constraints: [peers=never]\n")
	}
	file, err := writeFile(h.tmp, "queued-jobs.yaml", b.String())
	if err != nil {
		return nil, err
	}
	for r := 0; r < h.o.runs; r++ {
		d, err := h.startDev(ctx, "memory-jobs")
		if err != nil {
			return nil, err
		}
		_, after, err := rssAround(func() (int64, error) { return peers.RSS(d.PID()) }, func() error {
			_, err := d.Sched(ctx, "job", "submit", file)
			return err
		})
		d.Stop()
		if err != nil {
			return nil, fmt.Errorf("banyan run %d: %w", r+1, err)
		}
		bn = append(bn, mib(after))
	}
	w, err := workload("memory_jobs_mib", fmt.Sprintf("controller RSS with %d one-task jobs queued", q), "MiB", false, sl, bn,
		"Slurm: N held `sbatch -H --wrap=/bin/true` calls; Banyan: one `sched job submit` of a file of N one-task jobs constrained to a label no agent has; RSS as above"+
			retriesNote(slRetries)+geNote(h, "; Grid Engine: N held `qsub -h -b y /bin/true` calls"))
	return withGridEngine(w, err, ge)
}

// sbatchTries bounds the calls of one sbatch that fills a queue whose
// memory is read, when its connection to slurmctld is lost on the way
// (peers.Slurm.RunRetried).
const sbatchTries = 5

// noteRetries says on stderr how many sbatch calls of a memory run were
// made again after a lost connection (each may have queued one job more).
func noteRetries(run, retries int) {
	if retries > 0 {
		fmt.Fprintf(os.Stderr, "banyan-peers: memory, slurm run %d: %d sbatch calls retried after a lost connection\n", run+1, retries)
	}
}

// retriesNote is what a workload's notes say of its retried sbatch calls.
func retriesNote(retries int) string {
	const what = "; an sbatch that loses its connection to slurmctld is made again (up to %d tries): "
	if retries == 0 {
		return fmt.Sprintf(what+"none was", sbatchTries)
	}
	return fmt.Sprintf(what+"%d were, each may have queued one job more", sbatchTries, retries)
}

func (h *harness) slurmRSS(s *peers.Slurm) func() (int64, error) {
	return func() (int64, error) { return peers.RSS(s.CtldPID()) }
}

// rssAround reads RSS after settle, runs fill, and reads it again after
// settle.
func rssAround(rss func() (int64, error), fill func() error) (before, after int64, err error) {
	time.Sleep(settle)
	if before, err = rss(); err != nil {
		return 0, 0, err
	}
	if err := fill(); err != nil {
		return 0, 0, err
	}
	time.Sleep(settle)
	if after, err = rss(); err != nil {
		return 0, 0, err
	}
	return before, after, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
