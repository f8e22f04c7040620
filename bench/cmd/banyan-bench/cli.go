package main

// The cli scenario: what one `sched job submit` call costs, one process per
// call, the way ingest scripts and operators call the CLI in loops (and
// the way sbatch is called). It measures a loop of calls against a real
// `sched dev` process and splits a call's time into what happens before
// main (exec, runtime start-up, package initialisation), the phases inside
// main (SCHED_TIMING's report) and the exit.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/chaos"
)

// cliCall is one measured CLI process.
type cliCall struct {
	wall    time.Duration // fork to reaped
	preMain time.Duration // fork to the start of main (exec, runtime, package init)
	inMain  time.Duration // main's own total
	cpu     time.Duration // user + system of the process
	phases  map[string]time.Duration
}

// runCLI runs the submission loop: n calls of `sched job submit` of a
// one-task job, one after another, each its own process, against `sched
// dev` (one server, one local agent, data dir on disk), and reports
// calls/s and where a call's time goes.
func runCLI(o options) Result {
	const n = 300
	dir, cleanup := tempDir("cli")
	defer cleanup()
	bin, err := schedBinary(o.work) // cluster.go: built once per benchmark process, in its own dir
	if err != nil {
		return Result{Err: err.Error()}
	}
	ports, err := chaos.FreeLoopbackAddrs(1)
	if err != nil {
		return Result{Err: err.Error()}
	}
	addr := ports[0]
	dev, stop, err := startDev(bin, addr, filepath.Join(dir, "dev"))
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer stop()
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, []byte("name: cli\npool: default\ntasks:\n  - command: [/bin/true]\n"), 0o644); err != nil {
		return Result{Err: err.Error()}
	}
	submit := []string{"--addr", addr, "job", "submit", jobFile}
	// The client helper: the warm-up's first call starts it (and runs in
	// sched-client itself), as a user's first call does.
	defer func() { _, _ = cliRun(bin, []string{"helper", "stop"}, nil) }()
	for i := 0; i < 10; i++ { // warm the page cache, the server and the helper
		if _, err := cliRun(bin, submit, nil); err != nil {
			return Result{Err: "warm-up: " + err.Error()}
		}
	}
	helperPID, err := cliHelperPID(bin)
	if err != nil {
		return Result{Err: err.Error()}
	}
	load := loadAverage()
	devBefore, err := procCPU(dev)
	if err != nil {
		return Result{Err: "sched dev CPU: " + err.Error()}
	}
	helperBefore, err := procCPU(helperPID)
	if err != nil {
		return Result{Err: "client helper CPU: " + err.Error()}
	}
	loop := func(env []string) ([]cliCall, float64, error) {
		calls := make([]cliCall, 0, n)
		start := time.Now()
		for i := 0; i < n; i++ {
			c, err := cliRun(bin, submit, env)
			if err != nil {
				return nil, 0, fmt.Errorf("call %d: %w", i, err)
			}
			calls = append(calls, c)
		}
		return calls, float64(n) / time.Since(start).Seconds(), nil
	}
	helped, rate, err := loop(nil)
	if err != nil {
		return Result{Err: err.Error()}
	}
	devAfter, err := procCPU(dev)
	if err != nil {
		return Result{Err: "sched dev CPU: " + err.Error()}
	}
	helperAfter, err := procCPU(helperPID)
	if err != nil {
		return Result{Err: "client helper CPU: " + err.Error()}
	}
	// Where a call's time goes when it runs in a process of its own: the
	// helper off, sched-client's phases.
	calls, directRate, err := loop([]string{"SCHED_HELPER=off", "SCHED_TIMING=1"})
	if err != nil {
		return Result{Err: "the helper off: " + err.Error()}
	}

	help, err := cliLoopRate(bin, []string{"--help"}, 100)
	if err != nil {
		return Result{Err: "help: " + err.Error()}
	}
	trueRate, err := cliLoopRate("/bin/true", nil, 100)
	if err != nil {
		return Result{Err: "/bin/true: " + err.Error()}
	}
	initMs, err := packageInitMs(bin, 20)
	if err != nil {
		return Result{Err: "inittrace: " + err.Error()}
	}
	m := cliMetrics(calls) // the helper off
	hm := cliMetrics(helped)
	m["calls"], m["calls_per_s"], m["help_calls_per_s"], m["bin_true_per_s"], m["package_init_ms"] = n, rate, help, trueRate, initMs
	m["direct_calls_per_s"] = directRate
	m["helper_wall_ms"], m["helper_wall_p50_ms"], m["helper_wall_p99_ms"], m["front_cpu_ms"] = hm["wall_ms"], hm["wall_p50_ms"], hm["wall_p99_ms"], hm["cpu_ms"]
	m["exec_and_runtime_ms"] = m["pre_main_ms"] - initMs
	m["dev_cpu_ms"] = float64(devAfter-devBefore) / float64(time.Millisecond) / n
	m["helper_cpu_ms"] = float64(helperAfter-helperBefore) / float64(time.Millisecond) / n
	m["loadavg_1m"] = load
	ref := sbatchRateAt(filepath.Join(o.out, "latest"+o.suffix+".json"), o.commit)
	if ref.perS > 0 {
		m["sbatch_per_s"] = ref.perS // the reference, not a figure of this run
	}
	return Result{
		Summary: fmt.Sprintf("%d `sched job submit` calls of one job against `sched dev`, one process each: %.0f calls/s through the client helper (%.2f ms/call; CPU a call: sched %.2f ms, the helper %.2f, sched dev %.2f); "+
			"with SCHED_HELPER=off %.0f calls/s (%.2f ms CPU), a call: before main %.2f ms (package init %.2f), in main %.2f ms (build %.2f, dial %.2f, connect %.2f, rpc %.2f), exit %.2f; `sched --help` %.0f/s, /bin/true %.0f/s",
			n, rate, 1000/rate, m["front_cpu_ms"], m["helper_cpu_ms"], m["dev_cpu_ms"], directRate, m["cpu_ms"], m["pre_main_ms"], initMs, m["in_main_ms"], m["build_ms"], m["dial_ms"], m["connect_ms"], m["rpc_ms"],
			m["exit_ms"], help, trueRate),
		Metrics: m,
		Setup: &Setup{Servers: 1, Processes: "`sched dev` (one process: a single-node server, raft on disk with fsync, and its default single agent); " +
			"one `sched` process (the front) per call, started by the benchmark, which hands the call to the client helper (one `sched-client helper serve` process, started by the warm-up's first call, its connection to sched dev kept open); " +
			"then the same loop with SCHED_HELPER=off: each call in a `sched-client` process of its own (the front execs it)",
			Agents:   "1, the local agent in `sched dev`, running the jobs' /bin/true tasks",
			Jobs:     fmt.Sprintf("%d `sched job submit` calls in a loop after 10 warm-up calls, one one-task /bin/true job each (default ask); then %d more with the helper off", n, n),
			Settings: map[string]string{}},
		Target: ref.target(), Met: met(cliTargetMet(m)),
		Notes: "sequential loop, one process per call, fork to reaped; sched dev with one local agent running the /bin/true tasks, raft on disk with fsync; " +
			"calls_per_s is the loop through the helper, direct_calls_per_s the loop with it off; the phases are means of the second loop from SCHED_TIMING (before main includes the front's exec of sched-client), package init from GODEBUG=inittrace=1 (mean of 20 `sched --help`); CPU of sched dev (server and agent, during the first loop) and of the helper from /proc; " +
			fmt.Sprintf("1-minute load average %.1f at the start; sbatch is not run here: ", load) + ref.note,
	}
}

// sbatchRef is the sbatch rate the CLI target is judged against.
type sbatchRef struct {
	perS float64 // 0: none recorded for this commit
	note string  // where perS comes from, or why there is none
}

// target is the cli scenario's target, with the rate it asks for.
func (r sbatchRef) target() string {
	if r.perS <= 0 {
		return ">=2x sbatch in the same run (no make bench-peers figure of this commit to judge against here)"
	}
	return fmt.Sprintf(">=%.0f calls/s (2x the %.1f sbatch/s of make bench-peers at this commit)", 2*r.perS, r.perS)
}

// cliTargetMet judges the cli scenario's (median) metrics: at least twice
// the sbatch rate recorded with them, and never met without one.
func cliTargetMet(m map[string]float64) bool {
	return m["sbatch_per_s"] > 0 && m["calls_per_s"] >= 2*m["sbatch_per_s"]
}

// sbatchRateAt reads the sbatch rate that `make bench-peers` measured at
// commit from the "peers" key of the results file at path (banyan-peers
// writes it there, and banyan-bench keeps it). The CLI target is "2x
// sbatch in the same run": banyan-peers measures both in one run, and this
// scenario, which runs no Slurm, is judged against that run's sbatch
// figure when it is of the same commit (so, in `make bench-peers` then
// `make bench`, of the same session), and not met without one. A peers
// run on a dirty tree (banyan-peers records the commit with "-dirty")
// counts for its commit, and the note says the tree was dirty.
func sbatchRateAt(path string, commit any) sbatchRef {
	name := filepath.Base(path) // notes go into committed results: no machine's path
	raw, err := recordedKey(path, "peers")
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // recordedKey's errors name the path
		}
		return sbatchRef{note: fmt.Sprintf("no sbatch figure: %s: %v", name, err)}
	}
	if raw == nil || string(raw) == "null" {
		return sbatchRef{note: "no sbatch figure: no peers key in " + name + " (make bench-peers writes it)"}
	}
	var peers struct {
		Commit  string `json:"commit"`
		Figures map[string]struct {
			Slurm float64 `json:"slurm_median"`
		} `json:"figures"`
	}
	if err := json.Unmarshal(raw, &peers); err != nil {
		return sbatchRef{note: fmt.Sprintf("no sbatch figure: the peers key of %s: %v", name, err)}
	}
	want, _ := commit.(string)
	at, dirty := strings.CutSuffix(peers.Commit, "-dirty")
	if want == "" || at != want {
		return sbatchRef{note: fmt.Sprintf("no sbatch figure: the peers key of %s is of commit %q, not %q", name, peers.Commit, want)}
	}
	rate := peers.Figures["submit_per_s"].Slurm
	if rate <= 0 {
		return sbatchRef{note: fmt.Sprintf("no sbatch figure: the peers key of %s has no submit_per_s", name)}
	}
	tree := ""
	if dirty {
		tree = ", on a tree with changes"
	}
	return sbatchRef{perS: rate, note: fmt.Sprintf("judged against the %.1f sbatch/s that make bench-peers measured at this commit%s (%s, peers.figures.submit_per_s)", rate, tree, name)}
}

// startDev starts `sched dev` on addr with its data in dir and waits until
// its agent is registered; it returns the process id, and stop ends it.
func startDev(bin, addr, dir string) (pid int, stop func(), err error) {
	var logs bytes.Buffer
	cmd := exec.Command(bin, "dev", "--addr", addr, "--http-addr", "", "--data-dir", dir, "--log-level", "error")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start sched dev: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	conn, err := dial(addr)
	if err != nil {
		stop()
		return 0, nil, err
	}
	defer conn.Close()
	agents := pb.NewAgentServiceClient(conn)
	if !waitUntil(30*time.Second, 50*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := agents.ListAgents(ctx, &pb.ListAgentsRequest{})
		return err == nil && len(r.Agents) == 1
	}) {
		stop()
		return 0, nil, fmt.Errorf("sched dev did not come up with its agent: %s", logs.String())
	}
	return cmd.Process.Pid, stop, nil
}

// cliRun runs one CLI process and times it.
func cliRun(bin string, args, env []string) (cliCall, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		return cliCall{}, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, stderr.String())
	}
	c := cliCall{wall: time.Since(began), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if len(env) == 0 {
		return c, nil
	}
	mainNs, phases, err := parseTiming(stderr.String())
	if err != nil {
		return cliCall{}, err
	}
	c.preMain = time.Unix(0, mainNs).Sub(began)
	c.inMain = phases["total"]
	delete(phases, "total")
	c.phases = phases
	return c, nil
}

// parseTiming reads the `sched timing:` line SCHED_TIMING asks for.
func parseTiming(stderr string) (mainNs int64, phases map[string]time.Duration, err error) {
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "sched timing: ")
		if !ok {
			continue
		}
		phases = map[string]time.Duration{}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return 0, nil, fmt.Errorf("timing line: bad field %q", f)
			}
			if k == "main_unix_ns" {
				if mainNs, err = strconv.ParseInt(v, 10, 64); err != nil {
					return 0, nil, fmt.Errorf("timing line: %w", err)
				}
				continue
			}
			ms, err := strconv.ParseFloat(strings.TrimSuffix(v, "ms"), 64)
			if err != nil {
				return 0, nil, fmt.Errorf("timing line: %s: %w", k, err)
			}
			phases[k] = time.Duration(ms * float64(time.Millisecond))
		}
		if mainNs == 0 {
			return 0, nil, errors.New("timing line without main_unix_ns")
		}
		return mainNs, phases, nil
	}
	return 0, nil, fmt.Errorf("no timing line in stderr: %q", stderr)
}

// cliMetrics turns the calls into means (in ms) and wall percentiles.
func cliMetrics(calls []cliCall) map[string]float64 {
	m := map[string]float64{}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	walls := make([]time.Duration, len(calls))
	for i, c := range calls {
		walls[i] = c.wall
		m["wall_ms"] += ms(c.wall)
		m["cpu_ms"] += ms(c.cpu)
		m["pre_main_ms"] += ms(c.preMain)
		m["in_main_ms"] += ms(c.inMain)
		m["exit_ms"] += ms(c.wall - c.preMain - c.inMain)
		for k, d := range c.phases {
			m[k+"_ms"] += ms(d)
		}
	}
	for k := range m {
		m[k] /= float64(len(calls))
	}
	sort.Slice(walls, func(a, b int) bool { return walls[a] < walls[b] })
	m["wall_p50_ms"], m["wall_p99_ms"] = percentile(walls, 50), percentile(walls, 99)
	return m
}

// cliHelperPID is the pid of the client helper that bin's calls use, from
// `sched helper status`.
func cliHelperPID(bin string) (int, error) {
	out, err := exec.Command(bin, "helper", "status").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("sched helper status: %w: %s", err, out)
	}
	var pid int
	if _, err := fmt.Sscanf(string(out), "helper pid %d,", &pid); err != nil {
		return 0, fmt.Errorf("sched helper status said %q: no helper after the warm-up", strings.TrimSpace(string(out)))
	}
	return pid, nil
}

// cliLoopRate runs bin n times in a row and returns calls/s.
func cliLoopRate(bin string, args []string, n int) (float64, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		cmd := exec.Command(bin, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %w: %s", bin, err, out)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// packageInitMs is the mean over runs of the package initialisation time
// GODEBUG=inittrace=1 reports for `sched --help`.
func packageInitMs(bin string, runs int) (float64, error) {
	var sum float64
	for i := 0; i < runs; i++ {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "--help")
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("sched --help: %w", err)
		}
		// init PKG @T ms, D ms clock, B bytes, A allocs
		for _, line := range strings.Split(stderr.String(), "\n") {
			f := strings.Fields(line)
			if len(f) >= 7 && f[0] == "init" && f[6] == "clock," {
				d, err := strconv.ParseFloat(f[4], 64)
				if err != nil {
					return 0, fmt.Errorf("inittrace line %q: %w", line, err)
				}
				sum += d
			}
		}
	}
	return sum / float64(runs), nil
}

// loadAverage is the 1-minute load average (0 where /proc/loadavg is
// missing): the figures of a loop of short processes depend on it.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
