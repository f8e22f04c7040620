// Command banyan-bench runs Banyan's farm-scale benchmark scenarios against
// a real cluster: the `sched` binary, built for the run, as three
// `sched server` processes on loopback with data dirs on disk, simulated
// agents (the real agent protocol) in a child process of their own, or
// real `sched agent` processes, and the clients in this process. Each
// scenario runs -runs times on a fresh cluster; each figure is the median
// with its min and max. It prints the runs and writes the results as a
// table and as JSON.
//
//	banyan-bench [-quick] [-runs N] [-only NAME[,NAME]] [-out DIR] [-data DIR] [-profile DIR]
//
// `banyan-bench simagents ...` is the child process of simulated agents
// (fleetproc.go) and `banyan-bench fn ...` the micro-batching scenario's
// function. -tls and -observe still measure placement and submission on a
// one-server raft inside this process.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

type options struct {
	quick bool
	runs  int // runs per scenario, each on a fresh cluster
	// dataRoot holds the clusters' data dirs; work the sched binary.
	dataRoot, work string
	// commit and dirty describe the tree the run was built from, read at
	// its start.
	commit, dirty any
	only          map[string]bool
	out           string
	profile       string // directory for CPU/heap profiles, "" = none
	suffix        string // of the result files: "" or "-tls"
	keep          bool   // keep the other scenarios' recorded results
}

// Result is one scenario's outcome: from one run, or aggregated over the
// runs (then Metrics are medians, Min and Max the extremes, Values every
// run's value and Runs the runs themselves).
type Result struct {
	Name    string               `json:"name"`
	Summary string               `json:"summary"`
	Metrics map[string]float64   `json:"metrics"`
	Min     map[string]float64   `json:"min,omitempty"`
	Max     map[string]float64   `json:"max,omitempty"`
	Values  map[string][]float64 `json:"values,omitempty"`
	Runs    []RunResult          `json:"runs,omitempty"`
	Setup   *Setup               `json:"setup,omitempty"`
	Target  string               `json:"target,omitempty"`
	// Met is nil when the scenario has no target or did not measure it.
	Met     *bool   `json:"met,omitempty"`
	Notes   string  `json:"notes,omitempty"`
	Err     string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
	// Commit, Dirty and Generated say what was measured when: a -keep
	// run leaves other scenarios' results, from their own commits, in place.
	Commit    any    `json:"commit,omitempty"`
	Dirty     any    `json:"dirty,omitempty"`
	Generated string `json:"generated,omitempty"`
	// LoadAvg is the machine's 1-minute load average as the scenario
	// started (others' work on a shared machine shows here).
	LoadAvg float64 `json:"loadavg_1m_at_start"`
}

type scenario struct {
	name string
	run  func(o options) Result
	// keys are the metrics the printed summary shows.
	keys []string
	// met judges the target on the medians; nil: every run must meet it.
	met func(m map[string]float64) bool
}

var scenarios = []scenario{
	{"placement", runPlacement, []string{"placed_per_s", "submitted_tasks_per_s", "placements_per_raft_entry", "backlog_min"},
		func(m map[string]float64) bool { return m["placed_per_s"] >= 20000 && m["backlog_min"] > 0 }},
	{"submission", runSubmission, []string{"acks_per_s", "p50_ms", "p99_ms", "errors"},
		func(m map[string]float64) bool { return m["acks_per_s"] >= 5000 }},
	{"priority", runPriority, []string{"p50_ms", "p99_ms", "latency_jobs", "preemptions"},
		func(m map[string]float64) bool {
			return m["p99_ms"] < 50 && m["latency_jobs"] >= 1000 && m["missing"] == 0
		}},
	{"memory", runMemory, []string{"heap_bytes_per_task", "snapshot_peak_bytes_per_task", "rss_bytes_per_task", "snapshot_hold_ms"},
		func(m map[string]float64) bool {
			return m["heap_bytes_per_task"] < 1024 && m["snapshot_peak_bytes_per_task"] < 1536
		}},
	{"apply", runApply, []string{"p50_ms", "p99_ms", "p50_ms_10_agents", "p99_ms_10_agents"},
		func(m map[string]float64) bool { return m["agents"] >= 10_000 && m["p50_ms"] < 5 }},
	{"agents", runAgentsAtScale, []string{"leader_cpu_cores", "leader_cpu_cores_busy", "task_events_per_s", "pass_ms_mean"},
		func(m map[string]float64) bool {
			return m["agents"] >= 10_000 && m["connected_at_end"] == m["agents"] &&
				m["leader_cpu_cores"] < 0.5 && m["leader_cpu_cores_busy"] < 1
		}},
	{"microbatch", runMicrobatchSetup, []string{"microbatch_speedup", "warm_speedup", "python_cold_calls_per_s",
		"minimal_microbatch_speedup", "minimal_warm_speedup"},
		func(m map[string]float64) bool { return m["microbatch_speedup"] >= 10 && m["warm_speedup"] >= 10 }},
	{"failover", runFailover, []string{"resume_s", "elected_s", "acked_jobs", "lost_jobs", "unfinished_jobs"},
		func(m map[string]float64) bool {
			return m["resume_s"] >= 0 && m["resume_s"] < 3 && m["lost_jobs"] == 0 && m["unfinished_jobs"] == 0 && m["failed_jobs"] == 0
		}},
	{"true", runTrueTasks, []string{"tasks_per_s", "dev_tasks_per_s"},
		func(m map[string]float64) bool { return m["tasks_per_s"] >= 300 && m["dev_tasks_per_s"] >= 300 }},
	{"cli", runCLI, []string{"calls_per_s", "cpu_ms", "pre_main_ms", "package_init_ms", "rpc_ms", "dev_cpu_ms"},
		cliTargetMet},
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "fn" {
		os.Exit(serveFunction(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "simagents" {
		os.Exit(simagentsMain(os.Args[2:]))
	}
	var o options
	var only string
	flag.BoolVar(&observeOn, "observe", false, "metrics scraped every second and every span exported over OTLP, on the three-server cluster (placement and submission); results go to latest-observe.json")
	withTLS := flag.Bool("tls", false, "mutual TLS on every connection (placement and submission only, on a one-server raft in this process); results go to latest-tls.json")
	flag.BoolVar(&o.quick, "quick", false, "scaled-down run (smaller scales, still -runs runs)")
	flag.IntVar(&o.runs, "runs", 3, "runs of each scenario, each on a fresh cluster; figures are medians")
	flag.StringVar(&o.dataRoot, "data", os.TempDir(), "parent of the clusters' data dirs (its filesystem is recorded)")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run: "+names())
	flag.BoolVar(&o.keep, "keep", false, "keep the other scenarios' results already in the results file (each records its own commit)")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results"), "directory for latest.json and latest.md")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of this process (the clients; and a heap profile where the server runs in process) per scenario here")
	flag.Parse()
	if *withTLS {
		kit, err := newBenchTLS()
		if err != nil {
			fmt.Fprintln(os.Stderr, "banyan-bench -tls:", err)
			os.Exit(1)
		}
		defer kit.close()
		tlsKit, o.suffix = kit, "-tls"
		if only == "" {
			only = "placement,submission"
		}
	}
	if observeOn {
		if *withTLS {
			fmt.Fprintln(os.Stderr, "-observe and -tls measure one cost at a time: give one")
			os.Exit(2)
		}
		o.suffix = "-observe"
		if only == "" {
			only = "placement,submission"
		}
	}
	if *withTLS || observeOn {
		for _, n := range strings.Split(only, ",") {
			if n = strings.TrimSpace(n); n != "placement" && n != "submission" {
				fmt.Fprintf(os.Stderr, "-tls and -observe run placement and submission only, not %q\n", n)
				os.Exit(2)
			}
		}
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(only, ",") {
			n = strings.TrimSpace(n)
			if !known(n) {
				fmt.Fprintf(os.Stderr, "unknown scenario %q (have %s)\n", n, names())
				os.Exit(2)
			}
			o.only[n] = true
		}
	}
	if o.runs < 1 {
		fmt.Fprintln(os.Stderr, "-runs must be at least 1")
		os.Exit(2)
	}
	if tlsKit != nil {
		inProcess = true // the simulated agents' certificates are made in this process
	}
	work, err := os.MkdirTemp("", "banyan-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(work)
	o.work = work
	o.commit, o.dirty = commit(), treeDirty()
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	mode := "full"
	if o.quick {
		mode = "quick"
	}
	if tlsKit != nil {
		mode += ", mutual TLS"
	}
	if observeOn {
		mode += ", metrics and tracing on"
	}
	mode += fmt.Sprintf(", %d runs", o.runs)
	fmt.Printf("banyan-bench (%s) on %s; data dirs on %s\n", mode, machineLine(), fsType(o.dataRoot))
	var results []Result
	for _, sc := range scenarios {
		if o.only != nil && !o.only[sc.name] {
			continue
		}
		stopProf := startCPUProfile(o, sc.name)
		load := loadAverage()
		r := runScenario(sc, o)
		r.Commit, r.Dirty, r.Generated, r.LoadAvg = o.commit, o.dirty, time.Now().UTC().Format(time.RFC3339), load
		scrapers.stopAll()
		stopProf()
		fmt.Println(resultLine(r))
		results = append(results, r)
		runtime.GC()
	}
	if err := writeResults(o, mode, results); err != nil {
		fmt.Fprintln(os.Stderr, "write results:", err)
		os.Exit(1)
	}
	fmt.Printf("results written to %s\n", filepath.Join(o.out, "latest"+o.suffix+".json"))
}

func safeRun(sc scenario, o options) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Err: fmt.Sprint("panic: ", p)}
		}
	}()
	return sc.run(o)
}

func names() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

func known(n string) bool {
	for _, s := range scenarios {
		if s.name == n {
			return true
		}
	}
	return false
}

func resultLine(r Result) string {
	status := ""
	switch {
	case r.Err != "":
		status = " ERROR: " + r.Err
	case r.Met != nil && *r.Met:
		status = " [target met: " + r.Target + "]"
	case r.Met != nil:
		status = " [target MISSED: " + r.Target + "]"
	}
	return fmt.Sprintf("%-11s %s (%.1fs)%s", r.Name, r.Summary, r.Seconds, status)
}

func met(ok bool) *bool { return &ok }

// headline maps the keys to scenario metrics.
var headline = []struct{ key, scenario, metric string }{
	{"placements_per_s", "placement", "placed_per_s"},
	{"placements_per_raft_entry", "placement", "placements_per_raft_entry"},
	{"submissions_per_s", "submission", "acks_per_s"},
	{"priority_p99_ms", "priority", "p99_ms"},
	{"bytes_per_queued_task", "memory", "heap_bytes_per_task"},
	{"bytes_per_queued_task_snapshot_peak", "memory", "snapshot_peak_bytes_per_task"},
	{"snapshot_hold_ms_1m_queued", "memory", "snapshot_hold_ms"},
	{"apply_ms_200_jobs_10k_agents", "apply", "p50_ms"},
	{"apply_ms_200_jobs_10k_agents_p99", "apply", "p99_ms"},
	{"leader_cpu_cores_10k_agents", "agents", "leader_cpu_cores"},
	{"leader_cpu_cores_10k_agents_2k_events", "agents", "leader_cpu_cores_busy"},
	{"scheduling_pass_ms_10k_agents", "agents", "pass_ms_mean"},
	{"microbatch_speedup", "microbatch", "microbatch_speedup"},
	{"warm_speedup", "microbatch", "warm_speedup"},
	{"microbatch_speedup_minimal_binary", "microbatch", "minimal_microbatch_speedup"},
	{"warm_speedup_minimal_binary", "microbatch", "minimal_warm_speedup"},
	{"failover_resume_s", "failover", "resume_s"},
	{"lost_jobs", "failover", "lost_jobs"},
	{"true_tasks_per_s", "true", "tasks_per_s"},
	{"true_tasks_per_s_sched_dev", "true", "dev_tasks_per_s"},
	{"cli_submit_calls_per_s", "cli", "calls_per_s"},
}

func writeResults(o options, mode string, results []Result) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if o.keep {
		kept, err := keptResults(filepath.Join(o.out, "latest"+o.suffix+".json"), results)
		if err != nil {
			return err
		}
		results = kept
	}
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Name] = r
	}
	doc := map[string]any{}
	var missing []string
	for _, h := range headline {
		r, ok := byName[h.scenario]
		v, has := r.Metrics[h.metric]
		if !ok || !has || r.Err != "" {
			doc[h.key] = nil
			missing = append(missing, h.key)
			continue
		}
		doc[h.key] = v
	}
	doc["machine"] = machine()
	doc["commit"] = o.commit
	doc["dirty"] = o.dirty
	doc["data_dir"] = map[string]any{"filesystem": fsType(o.dataRoot)}
	doc["runs_per_scenario"] = o.runs
	doc["mode"] = mode
	doc["generated"] = time.Now().UTC().Format(time.RFC3339)
	doc["null_keys"] = missing
	doc["scenarios"] = results
	// The peers' ratios (make bench-peers) are another command's: kept.
	if peers, err := recordedKey(filepath.Join(o.out, "latest"+o.suffix+".json"), "peers"); err != nil {
		return err
	} else if peers != nil {
		doc["peers"] = peers
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "latest"+o.suffix+".json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# banyan-bench results (%s)\n\n%s, commit %s (dirty: %v), data dirs on %s\n\n", mode, machineLine(),
		o.commit, o.dirty, fsType(o.dataRoot))
	fmt.Fprintln(&b, "| key | median [min..max] | scenario | target |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- |")
	for _, h := range headline {
		val := "null"
		r := byName[h.scenario]
		if v, ok := doc[h.key].(float64); ok {
			val = fmt.Sprintf("%s [%s..%s]", num(v), num(r.Min[h.metric]), num(r.Max[h.metric]))
		}
		tgt := r.Target
		if r.Met != nil {
			if *r.Met {
				tgt += " (met)"
			} else {
				tgt += " (missed)"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", h.key, val, h.scenario, tgt)
	}
	fmt.Fprintln(&b, "\n| scenario | seconds | result | setup | notes | commit, load at start |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		s := r.Summary
		if r.Err != "" {
			s += "; ERROR: " + r.Err
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %s | %s | %.12v (dirty: %v) %s, load %.1f |\n", r.Name, r.Seconds, s, setupLine(r.Setup), r.Notes,
			r.Commit, r.Dirty, r.Generated, r.LoadAvg)
	}
	return os.WriteFile(filepath.Join(o.out, "latest"+o.suffix+".md"), b.Bytes(), 0o644)
}

// keptResults is results plus, in the scenarios' order, the results of
// the other scenarios recorded in the file at path (none when it does not
// exist yet).
func keptResults(path string, results []Result) ([]Result, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return results, nil
	}
	if err != nil {
		return nil, fmt.Errorf("-keep: %w", err)
	}
	var doc struct {
		Scenarios []Result `json:"scenarios"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("-keep: %s: %w", path, err)
	}
	byName := map[string]Result{}
	for _, r := range doc.Scenarios {
		byName[r.Name] = r
	}
	for _, r := range results {
		byName[r.Name] = r
	}
	var out []Result
	for _, sc := range scenarios {
		if r, ok := byName[sc.name]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// recordedKey is the value of key in the JSON object at path, nil when the
// file or the key is not there.
func recordedKey(path, key string) (json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc[key], nil
}

func machine() map[string]any {
	return map[string]any{"cpus": runtime.NumCPU(), "model": cpuModel(), "memory_bytes": memTotal(),
		"go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
}

func machineLine() string {
	return fmt.Sprintf("%d cpus, %s, %.1f GiB, %s", runtime.NumCPU(), cpuModel(), float64(memTotal())/(1<<30), runtime.Version())
}

// setupLine is a Setup in one table cell.
func setupLine(s *Setup) string {
	if s == nil {
		return ""
	}
	settings := "all defaults"
	if len(s.Settings) > 0 {
		var kv []string
		for k, v := range s.Settings {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		settings = strings.Join(kv, "; ")
	}
	return fmt.Sprintf("%d server(s); %s; agents: %s; jobs: %s; settings: %s", s.Servers, s.Processes, s.Agents, s.Jobs, settings)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func commit() any {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return nil
	}
	return strings.TrimSpace(string(out))
}
