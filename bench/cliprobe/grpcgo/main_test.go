package main

import (
	"testing"

	"github.com/banyan-sched/banyan/bench/cliprobe/probetest"
)

// TestSubmit: the probe sends the workload's job and returns its id; a
// refusal is an error with the server's code and message, a closed port
// one that says so.
func TestSubmit(t *testing.T) {
	probetest.CheckClient(t, submit, "code = InvalidArgument desc = "+probetest.Refusal)
}
