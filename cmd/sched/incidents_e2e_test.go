package main_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/pool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// tlsCluster is three `sched server` processes with mutual TLS and ACLs,
// started as the README says, each restartable on its data dir.
type tlsCluster struct {
	t     *testing.T
	dir   string // CA, certificates, data dirs
	addrs []string
	procs []*exec.Cmd
	logs  []*syncBuffer
}

func (c *tlsCluster) start(i int) {
	c.t.Helper()
	id := fmt.Sprintf("s%d", i+1)
	var peers []string
	for j, a := range c.addrs {
		peers = append(peers, fmt.Sprintf("s%d=%s", j+1, a))
	}
	args := append([]string{"server", "--data-dir", filepath.Join(c.dir, "data-"+id), "--bind", c.addrs[i],
		"--peers", strings.Join(peers, ","), "--acl", "--lease", "3s", "--log-level", "warn"},
		tlsFlags(c.dir, "server-"+id)...)
	var log syncBuffer
	cmd := exec.Command(schedBin, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs[i], c.logs[i] = cmd, &log
}

// kill9 kills server i with SIGKILL and reaps it.
func (c *tlsCluster) kill9(i int) {
	if p := c.procs[i]; p != nil && p.ProcessState == nil {
		_ = p.Process.Signal(syscall.SIGKILL)
		_ = p.Wait()
	}
}

// client runs the CLI with the client certificate of alice, against every
// server (SCHED_ADDR fails over), with token (if any).
func (c *tlsCluster) client(token string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(schedBin, args...)
	cmd.Env = append(os.Environ(), "SCHED_ADDR="+strings.Join(c.addrs, ","),
		"SCHED_TLS_CA="+filepath.Join(c.dir, "ca.pem"), "SCHED_TLS_CERT="+filepath.Join(c.dir, "client-alice.pem"),
		"SCHED_TLS_KEY="+filepath.Join(c.dir, "client-alice-key.pem"), "SCHED_TOKEN="+token)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustClient is client that fails the test on an error.
func (c *tlsCluster) mustClient(token string, args ...string) string {
	c.t.Helper()
	out, stderr, err := c.client(token, args...)
	if err != nil {
		c.t.Fatalf("sched %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// eventually retries f until it returns nil or the deadline passes.
func (c *tlsCluster) eventually(what string, d time.Duration, f func() error) {
	c.t.Helper()
	retryFor(c.t, what, d, f, func() string { return "logs:\n" + c.allLogs() })
}

// retryFor retries f every 200 ms until it returns nil, or fails t after
// d with f's last error and what context says (process logs).
func retryFor(t *testing.T, what string, d time.Duration, f func() error, context func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (after %s): %v\n%s", what, d, err, context())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *tlsCluster) allLogs() string {
	var b strings.Builder
	for i, l := range c.logs {
		if l != nil {
			fmt.Fprintf(&b, "--- s%d\n%s", i+1, l.String())
		}
	}
	return b.String()
}

// conn dials addr over mutual TLS with the certificate ROLE-ID of the
// cluster's CA, sending token on every call.
func (c *tlsCluster) conn(addr, cert, token string) *grpc.ClientConn {
	c.t.Helper()
	src, err := tlsconfig.NewSource(tlsconfig.Options{Files: tlsconfig.Files{CA: filepath.Join(c.dir, "ca.pem"),
		Cert: filepath.Join(c.dir, cert+".pem"), Key: filepath.Join(c.dir, cert+"-key.pem")}})
	if err != nil {
		c.t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(src.Credentials()),
		grpc.WithPerRPCCredentials(pb.TokenCredentials(token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// leaderAddr is the address of the server that leads now.
func (c *tlsCluster) leaderAddr(token string) string {
	c.t.Helper()
	var addr string
	c.eventually("a leader", 20*time.Second, func() error {
		out, stderr, err := c.client(token, "server", "members", "-o", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		var m struct {
			Members []struct {
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			return fmt.Errorf("members -o json: %v: %s", err, out)
		}
		for _, mem := range m.Members {
			if mem.Leader {
				addr = mem.Address
				return nil
			}
		}
		return fmt.Errorf("no leader in %s", out)
	})
	return addr
}

// TestIncidentsOnTLSACLCluster replays the incidents of the trust issue
// against three `sched server` processes with mutual TLS and ACLs and one
// `sched agent`, all started from the CLI as in the README: each is refused
// with a clear error or handled, nothing acknowledged is lost, and after a
// kill -9 of every server the cluster serves again.
func TestIncidentsOnTLSACLCluster(t *testing.T) {
	dir := t.TempDir()
	sched := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(schedBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("sched %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sched("tls", "ca", "create", "--dir", dir)
	for _, who := range [][]string{{"--server", "s1"}, {"--server", "s2"}, {"--server", "s3"},
		{"--agent", "a1"}, {"--agent", "rogue"}, {"--client", "alice"}} {
		sched(append([]string{"tls", "cert", "create", "--dir", dir}, who...)...)
	}
	c := &tlsCluster{t: t, dir: dir, procs: make([]*exec.Cmd, 3), logs: make([]*syncBuffer, 3)}
	for range 3 {
		c.addrs = append(c.addrs, freeAddr(t))
	}
	for i := range 3 {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range 3 {
			c.kill9(i)
		}
	})

	// ACLs: bootstrap, then tokens for the agent, a submitter and a reader.
	var root string
	c.eventually("acl bootstrap", 30*time.Second, func() error {
		out, stderr, err := c.client("", "acl", "bootstrap")
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		m := regexp.MustCompile(`Secret ID:\s+(\S+)`).FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("no secret in %q", out)
		}
		root = m[1]
		return nil
	})
	token := func(name, policy string) string {
		t.Helper()
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
		c.mustClient(root, "acl", "policy", "apply", name, file)
		out := c.mustClient(root, "acl", "token", "create", "--name", name, "--policy", name)
		m := regexp.MustCompile(`Secret ID:\s+(\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("token create printed no secret: %s", out)
		}
		return m[1]
	}
	agentTok := token("agents", "agent: write\n")
	ciTok := token("ci", "pools:\n  default: submit\ncluster: read\n")
	bobTok := token("bob", "pools:\n  default: read\ncluster: read\n")

	// One agent, TLS and its own token, with a storage root holding a link
	// that points outside it.
	root0, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storage, outside := filepath.Join(root0, "root"), filepath.Join(root0, "outside")
	for _, d := range []string{storage, filepath.Join(outside, "ssl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "ssl"), filepath.Join(storage, "lnk")); err != nil {
		t.Fatal(err)
	}
	agentLog := startProc(t, append([]string{"agent", "--servers", strings.Join(c.addrs, ","), "--token", agentTok,
		"--run-as", currentUser(t), "--storage-root", storage, "--task-dir", t.TempDir(), "--log-level", "warn"},
		tlsFlags(dir, "agent-a1")...)...)
	agentUp := func() error {
		out, stderr, err := c.client(ciTok, "agent", "list")
		if err != nil || !strings.Contains(out, "a1") || !strings.Contains(out, " up ") {
			return fmt.Errorf("agent a1 not up: %v %s%s\nagent log:\n%s", err, out, stderr, agentLog)
		}
		return nil
	}
	c.eventually("agent a1 up", 30*time.Second, agentUp)
	var acked []string // every job the cluster acknowledged
	submitRaw := func(tok string, specs ...*pb.JobSpec) ([]string, error) {
		resp, err := pb.NewJobServiceClient(c.conn(c.leaderAddr(root), "client-alice", tok)).SubmitJobs(
			context.Background(), &pb.SubmitJobsRequest{Jobs: specs})
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, j := range resp.Jobs {
			ids = append(ids, j.Id)
		}
		acked = append(acked, ids...)
		return ids, nil
	}
	waitJob := func(id string, d time.Duration) *pb.Job {
		t.Helper()
		jc := pb.NewJobServiceClient(c.conn(c.leaderAddr(root), "client-alice", root))
		var j *pb.Job
		c.eventually("job "+id+" done", d, func() error {
			var err error
			j, err = jc.GetJob(context.Background(), &pb.GetJobRequest{Id: id, WithTasks: true})
			if err != nil {
				return err
			}
			if s := j.State; s != pb.JobState_JOB_STATE_SUCCEEDED && s != pb.JobState_JOB_STATE_FAILED &&
				s != pb.JobState_JOB_STATE_CANCELLED {
				return fmt.Errorf("%v %v", s, j.Counts)
			}
			return nil
		})
		return j
	}

	t.Run("rogue join, remove and raft", func(t *testing.T) {
		leader := c.leaderAddr(root)
		// A client certificate, even with the management token, may not
		// change membership.
		cl := pb.NewClusterServiceClient(c.conn(leader, "client-alice", root))
		_, err := cl.Join(context.Background(), &pb.JoinRequest{Id: "evil", Address: "10.255.255.1:7400"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Join with a client certificate: %v; want PermissionDenied", err)
		}
		_, err = cl.Remove(context.Background(), &pb.RemoveRequest{Id: "s2"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Remove with a client certificate: %v; want PermissionDenied", err)
		}
		// Without a certificate the call never gets past the handshake.
		plain, err := grpc.NewClient(leader, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = pb.NewClusterServiceClient(plain).Join(ctx, &pb.JoinRequest{Id: "evil", Address: "10.255.255.1:7400"})
		cancel()
		if err == nil || status.Code(err) == codes.OK {
			t.Errorf("plaintext Join succeeded")
		}
		// Raft on the shared port with an agent certificate: closed.
		src, err := tlsconfig.NewSource(tlsconfig.Options{Files: tlsconfig.Files{CA: filepath.Join(dir, "ca.pem"),
			Cert: filepath.Join(dir, "agent-rogue.pem"), Key: filepath.Join(dir, "agent-rogue-key.pem")}})
		if err != nil {
			t.Fatal(err)
		}
		if rc, err := tls.Dial("tcp", leader, src.ClientConfig("127.0.0.1", tlsconfig.ALPNRaft)); err == nil {
			_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = rc.Read(make([]byte, 1))
			rc.Close()
			if !errors.Is(err, io.EOF) {
				t.Errorf("agent certificate on raft: read %v; want the server to close", err)
			}
		}
		// The cluster still has three voters and a leader.
		out := c.mustClient(root, "server", "members")
		if strings.Contains(out, "evil") || strings.Count(out, "voter") < 3 {
			t.Errorf("members after rogue calls:\n%s", out)
		}
		c.leaderAddr(root)
	})

	t.Run("rogue agent", func(t *testing.T) {
		// An agent certificate of another id saying hello as a1, with a
		// made-up 4,096-CPU fingerprint and a valid agent token.
		cc := c.conn(c.leaderAddr(root), "agent-rogue", agentTok)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := pb.NewAgentServiceClient(cc).Session(ctx)
		if err == nil {
			err = stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.AgentHello{AgentId: "a1",
				Fingerprint: &pb.Fingerprint{Hostname: "a1", CpuCores: 4096,
					Capacity: &pb.Resources{CpuMillis: 4096000, MemoryBytes: 1 << 40}}}}})
		}
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `agent/rogue may not open a session for agent "a1"`) {
			t.Errorf("rogue hello as a1: %v; want PermissionDenied", err)
		}
		if err := agentUp(); err != nil {
			t.Errorf("after the rogue hello: %v", err)
		}
	})

	// A job of ci's with a secret in its environment, run to the end.
	secretJob, err := submitRaw(ciTok, &pb.JobSpec{Name: "with-secret", Tasks: []*pb.TaskSpec{{
		Command: []string{"true"}, Env: map[string]string{"S3_KEY": "s3cr3t"}}}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("pool rights", func(t *testing.T) {
		spec := filepath.Join(dir, "job.yaml")
		if err := os.WriteFile(spec, []byte("name: hi\ntasks:\n  - name: t\n    command: [\"true\"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"job", "submit", spec}, `lacks "submit" on pool "default"`},
			{[]string{"pool", "set", "default", "--max", "cpu=0"}, `lacks "admin" on pool "default"`},
			{[]string{"job", "cancel", secretJob[0]}, "may not cancel " + secretJob[0]},
			{[]string{"acl", "token", "list"}, "management"},
		} {
			_, stderr, err := c.client(bobTok, tc.args...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("bob: sched %s: %v %q; want a refusal naming %q", strings.Join(tc.args, " "), err, stderr, tc.want)
			}
		}
		if _, stderr, err := c.client("not-a-token", "job", "list"); err == nil || !strings.Contains(stderr, "token") {
			t.Errorf("an unknown token: %v %q", err, stderr)
		}
		out := c.mustClient(bobTok, "job", "show", secretJob[0], "-o", "json")
		if strings.Contains(out, "s3cr3t") || !strings.Contains(out, "S3_KEY") {
			t.Errorf("a reader sees the environment:\n%s", out)
		}
		if out := c.mustClient(ciTok, "job", "show", secretJob[0], "-o", "json"); !strings.Contains(out, "s3cr3t") {
			t.Errorf("the submitter does not see its own environment:\n%s", out)
		}
		// A revoked token stops working at once.
		revoked := token("revoked", "pools:\n  default: read\n")
		out = c.mustClient(root, "acl", "token", "list", "-o", "json")
		var list struct {
			Tokens []struct {
				AccessorID string `json:"accessor_id"`
				Name       string `json:"name"`
			} `json:"tokens"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("token list -o json: %v\n%s", err, out)
		}
		for _, tk := range list.Tokens {
			if tk.Name == "revoked" {
				c.mustClient(root, "acl", "token", "revoke", tk.AccessorID)
			}
		}
		if _, stderr, err := c.client(revoked, "job", "list"); err == nil || !strings.Contains(stderr, "token") {
			t.Errorf("a revoked token: %v %q", err, stderr)
		}
	})

	t.Run("oversized result and large batches", func(t *testing.T) {
		over := fmt.Sprintf(`head -c %d /dev/zero > "$BANYAN_RESULT"`, limits.ResultBytes+1)
		ids, err := submitRaw(ciTok,
			&pb.JobSpec{Name: "big-result", Tasks: []*pb.TaskSpec{{Command: []string{"sh", "-c", over},
				Retry: &pb.RetryPolicy{MaxAttempts: 1}}}},
			&pb.JobSpec{Name: "unrelated", Tasks: []*pb.TaskSpec{{Command: []string{"true"}}}})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("more than the limit of %d", limits.ResultBytes)
		if j := waitJob(ids[0], 60*time.Second); j.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.Reason, want) {
			t.Errorf("a 4 MiB result: %v %q; want failed naming %q", j.State, j.Reason, want)
		}
		if j := waitJob(ids[1], 60*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("an unrelated job: %v %s", j.State, j.Reason)
		}
		// 1,000 tasks with 5 KB of argv each, all queued for one agent.
		arg := strings.Repeat("a", 5<<10)
		spec := &pb.JobSpec{Name: "wide"}
		for range 1000 {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"true", arg},
				Resources: &pb.Resources{CpuMillis: 1, MemoryBytes: 1}})
		}
		ids, err = submitRaw(ciTok, spec)
		if err != nil {
			t.Fatal(err)
		}
		if j := waitJob(ids[0], 180*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("1,000 tasks of 5 KB argv: %v %s %v", j.State, j.Reason, j.Counts)
		}
	})

	t.Run("bounds and the default ask", func(t *testing.T) {
		_, err := submitRaw(ciTok, &pb.JobSpec{Name: "fat-env", Tasks: []*pb.TaskSpec{{Command: []string{"true"},
			Env: map[string]string{"E": strings.Repeat("x", 4_190_000)}}}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), fmt.Sprintf("more than the limit of %d", limits.TaskSpecBytes)) {
			t.Errorf("a 4.19 MB environment: %v; want InvalidArgument naming the limit", err)
		}
		for _, q := range []int64{1 << 62, -1} {
			_, err := submitRaw(ciTok, &pb.JobSpec{Name: "huge", Tasks: []*pb.TaskSpec{{Command: []string{"true"},
				Resources: &pb.Resources{CpuMillis: q}}}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cpu") {
				t.Errorf("cpu %d: %v; want InvalidArgument naming cpu", q, err)
			}
		}
		// Tasks without resources get the default ask, so no more of them
		// run at once than the agent's CPUs hold.
		spec := &pb.JobSpec{Name: "bare"}
		for range 30 {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"sleep", "1"}})
		}
		ids, err := submitRaw(ciTok, spec)
		if err != nil {
			t.Fatal(err)
		}
		j := waitJob(ids[0], 90*time.Second)
		if j.State != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("bare job: %v %s", j.State, j.Reason)
		}
		type edge struct {
			at    int64
			delta int
		}
		var edges []edge
		for _, task := range j.Tasks {
			if got := task.Spec.Resources.Vector(); got != pool.DefaultAsk {
				t.Errorf("task %s asks %v, want the default %v", task.Id, got, pool.DefaultAsk)
			}
			for _, a := range task.Attempts {
				edges = append(edges, edge{a.StartedUnixMs, 1}, edge{a.FinishedUnixMs, -1})
			}
		}
		sort.Slice(edges, func(a, b int) bool {
			return edges[a].at < edges[b].at || edges[a].at == edges[b].at && edges[a].delta < edges[b].delta
		})
		running, peak := 0, 0
		for _, e := range edges {
			running += e.delta
			peak = max(peak, running)
		}
		if cpus := int(pool.DefaultAsk.CPUMillis); peak*cpus > runtime.NumCPU()*1000 || peak < 2 {
			t.Errorf("%d default-ask tasks ran at once on a %d-CPU agent", peak, runtime.NumCPU())
		}
	})

	t.Run("storage roots", func(t *testing.T) {
		escape := storage + "/lnk/../passwd" // not filepath.Join: it would clean ".."
		ids, err := submitRaw(ciTok, &pb.JobSpec{Name: "escape", Tasks: []*pb.TaskSpec{{
			Command: []string{schedBin, "encoder", "plan", "--source", escape, "--out", filepath.Join(storage, "out")}}}})
		if err != nil {
			t.Fatal(err)
		}
		j := waitJob(ids[0], 60*time.Second)
		if j.State != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.Reason, "outside the storage roots") {
			t.Errorf("a source through a link out of the root: %v %q; want failed naming the roots", j.State, j.Reason)
		}
	})

	t.Run("forged empty snapshot", func(t *testing.T) {
		// s3 stops; an empty snapshot with a valid CRC appears in its data
		// dir. It refuses to start and says why; without it, it rejoins.
		c.kill9(2)
		forged := filepath.Join(dir, "data-s3", "snapshots", "1-999999-1")
		if err := os.MkdirAll(forged, 0o700); err != nil {
			t.Fatal(err)
		}
		meta := `{"Version":1,"ID":"1-999999-1","Index":999999,"Term":1,"Configuration":{"Servers":[]},` +
			`"ConfigurationIndex":0,"Size":0,"CRC":"AAAAAAAAAAA="}`
		if err := os.WriteFile(filepath.Join(forged, "meta.json"), []byte(meta), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(forged, "state.bin"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c.start(2)
		done := make(chan error, 1)
		go func() { done <- c.procs[2].Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(c.logs[2].String(), "empty") {
				t.Errorf("s3 on a forged empty snapshot: %v\n%s", err, c.logs[2])
			}
			t.Logf("s3 refused to start: %s", strings.TrimSpace(c.logs[2].String()))
		case <-time.After(30 * time.Second):
			t.Errorf("s3 started from a forged empty snapshot:\n%s", c.logs[2])
			c.kill9(2)
			<-done
		}
		if err := os.RemoveAll(forged); err != nil {
			t.Fatal(err)
		}
		c.start(2)
	})

	// Every server killed at once and restarted: every acknowledged job is
	// there, and the cluster runs new work.
	for i := range 3 {
		c.kill9(i)
	}
	for i := range 3 {
		c.start(i)
	}
	jc := func() pb.JobServiceClient {
		return pb.NewJobServiceClient(c.conn(c.leaderAddr(root), "client-alice", root))
	}
	for _, id := range acked {
		c.eventually("job "+id+" after a restart", 30*time.Second, func() error {
			_, err := jc().GetJob(context.Background(), &pb.GetJobRequest{Id: id})
			return err
		})
	}
	c.eventually("agent a1 back", 60*time.Second, agentUp)
	ids, err := submitRaw(ciTok, &pb.JobSpec{Name: "after", Tasks: []*pb.TaskSpec{{Command: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(ids[0], 60*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("a job after the restart: %v %s", j.State, j.Reason)
	}
}
