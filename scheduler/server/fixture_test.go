package server_test

import (
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// Upgrades: testdata/fixture-v1 is a data dir written by this release
// (raft log, stable store and a snapshot with entries after it), with what
// it holds in expect.json. Every later release must start on a copy of it,
// restore the snapshot, replay the log after it and serve the same jobs
// and pools. Regenerate only when the release that wrote it is retired:
//
//	go test -run TestWriteFixture -write-fixture ./scheduler/server
var writeFixture = flag.Bool("write-fixture", false, "write testdata/fixture-v1 (a data dir of this release)")

const (
	fixtureDir  = "testdata/fixture-v1"
	fixtureAddr = "127.0.0.1:47431" // the address in the fixture's raft configuration
)

// fixtureExpect is what the fixture's state holds.
type fixtureExpect struct {
	Jobs  map[string]string `json:"jobs"` // id -> state
	Pools []string          `json:"pools"`
	Tasks int               `json:"tasks"`
}

func TestWriteFixture(t *testing.T) {
	if !*writeFixture {
		t.Skip("writes the fixture only with -write-fixture")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", fixtureAddr)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln, Bootstrap: true})
	waitLeader(t, s)
	conn := dialConn(t, fixtureAddr)
	ctx := context.Background()
	pools := pb.NewPoolServiceClient(conn)
	for _, p := range []string{"studio", "studio/ingest"} {
		if _, err := pools.CreatePool(ctx, &pb.PoolRequest{Pool: &pb.Pool{Path: p}}); err != nil {
			t.Fatal(err)
		}
	}
	c := pb.NewJobServiceClient(conn)
	stop := startAgent(t, "a1", []string{fixtureAddr}, 2)
	done, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("done", "k-done", 3, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, done.Jobs[0].Id, 30*time.Second)
	stop()
	if err := s.SnapshotNow(); err != nil {
		t.Fatal(err)
	}
	// Entries after the snapshot: a queued job in a pool, a cancelled one.
	q := shellJob("queued", "k-queued", 2, "true")
	q.Pool = "studio/ingest"
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{q, shellJob("cancelled", "k-cancel", 1, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CancelJob(ctx, &pb.CancelJobRequest{Id: resp.Jobs[1].Id}); err != nil {
		t.Fatal(err)
	}
	exp := readState(t, conn)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(fixtureDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(fixtureDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	data, _ := json.MarshalIndent(exp, "", "  ")
	if err := os.WriteFile(filepath.Join(fixtureDir, "expect.json"), append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readState lists the jobs and pools a server serves.
func readState(t *testing.T, conn *grpc.ClientConn) fixtureExpect {
	t.Helper()
	ctx := context.Background()
	jobs, err := pb.NewJobServiceClient(conn).ListJobs(ctx, &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	exp := fixtureExpect{Jobs: map[string]string{}}
	for _, j := range jobs.Jobs {
		exp.Jobs[j.Id] = j.State.String()
		exp.Tasks += int(j.Counts.GetTotal())
	}
	pools, err := pb.NewPoolServiceClient(conn).ListPools(ctx, &pb.ListPoolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools.Pools {
		exp.Pools = append(exp.Pools, p.Path)
	}
	sort.Strings(exp.Pools)
	return exp
}

// TestFixtureDataDirLoads starts a server on a copy of the fixture written
// by an earlier build: it restores the snapshot, replays the log after it
// and serves the same jobs and pools; then it takes new work.
func TestFixtureDataDirLoads(t *testing.T) {
	var want fixtureExpect
	data, err := os.ReadFile(filepath.Join(fixtureDir, "expect.json"))
	if err != nil {
		t.Fatalf("the fixture is missing (regenerate with -write-fixture only when retiring its release): %v", err)
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(fixtureDir)); err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			mode := os.FileMode(0o600)
			if d.IsDir() {
				mode = 0o700
			}
			err = os.Chmod(p, mode) // as the server writes its own
		}
		return err
	})
	ln, err := net.Listen("tcp", fixtureAddr)
	if err != nil {
		t.Skipf("the fixture's address %s is taken on this machine: %v", fixtureAddr, err)
	}
	s := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln})
	waitLeader(t, s)
	conn := dialConn(t, fixtureAddr)
	var got fixtureExpect
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got = readState(t, conn)
		if len(got.Jobs) == len(want.Jobs) || time.Now().After(deadline) {
			break
		}
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("the fixture loads as\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	// And it goes on: the unfinished job (its agent is gone) runs to the
	// end once an agent comes.
	startAgent(t, "a2", []string{fixtureAddr}, 2)
	c := pb.NewJobServiceClient(conn)
	for id, st := range want.Jobs {
		if st == pb.JobState_JOB_STATE_QUEUED.String() || st == pb.JobState_JOB_STATE_RUNNING.String() {
			if j := waitJob(t, c, id, 30*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("fixture job %s: %v %s", id, j.State, j.Reason)
			}
		}
	}
}
