// Package probetest serves JobService.SubmitJobs on loopback for the tests
// of the CLI probes (bench/cliprobe/...): it records each request and
// answers with a job id, or with the error it was given, so a test can
// check that a probe sends the submit workload's job and reads the reply
// (or the failure) right.
package probetest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/bench/peers"
	"github.com/banyan-sched/banyan/cmd/sched/jobfile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server is a JobService that only submits.
type Server struct {
	pb.UnimplementedJobServiceServer
	// Addr is its loopback address.
	Addr string
	fail error

	mu       sync.Mutex
	requests []*pb.SubmitJobsRequest
}

// Start serves on a free loopback port until the test ends. With fail
// set, every call fails with it.
func Start(t testing.TB, fail error) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), fail: fail}
	g := grpc.NewServer(wirecodec.ServerOption())
	pb.RegisterJobServiceServer(g, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(ln)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return s
}

// SubmitJobs records the request and names each job job-N.
func (s *Server) SubmitJobs(_ context.Context, req *pb.SubmitJobsRequest) (*pb.SubmitJobsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	if s.fail != nil {
		return nil, s.fail
	}
	resp := &pb.SubmitJobsResponse{}
	for _, spec := range req.Jobs {
		resp.Jobs = append(resp.Jobs, &pb.Job{Id: fmt.Sprintf("job-%d", len(s.requests)), Name: spec.Name})
		resp.Existing = append(resp.Existing, false)
	}
	return resp, nil
}

// Requests are the calls received so far.
func (s *Server) Requests() []*pb.SubmitJobsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*pb.SubmitJobsRequest(nil), s.requests...)
}

// CheckSubmitted fails the test unless the server got exactly one call,
// holding the job `sched job submit` sends for peers.SubmitJobYAML, with
// an idempotency key that starts with "probe-".
func (s *Server) CheckSubmitted(t testing.TB) {
	t.Helper()
	reqs := s.Requests()
	if len(reqs) != 1 || len(reqs[0].Jobs) != 1 {
		t.Fatalf("got %d calls (%v), want one call of one job", len(reqs), reqs)
	}
	got := reqs[0].Jobs[0]
	specs, err := jobfile.Parse([]byte(peers.SubmitJobYAML))
	if err != nil || len(specs) != 1 {
		t.Fatalf("parse the workload's job file: %d jobs, %v", len(specs), err)
	}
	want := specs[0]
	if !strings.HasPrefix(got.IdempotencyKey, "probe-") || got.IdempotencyKey == "probe-" {
		t.Errorf("idempotency key %q: want probe-<random>", got.IdempotencyKey)
	}
	want.IdempotencyKey = got.IdempotencyKey
	if !proto.Equal(got, want) {
		t.Errorf("submitted %v\nwant the workload's job %v", got, want)
	}
}

// CheckClient runs a probe's call, submit (addr to the job id), against
// servers on loopback: it must send the workload's job and return the id
// the server gave (CheckSubmitted); a refusal must be an error with its
// code and the server's message, percent-encoded characters and all
// (wantRefusal, the error's text for the refusal this sends); and a closed
// port must be an error that says it could not connect, not a hang.
func CheckClient(t *testing.T, submit func(addr string) (string, error), wantRefusal string) {
	t.Helper()
	srv := Start(t, nil)
	id, err := submit(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if id != "job-1" {
		t.Errorf("id %q, want job-1", id)
	}
	srv.CheckSubmitted(t)

	bad := Start(t, status.Error(codes.InvalidArgument, Refusal))
	if _, err := submit(bad.Addr); err == nil || !strings.Contains(err.Error(), wantRefusal) {
		t.Errorf("refused: error %v, want one with %q", err, wantRefusal)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := submit(addr); err == nil || !strings.Contains(err.Error(), "connect") || !strings.Contains(err.Error(), addr) {
		t.Errorf("closed port: error %v, want a connect error that names %s", err, addr)
	}
}

// Refusal is the message CheckClient's refusing server sends: quotes, a
// percent sign and a non-ASCII letter; gRPC percent-encodes the last two
// on the wire, which the client must decode.
const Refusal = `pool "x": 100% full, naïve`
