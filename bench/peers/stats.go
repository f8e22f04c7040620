// Package peers measures Banyan against peer schedulers on the same
// machine in the same run: a private Slurm cluster on loopback (Debian's
// slurm-wlm; its own munged, slurmctld and slurmd, config and state under
// a temp dir), a private Grid Engine cell in a network namespace of its
// own (Debian's gridengine-*), and `sched dev`, one after the other, on
// the same workloads.
//
// The pure parts (statistics, the Slurm and Grid Engine configurations,
// qstat and /proc parsing, the report and the read-modify-write of
// latest.json) take their inputs as values; the process parts (Slurm,
// GridEngine, Dev) own the daemons they start and stop only those, by the
// PIDs they started.
package peers

import (
	"fmt"
	"slices"
)

// Figure is one measured quantity over repeated runs.
type Figure struct {
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// Summarize returns the median, min and max of runs. It fails on no runs.
func Summarize(runs []float64) (Figure, error) {
	if len(runs) == 0 {
		return Figure{}, fmt.Errorf("summarize: no runs")
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Figure{Runs: slices.Clone(runs), Median: med, Min: s[0], Max: s[len(s)-1]}, nil
}

// Ratio is banyan/slurm of two medians, or 0 when slurm's is 0.
func Ratio(banyan, slurm Figure) float64 {
	if slurm.Median == 0 {
		return 0
	}
	return banyan.Median / slurm.Median
}
