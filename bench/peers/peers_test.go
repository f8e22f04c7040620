package peers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		runs          []float64
		med, min, max float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 10}, 3.5, 1, 10},
	} {
		f, err := Summarize(c.runs)
		if err != nil {
			t.Fatal(err)
		}
		if f.Median != c.med || f.Min != c.min || f.Max != c.max {
			t.Errorf("Summarize(%v) = %+v, want median %v min %v max %v", c.runs, f, c.med, c.min, c.max)
		}
		if len(f.Runs) != len(c.runs) || f.Runs[0] != c.runs[0] {
			t.Errorf("Summarize(%v) runs = %v, want them in their order", c.runs, f.Runs)
		}
	}
	if _, err := Summarize(nil); err == nil {
		t.Error("Summarize(nil): want an error")
	}
	if r := Ratio(Figure{Median: 6}, Figure{Median: 3}); r != 2 {
		t.Errorf("Ratio = %v, want 2", r)
	}
	if r := Ratio(Figure{Median: 6}, Figure{}); r != 0 {
		t.Errorf("Ratio over zero = %v, want 0", r)
	}
}

func TestSlurmConfigRender(t *testing.T) {
	c := SlurmConfig{Dir: "/x/slurm", CtldPort: 7001, SlurmdPort: 7002, CPUs: 4, MemoryMB: 2048, MaxArraySize: 10001, MaxJobCount: 110000}
	conf, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"SlurmctldPort=7001\n", "SlurmdPort=7002\n", "AuthInfo=socket=/x/slurm/munge/munge.socket\n",
		"StateSaveLocation=/x/slurm/state\n", "SelectTypeParameters=CR_CPU\n", "ProctrackType=proctrack/linuxproc\n",
		"TaskPlugin=task/none\n", "AccountingStorageType=accounting_storage/none\n", "MaxArraySize=10001\n",
		"MaxJobCount=110000\n", "PreemptType=preempt/partition_prio\n", "SchedulerParameters=" + SchedulerParameters + "\n",
		"Epilog=/bin/true\n",
		"NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 RealMemory=2048 State=UNKNOWN\n",
		"PartitionName=low Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1\n",
		"PartitionName=high Nodes=localhost Default=NO MaxTime=INFINITE State=UP PriorityTier=2\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("slurm.conf lacks %q:\n%s", want, conf)
		}
	}
	// Every recorded setting is what the file says.
	for _, s := range c.Tuning() {
		if !strings.Contains(conf, s.Key+"="+s.Value+"\n") {
			t.Errorf("recorded %s=%s is not in slurm.conf", s.Key, s.Value)
		}
	}
	for _, bad := range []SlurmConfig{
		{Dir: "rel", CtldPort: 1, SlurmdPort: 2, CPUs: 1, MemoryMB: 1, MaxArraySize: 2, MaxJobCount: 2},
		{Dir: "/a", CtldPort: 1, SlurmdPort: 1, CPUs: 1, MemoryMB: 1, MaxArraySize: 2, MaxJobCount: 2},
		{Dir: "/a", CtldPort: 1, SlurmdPort: 2, CPUs: 0, MemoryMB: 1, MaxArraySize: 2, MaxJobCount: 2},
		{Dir: "/a", CtldPort: 1, SlurmdPort: 2, CPUs: 1, MemoryMB: 1, MaxArraySize: 0, MaxJobCount: 2},
	} {
		if _, err := bad.Render(); err == nil {
			t.Errorf("Render(%+v): want an error", bad)
		}
	}
}

func TestParseRSS(t *testing.T) {
	n, err := ParseRSS("Name:\tslurmctld\nVmPeak:\t  1000 kB\nVmRSS:\t    8420 kB\nThreads:\t9\n")
	if err != nil || n != 8420*1024 {
		t.Errorf("ParseRSS = %d, %v; want %d", n, err, 8420*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := ParseRSS(bad); err == nil {
			t.Errorf("ParseRSS(%q): want an error", bad)
		}
	}
	self, err := RSS(os.Getpid())
	if err != nil || self <= 0 {
		t.Errorf("RSS(self) = %d, %v; want a positive size", self, err)
	}
}

func TestMergeLatestKeepsOtherKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "latest.json")
	orig := `{"commit": "abc", "scenarios": [{"name": "placement", "metrics": {"tasks": 200000}}], "peers": {"old": true}}`
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MergeLatest(p, "peers", map[string]any{"ratios_banyan_over_slurm": map[string]float64{"submit_per_s": 0.5}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	_ = json.Unmarshal([]byte(orig), &want)
	for _, k := range []string{"commit", "scenarios"} {
		gb, _ := json.Marshal(got[k])
		wb, _ := json.Marshal(want[k])
		if string(gb) != string(wb) {
			t.Errorf("key %s changed: %s, want %s", k, gb, wb)
		}
	}
	peers := got["peers"].(map[string]any)
	if _, old := peers["old"]; old {
		t.Error("peers kept its old content; want it replaced")
	}
	if r := peers["ratios_banyan_over_slurm"].(map[string]any)["submit_per_s"]; r != 0.5 {
		t.Errorf("peers ratio = %v, want 0.5", r)
	}
	// A missing file starts empty; a file that is not an object is an error.
	q := filepath.Join(t.TempDir(), "new.json")
	if err := MergeLatest(q, "peers", 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(q); strings.TrimSpace(string(b)) != "{\n  \"peers\": 1\n}" {
		t.Errorf("new file = %q", b)
	}
	if err := os.WriteFile(q, []byte("[1]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MergeLatest(q, "peers", 1); err == nil {
		t.Error("MergeLatest into a JSON array: want an error")
	}
}

func TestReportMarkdownAndLatest(t *testing.T) {
	s, _ := Summarize([]float64{100, 90, 110})
	b, _ := Summarize([]float64{50, 40, 60})
	r := Report{Generated: "now", Commit: "c1", Machine: map[string]any{"cpus": 2, "model": "m"},
		Slurm:     SlurmInfo{Version: "slurm-wlm 22.05.8", Settings: []Setting{{"MinJobAge", "2"}}},
		Banyan:    map[string]string{"agents": "1"},
		Workloads: []Workload{{Name: "submit_per_s", What: "submissions", Unit: "jobs/s", HigherIsBetter: true, Slurm: s, Banyan: b, Ratio: Ratio(b, s)}},
		Errors:    map[string]string{"tasks": "boom"}}
	md := r.Markdown()
	for _, want := range []string{"| submissions | jobs/s | 100 (90.0–110) | 50.0 (40.0–60.0) | 3 | 0.50× (higher is better) |",
		"`MinJobAge=2`", "**tasks failed**: boom", "slurm-wlm 22.05.8"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	l := r.Latest()
	if got := l["ratios_banyan_over_slurm"].(map[string]float64)["submit_per_s"]; got != 0.5 {
		t.Errorf("latest ratio = %v, want 0.5", got)
	}
}

func TestReportWithGridEngine(t *testing.T) {
	s, _ := Summarize([]float64{100, 90, 110})
	b, _ := Summarize([]float64{50, 40, 60})
	submit := Workload{Name: "submit_per_s", What: "submissions", Unit: "jobs/s", HigherIsBetter: true, Slurm: s, Banyan: b, Ratio: Ratio(b, s)}
	if err := submit.AddGridEngine([]float64{200, 250, 150}); err != nil {
		t.Fatal(err)
	}
	if submit.GridEngine.Median != 200 || submit.RatioGridEngine != 0.25 {
		t.Fatalf("grid engine figure %+v, ratio %v; want median 200, ratio 0.25", submit.GridEngine, submit.RatioGridEngine)
	}
	if err := (&Workload{Name: "x"}).AddGridEngine(nil); err == nil || !strings.Contains(err.Error(), "x: grid engine") {
		t.Errorf("no runs: got %v, want an error naming the workload", err)
	}
	preempt := Workload{Name: "preempt_s", What: "urgent start", Unit: "s", Slurm: s, Banyan: b, Ratio: Ratio(b, s)}
	r := Report{Generated: "now", Commit: "c1", Machine: map[string]any{"cpus": 2, "model": "m"},
		Slurm:      SlurmInfo{Version: "slurm-wlm 22.05.8"},
		GridEngine: &GridEngineInfo{Version: "SGE 8.1.9", Setup: "one host", Settings: []Setting{{"scheduler schedule_interval", "0:0:1"}}},
		Workloads:  []Workload{submit, preempt}}
	md := r.Markdown()
	for _, want := range []string{"# Banyan, Slurm and Grid Engine", "Second peer: SGE 8.1.9, one host.",
		"| submissions | jobs/s | 100 (90.0–110) | 200 (150–250) | 50.0 (40.0–60.0) | 3 | 0.50× (higher is better) | 0.25× |",
		"| urgent start | s | 100 (90.0–110) | not measured | 50.0 (40.0–60.0) | 3 | 0.50× (lower is better) | – |",
		"`scheduler schedule_interval 0:0:1`"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	l := r.Latest()
	ge := l["ratios_banyan_over_gridengine"].(map[string]float64)
	if len(ge) != 1 || ge["submit_per_s"] != 0.25 {
		t.Errorf("grid engine ratios %v, want only submit_per_s 0.25", ge)
	}
	if l["second_peer"] != "SGE 8.1.9" {
		t.Errorf("second_peer %v", l["second_peer"])
	}
	if m := l["figures"].(map[string]any)["submit_per_s"].(map[string]any)["gridengine_median"]; m != 200.0 {
		t.Errorf("gridengine_median %v", m)
	}
	// Without the second peer the report is Slurm's alone.
	r.GridEngine = nil
	if md := r.Markdown(); strings.Contains(md, "Grid Engine") {
		t.Errorf("report without the second peer mentions it:\n%s", md)
	}
	if _, ok := r.Latest()["ratios_banyan_over_gridengine"]; ok {
		t.Error("latest without the second peer has its ratios")
	}
}

// TestReportProbes: a workload's probes get a table of their own in the
// markdown and their medians and ratios in latest.json.
func TestReportProbes(t *testing.T) {
	s, _ := Summarize([]float64{100, 90, 110})
	b, _ := Summarize([]float64{50, 40, 60})
	submit := Workload{Name: "submit_per_s", What: "submissions", Unit: "jobs/s", HigherIsBetter: true, Slurm: s, Banyan: b, Ratio: Ratio(b, s)}
	if err := submit.AddBound("h2frame", "one call framed by hand", []float64{300, 250, 320}); err != nil {
		t.Fatal(err)
	}
	if err := submit.AddBound("noop", "nothing", nil); err == nil || !strings.Contains(err.Error(), "submit_per_s: probe noop") {
		t.Errorf("no runs: got %v, want an error naming the workload and the probe", err)
	}
	if len(submit.Bounds) != 1 || submit.Bounds[0].Ratio != 3 {
		t.Fatalf("bounds %+v, want h2frame alone at 3× Slurm", submit.Bounds)
	}
	r := Report{Generated: "now", Commit: "c1", Machine: map[string]any{"cpus": 2, "model": "m"},
		Slurm: SlurmInfo{Version: "slurm-wlm 22.05.8"}, Workloads: []Workload{submit}}
	md := r.Markdown()
	for _, want := range []string{"Probes in the same runs as Banyan's submit_per_s",
		"| probe | what it does | jobs/s, median (min–max) | ÷ Slurm |", "| h2frame | one call framed by hand | 300 (250–320) | 3.00× |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	p := r.Latest()["figures"].(map[string]any)["submit_per_s"].(map[string]any)["probes"].(map[string]any)["h2frame"].(map[string]any)
	if p["median"] != 300.0 || p["ratio_over_slurm"] != 3.0 {
		t.Errorf("latest probes %v, want median 300 and ratio 3", p)
	}
}

// Slurm's messages for a connection lost on the way are told from its
// refusals.
func TestLostConnection(t *testing.T) {
	for _, c := range []struct {
		msg  string
		lost bool
	}{
		{"sbatch -Q -H --wrap=/bin/true: exit status 1: sbatch: error: Batch job submission failed: Broken pipe", true},
		{"sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", true},
		{"sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", true},
		{"read: Connection reset by peer", true},
		{"sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified", false},
		{"sbatch: error: Batch job submission failed: Resource temporarily unavailable", false},
		{"", false},
	} {
		if got := LostConnection(c.msg); got != c.lost {
			t.Errorf("LostConnection(%q) = %v, want %v", c.msg, got, c.lost)
		}
	}
}

// A call that loses its connection is made again, up to its tries; one
// refused, or one that succeeds, is not.
func TestRetryLost(t *testing.T) {
	lost := errors.New("sbatch: error: Batch job submission failed: Broken pipe")
	refused := errors.New("sbatch: error: Batch job submission failed: Invalid partition name specified")
	for _, c := range []struct {
		name    string
		errs    []error // what each call returns; nil: success
		tries   int
		calls   int
		retries int
		err     error
	}{
		{"succeeds at once", []error{nil}, 5, 1, 0, nil},
		{"lost once, then queued", []error{lost, nil}, 5, 2, 1, nil},
		{"lost every time", []error{lost, lost, lost, lost}, 3, 3, 2, lost},
		{"refused is not retried", []error{refused, nil}, 5, 1, 0, refused},
		{"lost, then refused", []error{lost, refused, nil}, 5, 2, 1, refused},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			_, retries, err := retryLost(context.Background(), c.tries, func() (string, error) {
				err := c.errs[calls]
				calls++
				return "", err
			})
			if calls != c.calls || retries != c.retries || !errors.Is(err, c.err) {
				t.Errorf("%d calls, %d retries, %v; want %d, %d, %v", calls, retries, err, c.calls, c.retries, c.err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	_, _, err := retryLost(ctx, 5, func() (string, error) { calls++; return "", lost })
	if calls != 1 || !errors.Is(err, lost) || !strings.Contains(err.Error(), "retry stopped") {
		t.Errorf("with its context ended: %d calls, %v; want 1 call and the lost connection's error", calls, err)
	}
}
