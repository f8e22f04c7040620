package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestMain lets the test binary be the simagents child, as the benchmark
// binary is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "simagents" {
		os.Exit(simagentsMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestClusterHarness drives the harness end to end: three sched server
// processes, simulated agents in a child process, jobs placed and
// finished, the leader killed with SIGKILL, a new leader found through
// the API, and every acknowledged job finished on it.
func TestClusterHarness(t *testing.T) {
	o := options{runs: 1, dataRoot: t.TempDir(), work: t.TempDir()}
	c, err := startCluster(o, "test", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	leader, err := c.waitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fs := fsType(c.dir); fs == "" {
		t.Fatal("no filesystem name for the data dirs")
	}
	fleet, err := startFleet(fleetOpts{servers: c.addrs(), n: 5, cpuMillis: 4000, memBytes: 8 << 30,
		duration: 10 * time.Millisecond, reportPrefix: "t-"}, filepath.Join(c.dir, "simagents.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.stop()
	if err := fleet.waitConnected(time.Minute, 5); err != nil {
		t.Fatal(err)
	}
	idx0, err := c.commitIndex(leader)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	submit := func(addr string, batch int) {
		t.Helper()
		cc, err := c.conn(addr)
		if err != nil {
			t.Fatal(err)
		}
		req := &pb.SubmitJobsRequest{}
		for i := 0; i < 20; i++ {
			j := oneTaskJob("default")
			j.IdempotencyKey = fmt.Sprintf("b%d-%d", batch, i)
			j.Tasks[0].Name = fmt.Sprintf("t-%d-%d", batch, i)
			req.Jobs = append(req.Jobs, j)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := pb.NewJobServiceClient(cc).SubmitJobs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i, j := range r.Jobs {
			acked[req.Jobs[i].IdempotencyKey] = j.Id
		}
	}
	submit(leader.addr, 0)
	if !waitUntil(30*time.Second, 20*time.Millisecond, func() bool { return fleet.last().assigned >= 20 }) {
		t.Fatalf("assigned %d of 20", fleet.last().assigned)
	}
	if _, ok := fleet.assignedAt("t-0-7"); !ok {
		t.Fatal("no assignment time reported for t-0-7")
	}
	idx1, err := c.commitIndex(leader)
	if err != nil || idx1 <= idx0 {
		t.Fatalf("commit index %d -> %d (%v), want it to grow", idx0, idx1, err)
	}
	if _, err := c.metric(leader, "banyan_scheduling_pass_duration_seconds_count"); err != nil {
		t.Fatal(err)
	}
	if err := leader.proc.kill9(); err != nil {
		t.Fatal(err)
	}
	next, err := c.waitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatal("the killed server is still named leader")
	}
	submit(next.addr, 1)
	lost, unfinished, failed, err := checkFinished(c, next, acked, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != 40 || lost != 0 || unfinished != 0 || failed != 0 {
		t.Fatalf("%d acked: %d lost, %d unfinished, %d failed", len(acked), lost, unfinished, failed)
	}
}
