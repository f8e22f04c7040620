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
	cases := []struct {
		name   string
		path   string
		commit any
		rate   float64
		note   string // a part of the note
	}{
		{"same commit", write("same.json", peers), "c1", 121.5, "121.5 sbatch/s"},
		{"another commit", write("other.json", peers), "c2", 0, `of commit "c1", not "c2"`},
		{"no commit known", write("nocommit.json", peers), nil, 0, `not ""`},
		{"no peers key", write("nopeers.json", `{"placements_per_s": 1}`), "c1", 0, "has no peers key"},
		{"no submit figure", write("nosubmit.json", `{"peers": {"commit": "c1", "figures": {}}}`), "c1", 0, "has no submit_per_s"},
		{"damaged file", write("damaged.json", `{"peers": `), "c1", 0, "damaged.json"},
		{"damaged peers key", write("badpeers.json", `{"peers": {"commit": 7}}`), "c1", 0, "the peers key of"},
		{"no file", filepath.Join(dir, "missing.json"), "c1", 0, "has no peers key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := sbatchRateAt(c.path, c.commit)
			if ref.perS != c.rate || !strings.Contains(ref.note, c.note) {
				t.Fatalf("got %v (%q), want %v with a note containing %q", ref.perS, ref.note, c.rate, c.note)
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
