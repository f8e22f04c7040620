package main

import (
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/bench/cliprobe/probetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSubmit: the probe sends the workload's job and prints its id; a
// refusal is an error with the server's message.
func TestSubmit(t *testing.T) {
	srv := probetest.Start(t, nil)
	id, err := submit(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if id != "job-1" {
		t.Errorf("id %q, want job-1", id)
	}
	srv.CheckSubmitted(t)

	bad := probetest.Start(t, status.Error(codes.FailedPrecondition, "no such pool"))
	if _, err := submit(bad.Addr); err == nil || !strings.Contains(err.Error(), "no such pool") {
		t.Errorf("error %v: want the server's message", err)
	}
}
