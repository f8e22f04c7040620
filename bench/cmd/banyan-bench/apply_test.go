package main

import "testing"

// TestApplyScenarioRuns: the apply scenario's entries are ones the state
// machine takes (an entry it rejected would end the run with an error),
// and it reports both fleets' times.
func TestApplyScenarioRuns(t *testing.T) {
	r := runApply(options{quick: true})
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	for _, k := range []string{"p50_ms", "p99_ms", "p50_ms_10_agents", "p99_ms_10_agents"} {
		if r.Metrics[k] <= 0 {
			t.Errorf("%s = %v, want a time", k, r.Metrics[k])
		}
	}
	if r.Metrics["agents"] != 2000 || r.Metrics["samples"] != 50 || r.Metrics["jobs_per_entry"] != applyJobs {
		t.Errorf("quick run measured %v agents, %v samples of %v jobs", r.Metrics["agents"], r.Metrics["samples"], r.Metrics["jobs_per_entry"])
	}
}
