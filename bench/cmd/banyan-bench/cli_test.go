package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseTiming(t *testing.T) {
	stderr := "some log line\nsched timing: main_unix_ns=1700000000000000123 build=0.250ms rpc=2.750ms total=3.500ms\n"
	mainNs, phases, err := parseTiming(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if mainNs != 1700000000000000123 {
		t.Errorf("main_unix_ns = %d", mainNs)
	}
	want := map[string]time.Duration{"build": 250 * time.Microsecond, "rpc": 2750 * time.Microsecond, "total": 3500 * time.Microsecond}
	for k, d := range want {
		if phases[k] != d {
			t.Errorf("%s = %v, want %v", k, phases[k], d)
		}
	}
	for _, bad := range []string{"", "sched timing: build=1ms total=2ms", "sched timing: main_unix_ns=x total=1ms", "sched timing: main_unix_ns=5 rpc"} {
		if _, _, err := parseTiming(bad); err == nil {
			t.Errorf("parseTiming(%q) took it", bad)
		}
	}
}

func TestCLIMetrics(t *testing.T) {
	calls := []cliCall{
		{wall: 10 * time.Millisecond, preMain: 4 * time.Millisecond, inMain: 5 * time.Millisecond, cpu: 6 * time.Millisecond,
			phases: map[string]time.Duration{"rpc": 3 * time.Millisecond}},
		{wall: 20 * time.Millisecond, preMain: 6 * time.Millisecond, inMain: 11 * time.Millisecond, cpu: 8 * time.Millisecond,
			phases: map[string]time.Duration{"rpc": 9 * time.Millisecond}},
	}
	m := cliMetrics(calls)
	for k, want := range map[string]float64{"wall_ms": 15, "cpu_ms": 7, "pre_main_ms": 5, "in_main_ms": 8, "exit_ms": 2, "rpc_ms": 6, "wall_p50_ms": 10, "wall_p99_ms": 10} {
		if math.Abs(m[k]-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

// The CLI target is judged against the sbatch rate make bench-peers
// recorded at the same commit, and not met without one.
func TestSbatchRateAt(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	peers := `{"placements_per_s": 1, "peers": {"commit": "c1", "figures": {"submit_per_s": {"slurm_median": 121.5, "banyan_median": 118}}}}`
	dirtyPeers := strings.Replace(peers, `"c1"`, `"c1-dirty"`, 1)
	cases := []struct {
		name   string
		path   string
		commit any
		rate   float64
		note   string // a part of the note
	}{
		{"same commit", write("same.json", peers), "c1", 121.5, "measured at this commit (same.json"},
		{"same commit, peers on a dirty tree", write("dirty.json", dirtyPeers), "c1", 121.5, "on a tree with changes"},
		{"another commit", write("other.json", peers), "c2", 0, `of commit "c1", not "c2"`},
		{"another commit, dirty", write("otherdirty.json", dirtyPeers), "c2", 0, `of commit "c1-dirty", not "c2"`},
		{"no commit known", write("nocommit.json", peers), nil, 0, `not ""`},
		{"no peers key", write("nopeers.json", `{"placements_per_s": 1}`), "c1", 0, "no peers key in nopeers.json"},
		{"a null peers key", write("null.json", `{"peers": null}`), "c1", 0, "no peers key in null.json"},
		{"no submit figure", write("nosubmit.json", `{"peers": {"commit": "c1", "figures": {}}}`), "c1", 0, "has no submit_per_s"},
		{"damaged file", write("damaged.json", `{"peers": `), "c1", 0, "damaged.json: unexpected end of JSON input"},
		{"damaged peers key", write("badpeers.json", `{"peers": {"commit": 7}}`), "c1", 0, "the peers key of badpeers.json: json: cannot unmarshal"},
		{"no file", filepath.Join(dir, "missing.json"), "c1", 0, "no peers key in missing.json"},
		{"not a file", dir, "c1", 0, "is a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := sbatchRateAt(c.path, c.commit)
			if ref.perS != c.rate || !strings.Contains(ref.note, c.note) {
				t.Fatalf("got %v (%q), want %v with a note containing %q", ref.perS, ref.note, c.rate, c.note)
			}
			if strings.Contains(ref.note, "<nil>") {
				t.Fatalf("note %q lost its error", ref.note)
			}
			if strings.Contains(ref.note, dir) {
				t.Fatalf("note %q names the results dir: it goes into committed results", ref.note)
			}
			if c.rate > 0 && !strings.Contains(ref.target(), ">=243 calls/s") {
				t.Fatalf("target %q, want it to ask for twice the sbatch rate", ref.target())
			}
			if c.rate == 0 && !strings.Contains(ref.target(), "no make bench-peers figure") {
				t.Fatalf("target %q, want it to say there is nothing to judge against", ref.target())
			}
		})
	}
}

func TestCLITargetMet(t *testing.T) {
	for _, c := range []struct {
		calls, sbatch float64
		want          bool
	}{
		{250, 121, true},
		{242, 121, true},
		{241.9, 121, false},
		{118, 121, false},
		{5000, 0, false}, // nothing to judge against: not met
	} {
		if got := cliTargetMet(map[string]float64{"calls_per_s": c.calls, "sbatch_per_s": c.sbatch}); got != c.want {
			t.Errorf("%v calls/s against %v sbatch/s: met %v, want %v", c.calls, c.sbatch, got, c.want)
		}
	}
}

// The cli scenario's entry judges its medians against the sbatch rate its
// runs recorded, and never meets the target without one.
func TestCLIScenarioJudgesAgainstSbatch(t *testing.T) {
	var sc scenario
	for _, s := range scenarios {
		if s.name == "cli" {
			sc = s
		}
	}
	if sc.met == nil {
		t.Fatal("no cli scenario with a judge")
	}
	runs := func(calls []float64, sbatch float64) []Result {
		var rs []Result
		for _, c := range calls {
			m := map[string]float64{"calls_per_s": c}
			if sbatch > 0 {
				m["sbatch_per_s"] = sbatch
			}
			rs = append(rs, Result{Metrics: m, Target: sbatchRef{perS: sbatch}.target()})
		}
		return rs
	}
	for _, c := range []struct {
		calls  []float64
		sbatch float64
		want   bool
	}{
		{[]float64{250, 230, 260}, 121, true},  // median 250 >= 242
		{[]float64{118, 300, 120}, 121, false}, // median 120
		{[]float64{900, 900, 900}, 0, false},   // no sbatch figure to judge against
	} {
		r := aggregate(sc, runs(c.calls, c.sbatch))
		if r.Met == nil || *r.Met != c.want {
			t.Errorf("calls %v against %v sbatch/s: met %v, want %v (target %q)", c.calls, c.sbatch, r.Met, c.want, r.Target)
		}
	}
}
