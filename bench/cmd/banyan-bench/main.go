// Command banyan-bench runs Banyan's farm-scale benchmark scenarios against
// real servers (raft on disk with fsync, gRPC on loopback) and simulated or
// real agents, prints one line per scenario and writes the results as a
// table and as JSON.
//
//	banyan-bench [-quick] [-only NAME[,NAME]] [-out DIR] [-profile DIR]
//
// With -serve it is instead the child server process of the agents-at-scale
// scenario (so that the leader's CPU time can be read on its own).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type options struct {
	quick   bool
	only    map[string]bool
	out     string
	profile string // directory for CPU/heap profiles, "" = none
	suffix  string // of the result files: "" or "-tls"
}

// Result is one scenario's outcome.
type Result struct {
	Name    string             `json:"name"`
	Summary string             `json:"summary"`
	Metrics map[string]float64 `json:"metrics"`
	Target  string             `json:"target,omitempty"`
	// Met is nil when the scenario has no target or did not measure it.
	Met     *bool   `json:"met,omitempty"`
	Notes   string  `json:"notes,omitempty"`
	Err     string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

type scenario struct {
	name string
	run  func(o options) Result
}

var scenarios = []scenario{
	{"placement", runPlacement},
	{"submission", runSubmission},
	{"priority", runPriority},
	{"memory", runMemory},
	{"agents", runAgentsAtScale},
	{"microbatch", runMicrobatch},
	{"failover", runFailover},
	{"true", runTrueTasks},
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "fn" {
		os.Exit(serveFunction(os.Args[2:]))
	}
	var o options
	var only string
	serve := flag.Bool("serve", false, "run as the child server of the agents scenario (internal)")
	flag.BoolVar(&observeOn, "observe", false, "metrics and tracing on in the servers (placement, submission and priority only); results go to latest-observe.json")
	withTLS := flag.Bool("tls", false, "mutual TLS on every connection (placement, submission and priority only); results go to latest-tls.json")
	flag.BoolVar(&o.quick, "quick", false, "scaled-down run (whole run in a few minutes on 2 cores)")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run: "+names())
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results"), "directory for latest.json and latest.md")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile (and heap profile where relevant) per scenario here")
	serveData := flag.String("serve-data", "", "child server: data dir")
	serveLease := flag.Duration("serve-lease", 10*time.Second, "child server: agent lease")
	serveProfile := flag.String("serve-cpuprofile", "", "child server: CPU profile file")
	flag.Parse()
	if *serve {
		if err := serveChild(*serveData, *serveLease, *serveProfile); err != nil {
			fmt.Fprintln(os.Stderr, "banyan-bench -serve:", err)
			os.Exit(1)
		}
		return
	}
	if *withTLS {
		kit, err := newBenchTLS()
		if err != nil {
			fmt.Fprintln(os.Stderr, "banyan-bench -tls:", err)
			os.Exit(1)
		}
		defer kit.close()
		tlsKit, o.suffix = kit, "-tls"
		if only == "" {
			only = "placement,submission,priority"
		}
		for _, n := range strings.Split(only, ",") {
			if n = strings.TrimSpace(n); n != "placement" && n != "submission" && n != "priority" {
				fmt.Fprintf(os.Stderr, "-tls runs placement, submission and priority only, not %q\n", n)
				os.Exit(2)
			}
		}
	}
	if observeOn {
		if *withTLS {
			fmt.Fprintln(os.Stderr, "-observe and -tls measure one cost at a time: give one")
			os.Exit(2)
		}
		o.suffix = "-observe"
		if only == "" {
			only = "placement,submission,priority"
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
	fmt.Printf("banyan-bench (%s) on %s\n", mode, machineLine())
	var results []Result
	for _, sc := range scenarios {
		if o.only != nil && !o.only[sc.name] {
			continue
		}
		start := time.Now()
		stopProf := startCPUProfile(o, sc.name)
		r := safeRun(sc, o)
		scrapers.stopAll()
		stopProf()
		r.Name = sc.name
		r.Seconds = time.Since(start).Seconds()
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
	{"placements_per_s", "placement", "placed_per_s_jobs"},
	{"submissions_per_s", "submission", "acks_per_s"},
	{"priority_p99_ms", "priority", "p99_ms"},
	{"bytes_per_queued_task", "memory", "heap_bytes_per_task"},
	{"leader_cpu_cores_10k_agents", "agents", "leader_cpu_cores"},
	{"microbatch_speedup", "microbatch", "microbatch_speedup"},
	{"warm_speedup", "microbatch", "warm_speedup"},
	{"failover_resume_s", "failover", "resume_s"},
	{"lost_jobs", "failover", "lost_jobs"},
	{"true_tasks_per_s", "true", "tasks_per_s"},
}

func writeResults(o options, mode string, results []Result) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
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
	doc["commit"] = commit()
	doc["mode"] = mode
	doc["generated"] = time.Now().UTC().Format(time.RFC3339)
	doc["null_keys"] = missing
	doc["scenarios"] = results
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "latest"+o.suffix+".json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# banyan-bench results (%s)\n\n%s, commit %s\n\n", mode, machineLine(), commit())
	fmt.Fprintln(&b, "| key | value | scenario | target |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- |")
	for _, h := range headline {
		val := "null"
		if v, ok := doc[h.key].(float64); ok {
			val = fmt.Sprintf("%.4g", v)
		}
		r := byName[h.scenario]
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
	fmt.Fprintln(&b, "\n| scenario | seconds | result | notes |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- |")
	for _, r := range results {
		s := r.Summary
		if r.Err != "" {
			s = "ERROR: " + r.Err
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %s |\n", r.Name, r.Seconds, s, r.Notes)
	}
	return os.WriteFile(filepath.Join(o.out, "latest"+o.suffix+".md"), b.Bytes(), 0o644)
}

func machine() map[string]any {
	return map[string]any{"cpus": runtime.NumCPU(), "model": cpuModel(), "go": runtime.Version(),
		"os": runtime.GOOS + "/" + runtime.GOARCH}
}

func machineLine() string {
	return fmt.Sprintf("%d cpus, %s, %s", runtime.NumCPU(), cpuModel(), runtime.Version())
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
