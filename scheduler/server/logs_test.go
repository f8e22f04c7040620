package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// logsFarm is one server and one agent whose task output is kept in dir.
type logsFarm struct {
	jobs      pb.JobServiceClient
	logs      pb.LogsServiceClient
	dir       string
	stopAgent func()
	conn      *grpc.ClientConn
}

func startLogsFarm(t *testing.T, sweep time.Duration) *logsFarm {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	f := &logsFarm{dir: filepath.Join(t.TempDir(), "task-logs")}
	if sweep > 0 {
		// Output of a job the state never had: the leader says it is gone.
		if err := os.MkdirAll(filepath.Join(f.dir, "job-404", "job-404.0", "1"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	fp := &pb.Fingerprint{Hostname: "a1", CpuCores: 4, MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}, Labels: map[string]string{"hostname": "a1"}}
	f.stopAgent = runAgent(t, agent.Config{ID: "a1", Servers: []string{addr}, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), KillGrace: 200 * time.Millisecond, TaskLogDir: f.dir, TaskLogSweep: sweep})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.jobs, f.logs, f.conn = pb.NewJobServiceClient(conn), pb.NewLogsServiceClient(conn), conn
	return f
}

func (f *logsFarm) gcAll(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewOperatorServiceClient(f.conn).GCJobs(ctx, &pb.GCJobsRequest{All: true}); err != nil {
		t.Fatal(err)
	}
}

func (f *logsFarm) submit(t *testing.T, spec *pb.JobSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Jobs[0].Id
}

// read streams a request to its end and returns the output and the first
// chunk (which names the attempt).
func (f *logsFarm) read(ctx context.Context, req *pb.LogsRequest, each func([]byte)) (*pb.LogsChunk, []byte, error) {
	stream, err := f.logs.Stream(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var first *pb.LogsChunk
	var out []byte
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return first, out, nil
		}
		if err != nil {
			return first, out, err
		}
		if first == nil {
			first = c
		}
		out = append(out, c.Data...)
		if each != nil && len(c.Data) > 0 {
			each(c.Data)
		}
	}
}

func TestLogsReturnFullStderrByteForByte(t *testing.T) {
	f := startLogsFarm(t, 0)
	want := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(want)
	src := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	id := f.submit(t, shellJob("big-stderr", "k1", 1, "cat "+src+" >&2; echo done"))
	j := waitJob(t, f.jobs, id, 20*time.Second)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s", j.State)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, got, err := f.read(ctx, &pb.LogsRequest{JobId: id, Stderr: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.TaskId != j.Tasks[0].Id || first.Attempt != 1 || first.AgentId != "a1" {
		t.Errorf("first chunk names %s#%d on %s", first.TaskId, first.Attempt, first.AgentId)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stderr: got %d bytes, want the %d written, byte for byte", len(got), len(want))
	}
	if tail := j.Tasks[0].Attempts[0].StderrTail; len(tail) >= len(want) {
		t.Errorf("the state's tail holds %d bytes: only the files should hold it all", len(tail))
	}
	_, out, err := f.read(ctx, &pb.LogsRequest{JobId: id, Task: "t0", Attempt: 1}, nil)
	if err != nil || string(out) != "done\n" {
		t.Fatalf("stdout = %q, %v", out, err)
	}
}

func TestLogsFollowRunningTask(t *testing.T) {
	f := startLogsFarm(t, 0)
	id := f.submit(t, shellJob("ticker", "k2", 1, `i=0; while [ $i -lt 8 ]; do echo "line $i"; i=$((i+1)); sleep 0.2; done`))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Wait until it runs, then follow.
	waitFor(t, 10*time.Second, "task running", func() bool {
		j, err := f.jobs.GetJob(ctx, &pb.GetJobRequest{Id: id, WithTasks: true})
		return err == nil && len(j.Tasks) == 1 && len(j.Tasks[0].Attempts) > 0 && j.Tasks[0].Attempts[0].StartedUnixMs > 0
	})
	var beforeEnd []string
	_, out, err := f.read(ctx, &pb.LogsRequest{JobId: id, Follow: true}, func(b []byte) {
		j, err := f.jobs.GetJob(ctx, &pb.GetJobRequest{Id: id})
		if err == nil && j.State == pb.JobState_JOB_STATE_RUNNING {
			beforeEnd = append(beforeEnd, string(b))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 0; i < 8; i++ {
		want.WriteString("line " + string(rune('0'+i)) + "\n")
	}
	if string(out) != want.String() {
		t.Fatalf("followed output = %q", out)
	}
	if len(beforeEnd) < 2 {
		t.Fatalf("lines arrived in %d chunks while the task ran: want them as they come", len(beforeEnd))
	}
	if j := waitJob(t, f.jobs, id, 5*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s", j.State)
	}
}

func TestLogsAgentDownNamesAgentAndPlace(t *testing.T) {
	f := startLogsFarm(t, 0)
	id := f.submit(t, shellJob("quick", "k3", 1, "echo hi"))
	j := waitJob(t, f.jobs, id, 20*time.Second)
	f.stopAgent()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := f.read(ctx, &pb.LogsRequest{JobId: id}, nil)
	want := "agent a1 is "
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "its logs of "+j.Tasks[0].Id+"#1 are on that host under "+filepath.Join(f.dir, id, j.Tasks[0].Id, "1")) {
		t.Fatalf("err = %v; want FailedPrecondition naming the agent, the attempt and where", err)
	}
	waitFor(t, 10*time.Second, "agent marked down", func() bool {
		_, _, err := f.read(ctx, &pb.LogsRequest{JobId: id}, nil)
		return err != nil && strings.Contains(err.Error(), "agent a1 is down;")
	})
}

func TestLogsTaskChoice(t *testing.T) {
	f := startLogsFarm(t, 0)
	id := f.submit(t, shellJob("two", "k4", 2, "echo hi"))
	waitJob(t, f.jobs, id, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := f.read(ctx, &pb.LogsRequest{JobId: id}, nil)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "has 2 tasks; name one: ") || !strings.Contains(err.Error(), "(t1)") {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := f.read(ctx, &pb.LogsRequest{JobId: id, Task: "t1", Attempt: 3}, nil); status.Code(err) != codes.NotFound ||
		!strings.Contains(err.Error(), "no attempt 3 (attempts: 1)") {
		t.Fatalf("err = %v", err)
	}
	if _, out, err := f.read(ctx, &pb.LogsRequest{JobId: id, Task: "t1"}, nil); err != nil || string(out) != "hi\n" {
		t.Fatalf("t1: %q, %v", out, err)
	}
	if _, _, err := f.read(ctx, &pb.LogsRequest{JobId: "job-999"}, nil); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown job: %v", err)
	}
}

func TestLogsOfGoneJobsRemoved(t *testing.T) {
	f := startLogsFarm(t, 100*time.Millisecond)
	id := f.submit(t, shellJob("kept", "k5", 1, "echo hi"))
	waitJob(t, f.jobs, id, 20*time.Second)
	waitFor(t, 10*time.Second, "output of a job gone from the state removed", func() bool {
		_, err := os.Stat(filepath.Join(f.dir, "job-404"))
		return errors.Is(err, os.ErrNotExist)
	})
	time.Sleep(300 * time.Millisecond) // more sweeps
	if _, err := os.Stat(filepath.Join(f.dir, id)); err != nil {
		t.Fatalf("output of a live job: %v", err)
	}
}

func TestLogsRemovedWithTheirJob(t *testing.T) {
	f := startLogsFarm(t, 0) // the hourly sweep never runs: the GC tells the agent
	id := f.submit(t, shellJob("short-lived", "k6", 1, "echo hi"))
	waitJob(t, f.jobs, id, 20*time.Second)
	if _, err := os.Stat(filepath.Join(f.dir, id)); err != nil {
		t.Fatalf("output kept: %v", err)
	}
	f.gcAll(t)
	waitFor(t, 10*time.Second, "output removed with its job", func() bool {
		_, err := os.Stat(filepath.Join(f.dir, id))
		return errors.Is(err, os.ErrNotExist)
	})
}

// TestACLLogsNeedSubmit: task output may hold secrets, as environments
// may, so reading it needs "submit" on the job's pool; "read" is refused.
func TestACLLogsNeedSubmit(t *testing.T) {
	s, _ := startACLServer(t)
	boot, err := dialToken(t, s.Addr(), "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	root := dialToken(t, s.Addr(), boot.Secret)
	if _, err := root.pools.CreatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: "ingest"}}); err != nil {
		t.Fatal(err)
	}
	putPolicy(t, root, "submitter", map[string]string{"ingest": "submit"}, "", "")
	putPolicy(t, root, "reader", map[string]string{"ingest": "read"}, "", "")
	spec := shellJob("j", "", 1, "true")
	spec.Pool = "ingest"
	resp, err := root.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	read := func(token string) error {
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(pb.TokenCredentials(token)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st, err := pb.NewLogsServiceClient(conn).Stream(ctx5(t), &pb.LogsRequest{JobId: resp.Jobs[0].Id})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	wantCode(t, "read-only token", read(createToken(t, root, "r", "reader").Secret), codes.PermissionDenied, `lacks "submit" on pool "ingest"`)
	// No agent: the submitter passes the check and learns the task has not run.
	wantCode(t, "submit token", read(createToken(t, root, "s", "submitter").Secret), codes.FailedPrecondition, "has not run yet")
}

// TestLogsKeepNewestBytesUnderCap: with a small cap the agent keeps the
// newest bytes, and the stream says how many it dropped before them.
func TestLogsKeepNewestBytesUnderCap(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	fp := &pb.Fingerprint{Hostname: "a1", CpuCores: 4, MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}}
	runAgent(t, agent.Config{ID: "a1", Servers: []string{addr}, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), TaskLogMax: 64 << 10})
	f := &logsFarm{jobs: dialClient(t, addr)}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f.logs = pb.NewLogsServiceClient(conn)
	id := f.submit(t, shellJob("loud", "k7", 1, "seq 1 100000"))
	waitJob(t, f.jobs, id, 20*time.Second)
	var all strings.Builder
	for i := 1; i <= 100000; i++ {
		all.WriteString(strconv.Itoa(i) + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := f.logs.Stream(ctx, &pb.LogsRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var dropped int64
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got, dropped = append(got, c.Data...), dropped+c.Dropped
	}
	if len(got) < 32<<10 || len(got) > 64<<10 || dropped+int64(len(got)) != int64(all.Len()) {
		t.Fatalf("kept %d bytes after %d dropped, of %d written: want the newest, within the 64KiB cap", len(got), dropped, all.Len())
	}
	if !strings.HasSuffix(all.String(), string(got)) {
		t.Fatal("the kept bytes are not the newest")
	}
}

// TestLogsFollowerNamesLeader: a follower answers FailedPrecondition naming
// the leader (the CLI follows it), and the leader serves the output.
func TestLogsFollowerNamesLeader(t *testing.T) {
	lns := []net.Listener{listen(t), listen(t), listen(t)}
	var peers []server.Peer
	var addrs []string
	for i, ln := range lns {
		peers = append(peers, server.Peer{ID: fmt.Sprintf("s%d", i+1), Addr: ln.Addr().String()})
		addrs = append(addrs, ln.Addr().String())
	}
	servers := make([]*server.Server, 3)
	for i, ln := range lns {
		servers[i] = startServer(t, server.Config{NodeID: peers[i].ID, DataDir: filepath.Join(t.TempDir(), peers[i].ID),
			Listener: ln, Peers: peers})
		t.Cleanup(func() { servers[i].Close() })
	}
	leader := waitLeader(t, servers...)
	startAgent(t, "a1", addrs, 4)
	var follower string
	for _, s := range servers {
		if s != leader {
			follower = s.Addr()
		}
	}
	client := func(addr string) *logsFarm {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return &logsFarm{jobs: pb.NewJobServiceClient(conn), logs: pb.NewLogsServiceClient(conn)}
	}
	f := client(follower)
	id := f.submit(t, shellJob("hello", "k8", 1, "echo hello"))
	waitJob(t, f.jobs, id, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := f.read(ctx, &pb.LogsRequest{JobId: id}, nil)
	wantCode(t, "read on a follower", err, codes.FailedPrecondition, "not the leader; leader="+leader.Addr())
	if _, out, err := client(leader.Addr()).read(ctx, &pb.LogsRequest{JobId: id}, nil); err != nil || string(out) != "hello\n" {
		t.Fatalf("on the leader: %q, %v", out, err)
	}
}
