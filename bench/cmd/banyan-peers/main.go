// Command banyan-peers measures Banyan and Slurm on the same workloads on
// this machine, one after the other in one run: submissions acknowledged
// one CLI call at a time, /bin/true tasks end to end, a high-priority
// task's start on a full cluster with preemption, and controller memory
// with a large queue. Slurm is a private one-node cluster on loopback
// (Debian's slurm-wlm and munge; its own config, state, ports and munge
// key under a temp dir); Grid Engine, the second peer, a private one-host
// cell in a network namespace of its own (gridengine.go); Banyan is
// `sched dev` built from this tree.
//
//	banyan-peers [-quick] [-runs N] [-only NAME[,NAME]] [-out DIR] [-sched BIN] [-gridengine=false]
//
// It writes DIR/peers.json and DIR/peers.md and merges the ratios into
// DIR/latest.json under "peers". It must run as root (slurmd does, and the
// Grid Engine cell's network namespace needs it).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/bench/peers"
	"github.com/banyan-sched/banyan/bench/schedbuild"
)

type options struct {
	runs                                   int
	submissions, tasks, queued, queuedJobs int
	only                                   map[string]bool
	out, sched                             string
	keep                                   bool
	// gridEngine adds the second peer to every workload.
	gridEngine bool
	// geTasks is the tasks workload's count on Grid Engine (see
	// gridengine.go: its rate is its slots per scheduling pass).
	geTasks int
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	quick := flag.Bool("quick", false, "smaller counts: 300 submissions, 1,000 tasks (100 on Grid Engine), 10,000 queued, 2,000 queued jobs")
	flag.IntVar(&o.runs, "runs", 3, "runs of each workload on each scheduler (the figure is their median)")
	flag.IntVar(&o.submissions, "submissions", 1000, "one-job submissions per run")
	flag.IntVar(&o.tasks, "tasks", 10_000, "/bin/true tasks per run")
	flag.IntVar(&o.queued, "queued", 100_000, "queued tasks (one array) for the memory figure")
	flag.IntVar(&o.queuedJobs, "queued-jobs", 10_000, "queued one-task jobs for the second memory figure (0: skip)")
	only := flag.String("only", "", "comma-separated workloads: submit, tasks, preempt, memory")
	flag.StringVar(&o.out, "out", "bench/results", "directory for peers.json, peers.md and latest.json")
	flag.StringVar(&o.sched, "sched", "", "sched binary, with sched-client and banyand beside it (default: the three, built into the temp dir)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs) for inspection")
	flag.BoolVar(&o.gridEngine, "gridengine", true, "also measure Grid Engine (Debian's gridengine-master, -exec, -client), the second peer")
	flag.IntVar(&o.geTasks, "gridengine-tasks", 400, "/bin/true tasks per run on Grid Engine (it starts one a slot a second: 10,000 would take over an hour a run)")
	flag.Parse()
	if *quick {
		o.submissions, o.tasks, o.queued, o.queuedJobs, o.geTasks = 300, 1000, 10_000, 2000, 100
	}
	if o.runs < 1 || o.submissions < 1 || o.tasks < 1 || o.queued < 1 || o.queuedJobs < 0 || o.geTasks < 1 {
		fmt.Fprintln(os.Stderr, "banyan-peers: -runs, -submissions, -tasks, -gridengine-tasks and -queued must be at least 1, -queued-jobs at least 0")
		return 2
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			if !known[n] {
				fmt.Fprintf(os.Stderr, "banyan-peers: unknown workload %q: want submit, tasks, preempt or memory\n", n)
				return 2
			}
			o.only[n] = true
		}
	}
	if err := preflight(o.gridEngine); err != nil {
		fmt.Fprintln(os.Stderr, "banyan-peers:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measure(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "banyan-peers:", err)
		return 1
	}
	return 0
}

var known = map[string]bool{"submit": true, "tasks": true, "preempt": true, "memory": true}

// preflight checks for root and for Slurm's and munge's programs, and
// Grid Engine's when it is measured.
func preflight(gridEngine bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root: this private Slurm runs slurmd as root (no cgroups: proctrack/linuxproc, task/none)")
	}
	for _, p := range []string{"munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found: install Debian's slurm-wlm and munge (scripts/install-slurm.sh; make bench-peers does it)", p)
		}
	}
	if !gridEngine {
		return nil
	}
	if err := peers.GridEngineMissing(); err != nil {
		return fmt.Errorf("%w: install Debian's gridengine-master, gridengine-exec and gridengine-client (scripts/install-gridengine.sh; make bench-peers does it), or pass -gridengine=false", err)
	}
	return nil
}

func measure(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "banyan-peers-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "banyan-peers: keeping", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if o.sched == "" {
		fmt.Fprintln(os.Stderr, "banyan-peers: building sched (thin) and banyand")
		if o.sched, err = schedbuild.Build(ctx, tmp, os.Stderr); err != nil {
			return err
		}
	}
	h := &harness{o: o, tmp: tmp, cpus: runtime.NumCPU(), memMB: memoryMB()}
	rep := peers.Report{
		Generated: time.Now().UTC().Format(time.RFC3339),
		Commit:    commit(ctx),
		Machine:   map[string]any{"cpus": h.cpus, "model": cpuModel(), "memory_mb": h.memMB, "os": runtime.GOOS + "/" + runtime.GOARCH, "go": runtime.Version()},
		Shared:    "The machine may have been shared with other work during the run.",
		Banyan: map[string]string{
			"process":     "sched dev built from this tree: one single-node server (raft on disk) and its local agents in one process, gRPC on loopback",
			"agents":      "1 local agent offering the host's cpus and memory",
			"cli":         "one `sched job submit FILE` process per call",
			"tasks":       "cpu: 1 and memory: 16Mi per task (Slurm: one CPU per job with CR_CPU), so both run as many tasks at once as there are cpus",
			"preemption":  "defaults: minimum run time 5 s, 10 preemptions/s with a burst of 20",
			"pools":       "preempt: pool fill (no guarantee) runs opportunistic work; pool urgent has cpu=1,memory=1Gi guaranteed",
			"held_queued": "memory: tasks constrained to a label no agent has, so they stay queued",
		},
		Scale:  map[string]int{"runs": o.runs, "submissions": o.submissions, "tasks": o.tasks, "queued": o.queued, "queued_jobs": o.queuedJobs},
		Errors: map[string]string{},
	}
	conf := h.slurmConfig("probe")
	rep.Slurm = peers.SlurmInfo{Version: slurmVersion(ctx), Settings: conf.Tuning(), Node: conf.Node(), Partitions: conf.Partitions()}
	if o.gridEngine {
		if rep.GridEngine, err = h.gridEngineInfo(ctx); err != nil {
			return fmt.Errorf("grid engine: %w", err)
		}
		rep.Scale["gridengine_tasks"] = o.geTasks
	}
	for _, w := range []struct {
		name string
		fn   func(context.Context) ([]peers.Workload, error)
	}{{"submit", h.submit}, {"tasks", h.tasks}, {"preempt", h.preempt}, {"memory", h.memory}} {
		if o.only != nil && !o.only[w.name] {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "banyan-peers: %s\n", w.name)
		start := time.Now()
		ws, err := w.fn(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "banyan-peers: %s: %v\n", w.name, err)
			// The temp dir's path is this machine's; the results name it <tmp>.
			msg := strings.ReplaceAll(err.Error(), o.sched, "sched")
			rep.Errors[w.name] = strings.ReplaceAll(msg, tmp, "<tmp>")
		}
		for _, x := range ws {
			fmt.Fprintf(os.Stderr, "  %s: slurm %.4g, banyan %.4g %s (median of %d), banyan/slurm %.2f\n",
				x.Name, x.Slurm.Median, x.Banyan.Median, x.Unit, len(x.Banyan.Runs), x.Ratio)
			if x.GridEngine != nil {
				fmt.Fprintf(os.Stderr, "  %s: grid engine %.4g %s, banyan/grid engine %.2f\n", x.Name, x.GridEngine.Median, x.Unit, x.RatioGridEngine)
			}
		}
		fmt.Fprintf(os.Stderr, "  (%s in %.0fs)\n", w.name, time.Since(start).Seconds())
		rep.Workloads = append(rep.Workloads, ws...)
	}
	return write(o.out, rep)
}

func write(dir string, rep peers.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	b, err := jsonIndent(rep)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "peers.json"), b, 0o644); err != nil {
		return fmt.Errorf("write peers.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "peers.md"), []byte(rep.Markdown()), 0o644); err != nil {
		return fmt.Errorf("write peers.md: %w", err)
	}
	if err := peers.MergeLatest(filepath.Join(dir, "latest.json"), "peers", rep.Latest()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "banyan-peers: wrote %s/peers.json, peers.md and the \"peers\" key of latest.json\n", dir)
	if len(rep.Errors) > 0 {
		return fmt.Errorf("%d workload(s) failed; see peers.json", len(rep.Errors))
	}
	return nil
}
