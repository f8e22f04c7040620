package main

// The second peer, Grid Engine (Debian's gridengine-*, Son of Grid Engine
// 8.1.9): a private one-host cell in a network namespace of its own,
// measured on the workloads it has an equivalent for (submissions,
// /bin/true tasks, controller memory, a high-priority job's start with
// preemption), right after Slurm and before Banyan. Grid Engine preempts
// by queue subordination: the urgent job goes to urgent.q, whose one slot
// is over the host's cpus, and while it runs batch.q's jobs are suspended
// (SIGSTOP), not requeued as Slurm's and Banyan's are.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/banyan-sched/banyan/bench/peers"
)

// geSetup is how the cell is set up, for the report.
const geSetup = "one host (sge_qmaster and sge_execd, classic spooling on disk, daemons as root) in a network namespace of its own with only loopback; " +
	"commands run in that namespace straight from the benchmark (the programs under bin/lx-amd64, not Debian's wrapper script); queue batch.q with one slot per cpu"

// gridEngineConfig is the cell's configuration for this run.
func (h *harness) gridEngineConfig(dir string) peers.GridEngineConfig {
	host, _ := os.Hostname()
	return peers.GridEngineConfig{Dir: dir, Hostname: host, Slots: h.cpus, MaxArrayTasks: max(h.o.tasks, h.o.queued, 1000) + 1}
}

// startGridEngine starts a fresh cell; urgent adds urgent.q
// (GridEngineConfig.Urgent).
func (h *harness) startGridEngine(ctx context.Context, name string, urgent bool) (*peers.GridEngine, error) {
	c := h.gridEngineConfig(h.dir("gridengine-" + name))
	c.Urgent = urgent
	var err error
	if c.QmasterPort, err = peers.FreePort(); err != nil {
		return nil, err
	}
	for c.ExecdPort == 0 || c.ExecdPort == c.QmasterPort {
		if c.ExecdPort, err = peers.FreePort(); err != nil {
			return nil, err
		}
	}
	return peers.StartGridEngine(ctx, c)
}

// gridEngineInfo starts a cell (with urgent.q, so that its settings are
// recorded too) to read its version and returns the report's record of it.
func (h *harness) gridEngineInfo(ctx context.Context) (*peers.GridEngineInfo, error) {
	g, err := h.startGridEngine(ctx, "probe", true)
	if err != nil {
		return nil, err
	}
	defer g.Stop(ctx)
	return &peers.GridEngineInfo{Version: g.Version(ctx), Settings: g.Conf.Tuning(), Setup: geSetup}, nil
}

// qsub submits a binary job (-b y) with its output dropped; args are the
// rest of qsub's arguments, the command last.
func qsub(ctx context.Context, g *peers.GridEngine, args ...string) error {
	_, err := g.Run(ctx, append([]string{"qsub", "-b", "y", "-o", "/dev/null", "-j", "y"}, args...)...)
	return err
}

// geEachRun starts one cell for a workload and returns sample's figure for
// each of the runs, one after another on that cell.
func (h *harness) geEachRun(ctx context.Context, name string, urgent bool, sample func(*peers.GridEngine) (float64, error)) ([]float64, error) {
	g, err := h.startGridEngine(ctx, name, urgent)
	if err != nil {
		return nil, err
	}
	defer g.Stop(ctx)
	var out []float64
	for r := 0; r < h.o.runs; r++ {
		v, err := sample(g)
		if err != nil {
			return nil, fmt.Errorf("grid engine run %d: %w", r+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// geSubmit is the submissions workload on Grid Engine: n qsub calls one
// after another, each returning once qmaster has the job.
func (h *harness) geSubmit(ctx context.Context, n int) ([]float64, error) {
	return h.geEachRun(ctx, "submit", false, func(g *peers.GridEngine) (float64, error) {
		rate, err := loopRate(n, func() error { return qsub(ctx, g, "/bin/true") })
		if err != nil {
			return 0, err
		}
		return rate, g.DeleteAll(ctx)
	})
}

// geTasks is the /bin/true workload on Grid Engine: one array of n tasks,
// timed until qstat lists nothing.
func (h *harness) geTasks(ctx context.Context, n int) ([]float64, error) {
	return h.geEachRun(ctx, "tasks", false, func(g *peers.GridEngine) (float64, error) {
		start := time.Now()
		if err := qsub(ctx, g, "-t", fmt.Sprintf("1-%d", n), "/bin/true"); err != nil {
			return 0, err
		}
		limit := time.Duration(n)*time.Second + time.Minute
		if err := poll(ctx, limit, 100*time.Millisecond, func() bool {
			left, err := g.Count(ctx)
			return err == nil && left == 0
		}); err != nil {
			return 0, fmt.Errorf("tasks not done: %w", err)
		}
		secs := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "  grid engine: %d tasks in %.1fs\n", n, secs)
		return float64(n) / secs, nil
	})
}

// geMemory is the memory workload on Grid Engine: sge_qmaster's RSS after
// one held array of q tasks (and its growth), a fresh cell per run.
func (h *harness) geMemory(ctx context.Context, q int) (after, delta []float64, err error) {
	for r := 0; r < h.o.runs; r++ {
		g, err := h.startGridEngine(ctx, "memory", false)
		if err != nil {
			return nil, nil, err
		}
		before, a, err := rssAround(func() (int64, error) { return peers.RSS(g.QmasterPID()) }, func() error {
			return qsub(ctx, g, "-h", "-t", fmt.Sprintf("1-%d", q), "/bin/true")
		})
		g.Stop(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("grid engine run %d: %w", r+1, err)
		}
		after, delta = append(after, mib(a)), append(delta, mib(a-before))
	}
	return after, delta, nil
}

// geMemoryJobs is sge_qmaster's RSS after q held one-task jobs, a fresh
// cell per run.
func (h *harness) geMemoryJobs(ctx context.Context, q int) ([]float64, error) {
	var out []float64
	for r := 0; r < h.o.runs; r++ {
		g, err := h.startGridEngine(ctx, "memory-jobs", false)
		if err != nil {
			return nil, err
		}
		_, a, err := rssAround(func() (int64, error) { return peers.RSS(g.QmasterPID()) }, func() error {
			for i := 0; i < q; i++ {
				if err := qsub(ctx, g, "-h", "/bin/true"); err != nil {
					return err
				}
			}
			return nil
		})
		g.Stop(ctx)
		if err != nil {
			return nil, fmt.Errorf("grid engine run %d: %w", r+1, err)
		}
		out = append(out, mib(a))
	}
	return out, nil
}

// gePreempt is the preemption workload on Grid Engine: every batch.q slot
// busy with a `sleep` job for minRunPause, then the time from the urgent
// job's qsub to the timestamp it writes, one sample per run.
func (h *harness) gePreempt(ctx context.Context) ([]float64, error) {
	return h.geEachRun(ctx, "preempt", true, func(g *peers.GridEngine) (float64, error) {
		dir := h.dir("gridengine-preempt-sample")
		marks := filepath.Join(dir, "started")
		if err := os.MkdirAll(marks, 0o755); err != nil {
			return 0, fmt.Errorf("marks: %w", err)
		}
		fill, err := writeFile(dir, "fill.sh", fmt.Sprintf("touch %s/$SGE_TASK_ID\nexec sleep 300\n", marks))
		if err != nil {
			return 0, err
		}
		if err := qsub(ctx, g, "-q", peers.GridEngineQueue, "-t", fmt.Sprintf("1-%d", h.cpus), "/bin/sh", fill); err != nil {
			return 0, err
		}
		lat, err := h.urgentStart(ctx, dir, marks, func(ts string) error {
			urgent, err := writeFile(dir, "urgent.sh", stampCmd(ts)+"\n")
			if err != nil {
				return err
			}
			return qsub(ctx, g, "-q", peers.GridEngineUrgentQueue, "/bin/sh", urgent)
		})
		if err != nil {
			return 0, err
		}
		return lat, g.DeleteAll(ctx)
	})
}
