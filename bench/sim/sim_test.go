package sim

import (
	"reflect"
	"testing"
)

const small = `
seed: 7
duration: 90m
pass_interval: 2s
min_runtime: 5s
agents:
  - {name: cpu, count: 40, capacity: "cpu=16,memory=64Gi"}
  - {name: gpu, count: 8, capacity: "cpu=16,memory=64Gi,nvenc=4", labels: {accel: nvenc}}
pools:
  - {path: studio, guaranteed: "cpu=400,memory=1600Gi"}
  - {path: studio/ingest, guaranteed: "cpu=200,memory=800Gi"}
  - {path: studio/live, guaranteed: "cpu=100,memory=400Gi"}
workloads:
  - {name: ingest, pool: studio/ingest, jobs_per_hour: 20, tasks: 150, resources: "cpu=4,memory=8Gi", task_duration: 4m, fail_rate: 0.02}
  - {name: live, pool: studio/live, class: latency, jobs_per_hour: 600, tasks: 2, resources: "cpu=2,memory=2Gi", task_duration: 30s, start: 30m}
  - {name: gpu-live, pool: studio/live, class: latency, jobs_per_hour: 120, tasks: 1, resources: "cpu=2,memory=2Gi,nvenc=1", constraints: [accel=nvenc], task_duration: 20s, distribution: fixed}
  - {name: archive, pool: default, class: opportunistic, jobs_per_hour: 6, tasks: 300, resources: "cpu=4,memory=4Gi", task_duration: 10m, max_wait: 2h}
`

func runSmall(t *testing.T) *Report {
	t.Helper()
	cfg, err := Parse([]byte(small))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.WallSeconds = 0
	return r
}

// TestDeterministic: the same config and seed give the same report.
func TestDeterministic(t *testing.T) {
	a, b := runSmall(t), runSmall(t)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different reports:\n%s\n%s", a.Format(), b.Format())
	}
	t.Log("\n" + a.Format())
	if a.Agents != 48 || a.JobsSubmitted == 0 || a.AttemptsPlaced == 0 || a.TasksSucceeded == 0 {
		t.Fatalf("nothing happened: %+v", a)
	}
	if a.Utilization <= 0 || a.Utilization > 1 {
		t.Fatalf("utilization %v", a.Utilization)
	}
	if _, ok := a.Wait["live"]; !ok {
		t.Fatal("no queue waits for the live workload")
	}
	cfg, _ := Parse([]byte(small))
	cfg.Seed = 8
	c, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.WallSeconds = 0
	if reflect.DeepEqual(a, c) {
		t.Fatal("a different seed gave the same report")
	}
}

// TestExampleParses: the example farm file is valid: 10,000 agents for a
// simulated day.
func TestExampleParses(t *testing.T) {
	cfg, err := Load("testdata/farm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range cfg.Agents {
		n += g.Count
	}
	if n != 10000 || cfg.Duration.ms() != 24*3600*1000 {
		t.Fatalf("farm.yaml: %d agents for %d ms, want 10000 for a day", n, cfg.Duration.ms())
	}
}

func TestBadConfig(t *testing.T) {
	for _, bad := range []string{"duration: 1h\n", "seed: 1\nagents: [{name: a, count: 1, capacity: cpu=1}]\nworkloads: [{name: w, jobs_per_hour: 1, resources: cpu=1}]\n", "duration: 1h\nbogus: 1\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestIdleClusterWaitsAtMostAPass: with far more capacity than work, every
// task is placed by the first pass after it is queued, so no queue wait
// exceeds the pass interval (waits are measured from the task's own
// queueing, not from the start of the simulation).
func TestIdleClusterWaitsAtMostAPass(t *testing.T) {
	cfg, err := Parse([]byte(`
seed: 3
duration: 30m
pass_interval: 2s
agents:
  - {name: cpu, count: 50, capacity: "cpu=16,memory=64Gi"}
workloads:
  - {name: small, pool: default, jobs_per_hour: 120, tasks: 3, resources: "cpu=1,memory=1Gi", task_duration: 20s}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := r.Wait["small"]
	if !ok || w.N == 0 {
		t.Fatalf("no waits recorded: %+v", r.Wait)
	}
	if w.Max > 2 {
		t.Fatalf("queue wait up to %.1f s on an idle cluster, want at most the 2 s pass interval (%+v)", w.Max, w)
	}
}

func TestScaleRate(t *testing.T) {
	cfg, err := Parse([]byte(small))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ScaleRate("archive", 0.25); err != nil {
		t.Fatal(err)
	}
	for _, w := range cfg.Workloads {
		if w.Name == "archive" && w.JobsPerHour != 1.5 {
			t.Errorf("archive at %v jobs/h, want 6 x 0.25", w.JobsPerHour)
		}
	}
	for _, bad := range []struct {
		name   string
		factor float64
	}{{"nope", 2}, {"archive", 0}, {"archive", -1}} {
		if err := cfg.ScaleRate(bad.name, bad.factor); err == nil {
			t.Errorf("ScaleRate(%q, %v) accepted", bad.name, bad.factor)
		}
	}
}
