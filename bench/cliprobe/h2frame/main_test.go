package main

import (
	"testing"

	"github.com/banyan-sched/banyan/bench/cliprobe/grpcwire"
	"github.com/banyan-sched/banyan/bench/cliprobe/probetest"
)

// TestSubmit: the hand-framed call reaches a grpc-go server as the
// workload's job and the reply's job id comes back; a refusal is reported
// with its code and its message, percent-decoded, and a closed port is an
// error, not a hang.
func TestSubmit(t *testing.T) {
	probetest.CheckClient(t, func(addr string) (string, error) {
		return submit(addr, grpcwire.SubmitRequest(grpcwire.RandomKey()))
	}, "gRPC status 3: "+probetest.Refusal)
}
