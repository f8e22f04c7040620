package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestFailoverPastHungAndDeadServers: with a hung server (accepts TCP,
// never answers) and a dead one (connection refused) ahead of a live one,
// a call reaches the live one within one try's bound, later calls go
// straight to it, and a refusal of the call itself is not retried
// elsewhere.
func TestFailoverPastHungAndDeadServers(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{NodeID: "live", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		RaftLogLevel: "off", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	addrs, err := splitAddrs(hung.Addr().String() + ", " + deadAddr + "," + s.Addr())
	if err != nil || len(addrs) != 3 {
		t.Fatalf("splitAddrs: %v %v", addrs, err)
	}
	f, err := dialFailover(addrs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := pb.NewJobServiceClient(f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var got *pb.ListJobsResponse
	for got == nil { // the live server may still be electing itself
		if got, err = c.ListJobs(ctx, &pb.ListJobsRequest{}); err != nil && ctx.Err() != nil {
			t.Fatalf("ListJobs: %v", err)
		}
	}
	if d := time.Since(start); d > perTry+10*time.Second {
		t.Fatalf("first call took %v", d)
	}
	start = time.Now()
	if _, err := c.ListJobs(ctx, &pb.ListJobsRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("second call took %v: it should go straight to the server that answered", d)
	}
	// A refusal of the call itself comes back at once, from that server.
	_, err = c.GetJob(ctx, &pb.GetJobRequest{Id: "job-404"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetJob of a missing job: %v, want NotFound", err)
	}
	if _, err := splitAddrs(" , "); err == nil {
		t.Fatal("an empty address list was accepted")
	}
}

// TestWakeRetriesAConnectionInBackoff: a connection whose server was down
// waits out its reconnect backoff (here a minute); wake, which the client
// helper calls before each call on a cached connection, makes it reach the
// server, back on the same address, at once.
func TestWakeRetriesAConnectionInBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down
	f, err := dialFailover([]string{addr}, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
			Backoff: backoff.Config{BaseDelay: time.Minute, Multiplier: 1, MaxDelay: time.Minute}}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := f.conns[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Connect()
	for s := c.GetState(); s != connectivity.TransientFailure; s = c.GetState() {
		if !c.WaitForStateChange(ctx, s) {
			t.Fatalf("the connection to a closed port is %v, want TRANSIENT_FAILURE", s)
		}
	}
	ln, err = net.Listen("tcp", addr) // back
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := grpc.NewServer()
	go srv.Serve(ln)
	defer srv.Stop()
	f.wake()
	ready, cancelReady := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelReady()
	for s := c.GetState(); s != connectivity.Ready; s = c.GetState() {
		if !c.WaitForStateChange(ready, s) {
			t.Fatalf("5 s after wake the connection is %v, want READY (its backoff is a minute)", s)
		}
	}
}
