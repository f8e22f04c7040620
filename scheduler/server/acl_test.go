package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
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

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log records written so far.
func (b *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// aclClients are the services of one connection that sends one token.
type aclClients struct {
	jobs    pb.JobServiceClient
	pools   pb.PoolServiceClient
	acl     pb.ACLServiceClient
	agents  pb.AgentServiceClient
	cluster pb.ClusterServiceClient
}

func dialToken(t *testing.T, addr, token string) aclClients {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(pb.TokenCredentials(token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return aclClients{jobs: pb.NewJobServiceClient(conn), pools: pb.NewPoolServiceClient(conn),
		acl: pb.NewACLServiceClient(conn), agents: pb.NewAgentServiceClient(conn), cluster: pb.NewClusterServiceClient(conn)}
}

func ctx5(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode checks a call's status code and that its message says want.
func wantCode(t *testing.T, what string, err error, code codes.Code, want string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), want) {
		t.Fatalf("%s: got %v, want %s containing %q", what, err, code, want)
	}
}

// startACLServer starts a one-server cluster enforcing ACLs, with its logs
// (audit lines included) in the returned buffer.
func startACLServer(t *testing.T) (*server.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	ln := listen(t)
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true, ACL: true,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	return s, logs
}

func createToken(t *testing.T, root aclClients, name string, policies ...string) *pb.ACLToken {
	t.Helper()
	tok, err := root.acl.CreateToken(ctx5(t), &pb.CreateTokenRequest{Name: name, Policies: policies})
	if err != nil {
		t.Fatalf("create token %s: %v", name, err)
	}
	if tok.Secret == "" || tok.AccessorId == "" {
		t.Fatalf("token %s created without secret or accessor: %v", name, tok)
	}
	return tok
}

func putPolicy(t *testing.T, root aclClients, name string, rules map[string]string, cluster, agent string) {
	t.Helper()
	p := &pb.ACLPolicy{Name: name, Cluster: cluster, Agent: agent}
	for pat, capab := range rules {
		p.Pools = append(p.Pools, &pb.ACLPoolRule{Pattern: pat, Capability: capab})
	}
	if _, err := root.acl.UpsertPolicy(ctx5(t), &pb.UpsertPolicyRequest{Policy: p}); err != nil {
		t.Fatalf("policy %s: %v", name, err)
	}
}

func TestACLBootstrapOnlyOnce(t *testing.T) {
	s, _ := startACLServer(t)
	anon := dialToken(t, s.Addr(), "")
	_, err := anon.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("j", "", 1, "true")}})
	wantCode(t, "submit before bootstrap", err, codes.Unauthenticated, "not bootstrapped yet")
	root, err := anon.acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !root.Management || root.Secret == "" {
		t.Fatalf("bootstrap token %v: want a management token with its secret", root)
	}
	_, err = anon.acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	wantCode(t, "second bootstrap", err, codes.FailedPrecondition, "already bootstrapped")
	_, err = anon.jobs.ListJobs(ctx5(t), &pb.ListJobsRequest{})
	wantCode(t, "call without token", err, codes.Unauthenticated, "no ACL token")
	_, err = dialToken(t, s.Addr(), "made-up").jobs.ListJobs(ctx5(t), &pb.ListJobsRequest{})
	wantCode(t, "unknown token", err, codes.Unauthenticated, "unknown or was revoked")
	me, err := dialToken(t, s.Addr(), root.Secret).acl.WhoAmI(ctx5(t), &pb.WhoAmIRequest{})
	if err != nil || me.AccessorId != root.AccessorId || me.Secret != "" {
		t.Fatalf("whoami: %v %v, want accessor %s without secret", me, err, root.AccessorId)
	}
	// A second management token may manage ACLs; lists never show secrets.
	mgmt, err := dialToken(t, s.Addr(), root.Secret).acl.CreateToken(ctx5(t), &pb.CreateTokenRequest{Name: "ops", Management: true})
	if err != nil || !mgmt.Management {
		t.Fatalf("create management token: %v %v", mgmt, err)
	}
	toks, err := dialToken(t, s.Addr(), mgmt.Secret).acl.ListTokens(ctx5(t), &pb.ListTokensRequest{})
	if err != nil || len(toks.Tokens) != 2 {
		t.Fatalf("list tokens with the new management token: %v %v", toks, err)
	}
	for _, tok := range toks.Tokens {
		if tok.Secret != "" {
			t.Fatalf("token list shows a secret for %s", tok.AccessorId)
		}
	}
}

func TestACLPoolRightsSubmitterAndAudit(t *testing.T) {
	s, logs := startACLServer(t)
	boot, err := dialToken(t, s.Addr(), "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	root := dialToken(t, s.Addr(), boot.Secret)
	for _, p := range []string{"studio", "studio/ingest", "studio/marketing"} {
		if _, err := root.pools.CreatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: p}}); err != nil {
			t.Fatal(err)
		}
	}
	putPolicy(t, root, "ingest", map[string]string{"studio/ingest": "submit"}, "", "")
	putPolicy(t, root, "reader", map[string]string{"studio/*": "read"}, "read", "")
	putPolicy(t, root, "ingest-admin", map[string]string{"studio/ingest": "admin"}, "", "")
	putPolicy(t, root, "default-only", map[string]string{"default": "read"}, "", "")
	sub1Tok := createToken(t, root, "sub1", "ingest")
	sub1 := dialToken(t, s.Addr(), sub1Tok.Secret)
	sub2Tok := createToken(t, root, "sub2", "ingest")
	sub2 := dialToken(t, s.Addr(), sub2Tok.Secret)
	reader := dialToken(t, s.Addr(), createToken(t, root, "reader", "reader").Secret)
	admin := dialToken(t, s.Addr(), createToken(t, root, "admin", "ingest-admin").Secret)
	outsider := dialToken(t, s.Addr(), createToken(t, root, "outsider", "default-only").Secret)

	job := func(name string) *pb.JobSpec {
		j := shellJob(name, "", 1, "true")
		j.Pool = "studio/ingest"
		j.Tasks[0].Env = map[string]string{"S3_KEY": "very-secret"}
		return j
	}
	// A token without rights on the pool is denied submit.
	other := job("elsewhere")
	other.Pool = "studio/marketing"
	_, err = sub1.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job("ok"), other}})
	wantCode(t, "submit to another pool", err, codes.PermissionDenied, `lacks "submit" on pool "studio/marketing"`)
	_, err = reader.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job("ro")}})
	wantCode(t, "read-only submit", err, codes.PermissionDenied, `lacks "submit" on pool "studio/ingest"`)

	// A submission the handler refuses is audited as an error.
	bad := job("bad")
	bad.Pool = "studio" // has children: not a leaf
	_, err = root.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{bad}})
	wantCode(t, "submit to a parent pool", err, codes.InvalidArgument, "has child pools")

	// An older job in the default pool, for the outsider's list below.
	if _, err := root.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("dflt", "", 1, "true")}}); err != nil {
		t.Fatal(err)
	}

	// Jobs record their submitter.
	resp, err := sub1.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job("j1"), job("j2"), job("j3")}})
	if err != nil {
		t.Fatal(err)
	}
	j1, j2, j3 := resp.Jobs[0].Id, resp.Jobs[1].Id, resp.Jobs[2].Id
	got, err := reader.jobs.GetJob(ctx5(t), &pb.GetJobRequest{Id: j1, WithTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Submitter.GetAccessorId() != sub1Tok.AccessorId || got.Submitter.GetName() != "sub1" {
		t.Fatalf("submitter %v, want accessor %s name sub1", got.Submitter, sub1Tok.AccessorId)
	}
	// Environment redacted for a read-only token, visible to a submit token.
	if v := got.Tasks[0].Spec.Env["S3_KEY"]; v != server.Redacted {
		t.Fatalf("read-only token sees env S3_KEY=%q, want %q", v, server.Redacted)
	}
	list, err := reader.jobs.ListJobs(ctx5(t), &pb.ListJobsRequest{})
	if err != nil || len(list.Jobs) != 3 {
		t.Fatalf("reader lists %d jobs (%v), want the 3 of studio/ingest", len(list.GetJobs()), err)
	}
	got, err = sub2.jobs.GetJob(ctx5(t), &pb.GetJobRequest{Id: j1, WithTasks: true})
	if err != nil || got.Tasks[0].Spec.Env["S3_KEY"] != "very-secret" {
		t.Fatalf("submit token: env %v (%v), want the value", got.GetTasks(), err)
	}
	// ListJobs leaves out pools the caller cannot read; GetJob refuses them.
	list, err = outsider.jobs.ListJobs(ctx5(t), &pb.ListJobsRequest{Limit: 1})
	if err != nil || len(list.Jobs) != 1 || list.Jobs[0].Name != "dflt" {
		t.Fatalf("outsider lists %v (%v), want only the default pool's job (limit applied after filtering)", list.GetJobs(), err)
	}
	_, err = outsider.jobs.GetJob(ctx5(t), &pb.GetJobRequest{Id: j1})
	wantCode(t, "outsider get", err, codes.PermissionDenied, `lacks "read" on pool "studio/ingest"`)
	watch, err := outsider.jobs.WatchJob(ctx5(t), &pb.WatchJobRequest{Id: j1})
	if err == nil {
		_, err = watch.Recv()
	}
	wantCode(t, "outsider watch", err, codes.PermissionDenied, `lacks "read" on pool "studio/ingest"`)
	watch, err = reader.jobs.WatchJob(ctx5(t), &pb.WatchJobRequest{Id: j1})
	if err == nil {
		_, err = watch.Recv()
	}
	if err != nil {
		t.Fatalf("reader watches a job of a pool it reads: %v", err)
	}

	// A read-only token cannot cancel or change quotas.
	_, err = reader.jobs.CancelJob(ctx5(t), &pb.CancelJobRequest{Id: j1})
	wantCode(t, "reader cancel", err, codes.PermissionDenied, "only its submitter or a token with \"admin\" on pool \"studio/ingest\"")
	_, err = reader.pools.UpdatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: "studio/ingest",
		Max: &pb.Resources{CpuMillis: 0}, MaxSet: []string{"cpu"}}})
	wantCode(t, "reader quota", err, codes.PermissionDenied, `lacks "admin" on pool "studio/ingest"`)
	// Another submit token of the same pool cannot cancel; the submitter
	// and a pool admin can.
	_, err = sub2.jobs.CancelJob(ctx5(t), &pb.CancelJobRequest{Id: j1})
	wantCode(t, "other submitter cancel", err, codes.PermissionDenied, "may not cancel "+j1)
	if _, err := sub1.jobs.CancelJob(ctx5(t), &pb.CancelJobRequest{Id: j1}); err != nil {
		t.Fatalf("submitter cancels its own job: %v", err)
	}
	if _, err := admin.jobs.CancelJob(ctx5(t), &pb.CancelJobRequest{Id: j2}); err != nil {
		t.Fatalf("pool admin cancels: %v", err)
	}
	if _, err := admin.pools.UpdatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: "studio/ingest"}}); err != nil {
		t.Fatalf("pool admin updates its pool: %v", err)
	}
	// Cluster views need cluster read.
	if _, err := reader.agents.ListAgents(ctx5(t), &pb.ListAgentsRequest{}); err != nil {
		t.Fatalf("cluster read lists agents: %v", err)
	}
	_, err = sub1.cluster.Members(ctx5(t), &pb.MembersRequest{})
	wantCode(t, "members without cluster read", err, codes.PermissionDenied, `lacks "cluster read"`)
	_, err = reader.cluster.Join(ctx5(t), &pb.JoinRequest{Id: "rogue", Address: "127.0.0.1:1"})
	wantCode(t, "join without operator", err, codes.PermissionDenied, `lacks "cluster operator"`)
	_, err = sub1.acl.ListTokens(ctx5(t), &pb.ListTokensRequest{})
	wantCode(t, "list tokens without management", err, codes.PermissionDenied, "not a management token")

	// A revoked token is refused.
	if _, err := root.acl.RevokeToken(ctx5(t), &pb.RevokeTokenRequest{AccessorId: sub2Tok.AccessorId}); err != nil {
		t.Fatal(err)
	}
	_, err = sub2.jobs.GetJob(ctx5(t), &pb.GetJobRequest{Id: j3})
	wantCode(t, "revoked token", err, codes.Unauthenticated, "unknown or was revoked")

	// Audit lines: one per change, naming the accessor, never a secret.
	want := []struct{ action, accessor, result, job string }{
		{"job.submit", sub1Tok.AccessorId, "denied", ""},
		{"job.submit", sub1Tok.AccessorId, "ok", strings.Join([]string{j1, j2, j3}, ",")},
		{"job.cancel", sub2Tok.AccessorId, "denied", j1},
		{"job.cancel", sub1Tok.AccessorId, "ok", j1},
		{"pool.update", "", "denied", ""},
		{"job.submit", boot.AccessorId, "error", ""},
		{"acl.token.revoke", boot.AccessorId, "ok", ""},
		{"acl.bootstrap", "anonymous-or-none", "ok", ""},
	}
	recs := logs.records(t)
	for _, w := range want {
		found := false
		for _, r := range recs {
			if r["msg"] != "audit" || r["action"] != w.action || r["result"] != w.result {
				continue
			}
			if w.accessor != "" && w.accessor != "anonymous-or-none" && r["accessor"] != w.accessor {
				continue
			}
			if w.job != "" && r["job"] != w.job {
				continue
			}
			found = true
		}
		if !found {
			t.Errorf("no audit line %+v in:\n%s", w, logs.String())
		}
	}
	for _, secret := range []string{boot.Secret, sub1Tok.Secret, sub2Tok.Secret} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a token secret reached the log")
		}
	}
}

// TestACLAgentTokenAndForwarding runs a two-server cluster with ACLs:
// calls reaching the follower are forwarded with the caller's token, an
// agent session without an agent token is refused, and an agent with one
// runs the job.
func TestACLAgentTokenAndForwarding(t *testing.T) {
	lns := []net.Listener{listen(t), listen(t)}
	peers := []server.Peer{{ID: "s1", Addr: lns[0].Addr().String()}, {ID: "s2", Addr: lns[1].Addr().String()}}
	servers := make([]*server.Server, 2)
	for i, ln := range lns {
		servers[i] = startServer(t, server.Config{NodeID: peers[i].ID, DataDir: filepath.Join(t.TempDir(), peers[i].ID),
			Listener: ln, Peers: peers, ACL: true})
		t.Cleanup(func() { servers[i].Close() })
	}
	leader := waitLeader(t, servers...)
	follower := servers[0]
	if follower == leader {
		follower = servers[1]
	}
	// Bootstrap and everything else through the follower.
	boot, err := dialToken(t, follower.Addr(), "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatalf("bootstrap through the follower: %v", err)
	}
	root := dialToken(t, follower.Addr(), boot.Secret)
	putPolicy(t, root, "agent", nil, "", "write")
	putPolicy(t, root, "ci", map[string]string{"default": "submit"}, "", "")
	agentTok := createToken(t, root, "agent-a1", "agent")
	ciTok := createToken(t, root, "ci", "ci")

	// Agent sessions: refused without a token and without agent rights.
	for _, c := range []struct {
		token string
		code  codes.Code
		want  string
	}{{"", codes.Unauthenticated, "no ACL token"}, {ciTok.Secret, codes.PermissionDenied, `lacks "agent write"`}} {
		stream, err := dialToken(t, leader.Addr(), c.token).agents.Session(ctx5(t))
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, "session with token "+c.token, err, c.code, c.want)
	}
	fp := &pb.Fingerprint{Hostname: "a1", CpuCores: 2, MemoryBytes: 1 << 30,
		Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 1 << 30}}
	runAgent(t, agent.Config{ID: "a1", Servers: []string{leader.Addr(), follower.Addr()}, Fingerprint: fp,
		WorkDir: t.TempDir(), Logger: quietLogger(), KillGrace: 200 * time.Millisecond, Token: agentTok.Secret})

	ci := dialToken(t, follower.Addr(), ciTok.Secret)
	resp, err := ci.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("fwd", "k1", 1, "true")}})
	if err != nil {
		t.Fatalf("submit through the follower: %v", err)
	}
	if got := resp.Jobs[0].GetSubmitter().GetAccessorId(); got != ciTok.AccessorId {
		t.Fatalf("forwarded submit recorded submitter %q, want %s", got, ciTok.AccessorId)
	}
	if j := waitJob(t, dialToken(t, leader.Addr(), boot.Secret).jobs, resp.Jobs[0].Id, 20*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s: %v (%s), want succeeded on the agent with an agent token", j.Id, j.State, j.Reason)
	}
}

// TestACLSurvivesRestart restarts an ACL server on its data dir: tokens,
// policies and the bootstrap are replayed; a revoked token stays revoked.
func TestACLSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln, Bootstrap: true, ACL: true})
	waitLeader(t, s)
	boot, err := dialToken(t, addr, "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	root := dialToken(t, addr, boot.Secret)
	putPolicy(t, root, "ci", map[string]string{"default": "submit"}, "", "")
	ci := createToken(t, root, "ci", "ci")
	gone := createToken(t, root, "gone", "ci")
	if _, err := root.acl.RevokeToken(ctx5(t), &pb.RevokeTokenRequest{AccessorId: gone.AccessorId}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln2, ACL: true})
	t.Cleanup(func() { s2.Close() })
	waitLeader(t, s2)
	waitFor(t, 5*time.Second, "token replayed", func() bool {
		_, err := dialToken(t, addr, ci.Secret).jobs.SubmitJobs(ctx5(t),
			&pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("after-restart", "k1", 1, "true")}})
		return err == nil
	})
	_, err = dialToken(t, addr, gone.Secret).jobs.ListJobs(ctx5(t), &pb.ListJobsRequest{})
	wantCode(t, "revoked token after restart", err, codes.Unauthenticated, "unknown or was revoked")
	_, err = dialToken(t, addr, "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	wantCode(t, "bootstrap after restart", err, codes.FailedPrecondition, "already bootstrapped")
}
