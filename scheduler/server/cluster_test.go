package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// quietLogger keeps test output readable; set BANYAN_TEST_LOG=1 to see logs.
func quietLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("BANYAN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startServer starts one server on ln with cfg's other fields.
func startServer(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.Lease == 0 {
		cfg.Lease = time.Second
	}
	cfg.RaftLogLevel = "off"
	s, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	return s
}

// startOneNodeFarm starts a bootstrapped single server, waits for it to
// lead, starts one 4-CPU agent on it and returns the server (the caller
// closes it) and a client.
func startOneNodeFarm(t *testing.T) (*server.Server, pb.JobServiceClient) {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	waitLeader(t, s)
	startAgent(t, "a1", []string{addr}, 4)
	return s, dialClient(t, addr)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startAgent runs an in-process agent until the returned stop is called.
func startAgent(t *testing.T, id string, servers []string, cpus int64) (stop func()) {
	t.Helper()
	fp := &pb.Fingerprint{Hostname: id, CpuCores: int32(cpus), MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: cpus * 1000, MemoryBytes: 8 << 30}, Labels: map[string]string{"hostname": id}}
	return runAgent(t, agent.Config{ID: id, Servers: servers, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), KillGrace: 200 * time.Millisecond})
}

// runAgent starts an in-process agent with cfg until the test ends (or
// stop is called).
func runAgent(t *testing.T, cfg agent.Config) (stop func()) {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func dialClient(t *testing.T, addr string) pb.JobServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewJobServiceClient(conn)
}

func shellJob(name, key string, n int, script string) *pb.JobSpec {
	j := &pb.JobSpec{Name: name, IdempotencyKey: key}
	for i := 0; i < n; i++ {
		j.Tasks = append(j.Tasks, &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Command: []string{"sh", "-c", script},
			Resources: &pb.Resources{CpuMillis: 100}, Retry: &pb.RetryPolicy{InitialBackoffMs: 50}})
	}
	return j
}

// waitJob polls until the job is final or the deadline passes.
func waitJob(t *testing.T, c pb.JobServiceClient, id string, within time.Duration) *pb.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: id, WithTasks: true})
		cancel()
		if err == nil && (j.State == pb.JobState_JOB_STATE_SUCCEEDED || j.State == pb.JobState_JOB_STATE_FAILED ||
			j.State == pb.JobState_JOB_STATE_CANCELLED) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not final after %s: %v (err %v)%s", id, within, j.GetState(), err, taskLines(j))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// taskLines lists a job's tasks with their state and attempts, one a line,
// so a test that gives up on a job says where each task was.
func taskLines(j *pb.Job) string {
	var b strings.Builder
	for _, task := range j.GetTasks() {
		fmt.Fprintf(&b, "\n  %s %s %v", task.Id, task.Name, task.State)
		for _, a := range task.Attempts {
			fmt.Fprintf(&b, " [attempt %d on %s: placed %d started %d finished %d %q %s]", a.Number, a.AgentId, a.PlacedUnixMs,
				a.StartedUnixMs, a.FinishedUnixMs, a.Outcome, a.Error)
		}
	}
	return b.String()
}

func waitLeader(t *testing.T, servers ...*server.Server) *server.Server {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range servers {
			if s != nil && s.IsLeader() {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return nil
}

// TestRestartKeepsJobs runs a job on one server, restarts the server on the
// same data dir and checks the job and its attempts are all still there,
// then that a job left unfinished by the restart completes.
func TestRestartKeepsJobs(t *testing.T) {
	dir := t.TempDir()
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln, Bootstrap: true})
	waitLeader(t, s)
	stopAgent := startAgent(t, "a1", []string{addr}, 4)
	c := dialClient(t, addr)
	ctx := context.Background()
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("done", "k1", 5, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second)
	if done.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job state %v: %s", done.State, done.Reason)
	}
	resp2, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("slow", "k2", 3, "sleep 0.3")}})
	if err != nil {
		t.Fatal(err)
	}
	stopAgent()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln2})
	defer s2.Close()
	waitLeader(t, s2)
	c2 := dialClient(t, addr)
	again, err := c2.GetJob(ctx, &pb.GetJobRequest{Id: done.Id, WithTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	if again.State != done.State || len(again.Tasks) != 5 || again.Counts.Succeeded != 5 {
		t.Fatalf("after restart: state %v, %d tasks, counts %v", again.State, len(again.Tasks), again.Counts)
	}
	for i, task := range again.Tasks {
		if len(task.Attempts) != 1 || task.Attempts[0].FinishedUnixMs == 0 ||
			task.Attempts[0].FinishedUnixMs != done.Tasks[i].Attempts[0].FinishedUnixMs {
			t.Fatalf("task %s timeline changed across restart: %v vs %v", task.Id, task.Attempts, done.Tasks[i].Attempts)
		}
	}
	// The same idempotency key still names the same job.
	dup, err := c2.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("done", "k1", 5, "true")}})
	if err != nil || !dup.Existing[0] || dup.Jobs[0].Id != done.Id {
		t.Fatalf("resubmit after restart: %v %v", dup, err)
	}
	startAgent(t, "a1", []string{addr}, 4)
	slow := waitJob(t, c2, resp2.Jobs[0].Id, 20*time.Second)
	if slow.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("unfinished job after restart: %v %s", slow.State, slow.Reason)
	}
}

// TestAgentLostMidTask stops the agent running a task; after its lease the
// task runs again on the other agent, without using a retry.
func TestAgentLostMidTask(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		Lease: 700 * time.Millisecond})
	defer s.Close()
	waitLeader(t, s)
	stopA := startAgent(t, "a1", []string{addr}, 4)
	c := dialClient(t, addr)
	ctx := context.Background()
	// Only a1 exists, so the task lands there.
	job := shellJob("lost", "", 1, "sleep 1")
	job.Tasks[0].Retry = &pb.RetryPolicy{MaxAttempts: 1}
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Jobs[0].Id
	waitFor(t, 10*time.Second, "task running on a1", func() bool {
		j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: id, WithTasks: true})
		return err == nil && j.Tasks[0].State == pb.TaskState_TASK_STATE_RUNNING
	})
	startAgent(t, "a2", []string{addr}, 4)
	stopA()
	j := waitJob(t, c, id, 20*time.Second)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}
	task := j.Tasks[0]
	if len(task.Attempts) != 2 || task.Attempts[0].Outcome != "lost" || task.Attempts[0].AgentId != "a1" ||
		task.Attempts[1].AgentId != "a2" || task.Attempts[1].Outcome != "succeeded" || task.RetriesUsed != 0 {
		t.Fatalf("attempts %v, retries used %d", task.Attempts, task.RetriesUsed)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterLeaderKilledDuringSubmissions runs three servers, kills the
// leader while clients submit through every server, and checks that every
// acknowledged job is present under the new leader and runs to completion.
// startThree starts three servers (s1, s2, s3) on loopback, bootstrapped
// together, each with cfg's other fields (NodeID, DataDir, Listener and
// Peers are set here). The caller closes them.
func startThree(t *testing.T, cfg server.Config) []*server.Server {
	t.Helper()
	return startThreeWith(t, cfg, nil)
}

// startThreeWith is startThree with each server's config passed through
// tweak (when not nil) before the server starts.
func startThreeWith(t *testing.T, cfg server.Config, tweak func(c *server.Config)) []*server.Server {
	t.Helper()
	lns := []net.Listener{listen(t), listen(t), listen(t)}
	var peers []server.Peer
	for i, ln := range lns {
		peers = append(peers, server.Peer{ID: fmt.Sprintf("s%d", i+1), Addr: ln.Addr().String()})
	}
	servers := make([]*server.Server, len(lns))
	for i, ln := range lns {
		c := cfg
		c.NodeID, c.DataDir, c.Listener, c.Peers = peers[i].ID, filepath.Join(t.TempDir(), peers[i].ID), ln, peers
		if tweak != nil {
			tweak(&c)
		}
		servers[i] = startServer(t, c)
	}
	return servers
}

// closeServers closes the servers not yet closed (closeLeader leaves nil
// in a closed one's slot); defer it with the slice startThree returned.
func closeServers(servers []*server.Server) {
	for _, s := range servers {
		if s != nil {
			s.Close()
		}
	}
}

// closeLeader closes leader, sets its slot in servers to nil and returns
// the others.
func closeLeader(t *testing.T, servers []*server.Server, leader *server.Server) []*server.Server {
	t.Helper()
	var survivors []*server.Server
	for i, s := range servers {
		if s != leader {
			survivors = append(survivors, s)
			continue
		}
		if err := s.Close(); err != nil {
			t.Logf("close leader: %v", err)
		}
		servers[i] = nil
	}
	return survivors
}

func TestClusterLeaderKilledDuringSubmissions(t *testing.T) {
	servers := startThree(t, server.Config{Lease: 2 * time.Second})
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	defer closeServers(servers)
	leader := waitLeader(t, servers...)
	startAgent(t, "a1", addrs, 8)
	startAgent(t, "a2", addrs, 8)

	clients := make([]pb.JobServiceClient, 3)
	for i, a := range addrs {
		clients[i] = dialClient(t, a)
	}
	var mu sync.Mutex
	acked := map[string]string{} // idempotency key -> job id
	stopSubmit := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stopSubmit:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, n)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				resp, err := clients[(w+n)%3].SubmitJobs(ctx, &pb.SubmitJobsRequest{
					Jobs: []*pb.JobSpec{shellJob(key, key, 2, "true")}})
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = resp.Jobs[0].Id
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	survivors := closeLeader(t, servers, leader)
	newLeader := waitLeader(t, survivors...)
	time.Sleep(700 * time.Millisecond)
	close(stopSubmit)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 10 {
		t.Fatalf("only %d submissions acknowledged", len(acked))
	}
	c := dialClient(t, newLeader.Addr())
	for key, id := range acked {
		j := waitJob(t, c, id, 30*time.Second)
		if j.IdempotencyKey != key || j.State != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("job %s (key %s): key %q state %v %s", id, key, j.IdempotencyKey, j.State, j.Reason)
		}
	}
	t.Logf("%d acknowledged jobs all present and succeeded after failover", len(acked))
}

// TestTaskResultExpandsJob: a task writes a job expansion to $BANYAN_RESULT;
// the tasks it adds (a fan-out and its join) run through real agents.
func TestTaskResultExpandsJob(t *testing.T) {
	j := runPlan(t, `{"tasks":[{"name":"c0","command":["true"]},{"name":"c1","command":["true"]},`+
		`{"name":"join","command":["sh","-c","echo joined"],"after":["c0","c1","plan"]}]}`)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED || len(j.Tasks) != 4 {
		t.Fatalf("job %v (%s) with %d tasks", j.State, j.Reason, len(j.Tasks))
	}
	join := j.Tasks[3]
	if join.Name != "join" || join.Attempts[0].StdoutTail != "joined\n" {
		t.Fatalf("join task %v", join)
	}
	for _, task := range j.Tasks[1:3] {
		if task.Attempts[0].FinishedUnixMs > join.Attempts[0].StartedUnixMs {
			t.Fatalf("join started before %s finished", task.Name)
		}
	}
}

// runPlan runs, on a one-node farm, a job whose one task "plan" writes
// result to $BANYAN_RESULT, and returns the job once it has ended.
func runPlan(t *testing.T, result string) *pb.Job {
	t.Helper()
	s, c := startOneNodeFarm(t)
	t.Cleanup(func() { s.Close() })
	script := `printf '%s' '` + result + `' > "$BANYAN_RESULT"`
	job := &pb.JobSpec{Name: "fanout", Tasks: []*pb.TaskSpec{{Name: "plan", Command: []string{"sh", "-c", script},
		Resources: &pb.Resources{CpuMillis: 100}}}}
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job}})
	if err != nil {
		t.Fatal(err)
	}
	return waitJob(t, c, resp.Jobs[0].Id, 20*time.Second)
}

// TestTaskResultArraysRun: a task's result holds an array and a join after
// the whole array; the leader marks the entry (Command.result_arrays), so
// Apply writes the array out, and its tasks run through a real agent, each
// with its index in place of ${INDEX}.
func TestTaskResultArraysRun(t *testing.T) {
	j := runPlan(t, `{"tasks":[{"name":"c","count":3,"command":["sh","-c","echo chunk ${INDEX}"]},`+
		`{"name":"join","command":["true"],"after":["c","plan"]}]}`)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED || len(j.Tasks) != 5 {
		t.Fatalf("job %v (%s) with %d tasks, want 5 succeeded", j.State, j.Reason, len(j.Tasks))
	}
	join := j.Tasks[4]
	for i, task := range j.Tasks[1:4] {
		if want := fmt.Sprintf("chunk %d\n", i); task.Name != fmt.Sprintf("c-%d", i) || task.Attempts[0].StdoutTail != want {
			t.Fatalf("task %s printed %q, want c-%d printing %q", task.Name, task.Attempts[0].StdoutTail, i, want)
		}
		if task.Attempts[0].FinishedUnixMs > join.Attempts[0].StartedUnixMs {
			t.Fatalf("join started before %s finished", task.Name)
		}
	}
}

// TestJoinFormsCluster: one server bootstraps, two more join through it
// (and through each other), and a job submitted to a joiner runs.
func TestJoinFormsCluster(t *testing.T) {
	ln1, ln2, ln3 := listen(t), listen(t), listen(t)
	s1 := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln1, Bootstrap: true})
	defer s1.Close()
	waitLeader(t, s1)
	s2 := startServer(t, server.Config{NodeID: "s2", DataDir: t.TempDir(), Listener: ln2, Join: []string{s1.Addr()}})
	defer s2.Close()
	s3 := startServer(t, server.Config{NodeID: "s3", DataDir: t.TempDir(), Listener: ln3, Join: []string{s2.Addr()}})
	defer s3.Close()
	conn, err := grpc.NewClient(s3.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cluster := pb.NewClusterServiceClient(conn)
	waitFor(t, 15*time.Second, "three voters", func() bool {
		m, err := cluster.Members(context.Background(), &pb.MembersRequest{})
		return err == nil && len(m.Members) == 3 && m.LeaderId == "s1"
	})
	startAgent(t, "a1", []string{s2.Addr()}, 2)
	c := dialClient(t, s3.Addr())
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("j", "", 2, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}
}

// TestDeadServerRemovedAndReplaced kills one of three servers for good:
// the leader removes it after DeadServerTimeout (the two left keep a
// healthy quorum and serve), and a new server joins.
func TestDeadServerRemovedAndReplaced(t *testing.T) {
	servers := startThree(t, server.Config{DeadServerTimeout: 2 * time.Second})
	for _, s := range servers {
		defer s.Close()
	}
	leader := waitLeader(t, servers...)
	var victim *server.Server
	for _, s := range servers {
		if s != leader {
			victim = s
			break
		}
	}
	members := func(s *server.Server) []string {
		r, err := pb.NewClusterServiceClient(dialConn(t, s.Addr())).Members(context.Background(), &pb.MembersRequest{})
		if err != nil {
			return nil
		}
		var ids []string
		for _, m := range r.Members {
			ids = append(ids, m.Id)
		}
		return ids
	}
	// Every member says which build it runs.
	r, err := pb.NewClusterServiceClient(dialConn(t, victim.Addr())).Members(context.Background(), &pb.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Members {
		if m.Version == "" || m.StateFormat == 0 {
			t.Fatalf("member %s reports no version: %+v", m.Id, m)
		}
	}
	victim.Close()
	waitFor(t, 30*time.Second, "the dead server removed", func() bool {
		ids := members(leader)
		return len(ids) == 2 && !slices.Contains(ids, victim.NodeID())
	})
	c := dialClient(t, leader.Addr())
	if _, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("after", "", 1, "true")}}); err != nil {
		t.Fatalf("the two left do not serve: %v", err)
	}
	s4 := startServer(t, server.Config{NodeID: "s4", DataDir: t.TempDir(), Listener: listen(t), Join: []string{leader.Addr()}})
	defer s4.Close()
	waitFor(t, 30*time.Second, "s4 joined", func() bool { return len(members(leader)) == 3 && slices.Contains(members(leader), "s4") })
}
