package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startTLSServer starts a bootstrapped single TLS server holding a server
// certificate of ca and waits for it to lead.
func startTLSServer(t *testing.T, ca *tlstest.CA) *server.Server {
	t.Helper()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: listen(t), Bootstrap: true,
		TLS: ca.Source(t, tlstest.Server("s1"))})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	return s
}

// tlsConn dials addr with src's certificate.
func tlsConn(t *testing.T, addr string, src *tlsconfig.Source) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(src.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func call(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pb.NewPoolServiceClient(conn).ListPools(ctx, &pb.ListPoolsRequest{})
	return err
}

func TestTLSClientCertificateServed(t *testing.T) {
	ca := tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	if err := call(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Client("alice")))); err != nil {
		t.Fatalf("client certificate refused: %v", err)
	}
}

func TestTLSPlaintextClientRefused(t *testing.T) {
	ca := tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := call(conn); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext call: %v; want Unavailable", err)
	}
	// The server is still serving after the refusal.
	if err := call(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Client("alice")))); err != nil {
		t.Fatalf("after a plaintext attempt: %v", err)
	}
}

func TestTLSCertificateFromAnotherCARefused(t *testing.T) {
	ca, other := tlstest.NewCA(t), tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	if err := call(tlsConn(t, s.Addr(), other.Source(t, tlstest.Client("mallory")))); status.Code(err) != codes.Unavailable {
		t.Fatalf("foreign CA call: %v; want Unavailable", err)
	}
}

func TestTLSRolesOnCalls(t *testing.T) {
	ca := tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	client := pb.NewClusterServiceClient(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Client("alice"))))
	ctx := context.Background()
	_, err := client.Join(ctx, &pb.JoinRequest{Id: "rogue", Address: "127.0.0.1:1"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "client/alice may not call") {
		t.Fatalf("client Join: %v; want PermissionDenied", err)
	}
	if _, err := client.Remove(ctx, &pb.RemoveRequest{Id: "s1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("client Remove: %v; want PermissionDenied", err)
	}
	if _, err := client.Members(ctx, &pb.MembersRequest{}); err != nil {
		t.Fatalf("client Members: %v", err)
	}
	agentConn := tlsConn(t, s.Addr(), ca.Source(t, tlstest.Agent("a1")))
	if err := call(agentConn); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("agent calling the client API: %v; want PermissionDenied", err)
	}
	// A server certificate joins only as its own id: a rogue Join naming
	// another server (and a bogus address) is refused.
	rogue := pb.NewClusterServiceClient(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Server("s2"))))
	_, err = rogue.Join(ctx, &pb.JoinRequest{Id: "s9", Address: "127.0.0.1:1"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "joins only as itself") {
		t.Fatalf("server s2 joining as s9: %v; want PermissionDenied", err)
	}
	m, err := client.Members(ctx, &pb.MembersRequest{})
	if err != nil || len(m.Members) != 1 {
		t.Fatalf("membership changed: %v %v", m, err)
	}
}

// openSession opens an agent session as src and says hello as agentID,
// returning the error the server answers with.
func openSession(t *testing.T, addr string, src *tlsconfig.Source, agentID string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := pb.NewAgentServiceClient(tlsConn(t, addr, src)).Session(ctx)
	if err != nil {
		return err
	}
	hello := &pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.AgentHello{AgentId: agentID,
		Fingerprint: &pb.Fingerprint{Hostname: agentID, Capacity: &pb.Resources{CpuMillis: 4096000}}}}}
	if err := stream.Send(hello); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestTLSAgentSessionNeedsItsOwnCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	startTLSAgent(t, ca, "a1", []string{s.Addr()})
	waitFor(t, 10*time.Second, "agent a1 registered", func() bool { return agentCount(t, s, ca) == 1 })

	for name, tc := range map[string]struct {
		src  *tlsconfig.Source
		want string
	}{
		"agent a2 saying hello as a1": {ca.Source(t, tlstest.Agent("a2")), "agent/a2 may not open a session for agent \"a1\""},
		"client opening a session":    {ca.Source(t, tlstest.Client("alice")), "client/alice may not call"},
		"server opening a session":    {ca.Source(t, tlstest.Server("s9")), "server/s9 may not call"},
	} {
		err := openSession(t, s.Addr(), tc.src, "a1")
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want PermissionDenied %q", name, err, tc.want)
		}
	}
	// The rogue attempts registered nothing and left a1's session alone.
	if n := agentCount(t, s, ca); n != 1 {
		t.Fatalf("%d agents after rogue hellos, want 1", n)
	}
	c := pb.NewJobServiceClient(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Client("alice"))))
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("j", "", 2, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}
}

func agentCount(t *testing.T, s *server.Server, ca *tlstest.CA) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := pb.NewAgentServiceClient(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Client("c")))).ListAgents(ctx, &pb.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Agents)
}

// startTLSAgent runs an in-process agent with an agent certificate of ca.
func startTLSAgent(t *testing.T, ca *tlstest.CA, id string, servers []string) {
	t.Helper()
	fp := &pb.Fingerprint{Hostname: id, CpuCores: 4, MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}, Labels: map[string]string{"hostname": id}}
	runAgent(t, agent.Config{ID: id, Servers: servers, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), KillGrace: 200 * time.Millisecond, TLS: ca.Source(t, tlstest.Agent(id))})
}

func TestTLSAgentRefusesCertificateOfAnotherAgent(t *testing.T) {
	ca := tlstest.NewCA(t)
	_, err := agent.New(agent.Config{ID: "a1", Servers: []string{"127.0.0.1:1"}, Fingerprint: &pb.Fingerprint{},
		TLS: ca.Source(t, tlstest.Agent("a2"))})
	if err == nil || !strings.Contains(err.Error(), "agent/a2") {
		t.Fatalf("agent a1 with a2's certificate: %v", err)
	}
}

func TestTLSClientCertificateCannotSpeakRaft(t *testing.T) {
	ca := tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	for name, src := range map[string]*tlsconfig.Source{
		"client": ca.Source(t, tlstest.Client("alice")),
		"agent":  ca.Source(t, tlstest.Agent("a1")),
	} {
		c, err := tls.Dial("tcp", s.Addr(), src.ClientConfig("127.0.0.1", tlsconfig.ALPNRaft))
		if err != nil {
			continue // refused during the handshake: fine
		}
		// The server closes the connection instead of handing it to raft.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if !errors.Is(err, io.EOF) {
			t.Errorf("%s certificate on raft: read %v; want the server to close (EOF)", name, err)
		}
	}
	if err := call(tlsConn(t, s.Addr(), ca.Source(t, tlstest.Client("alice")))); err != nil {
		t.Fatalf("after raft attempts: %v", err)
	}
}

func TestTLSClusterJoinsElectsAndRunsJob(t *testing.T) {
	ca := tlstest.NewCA(t)
	start := func(id string, cfg server.Config) *server.Server {
		cfg.NodeID, cfg.DataDir, cfg.Listener = id, t.TempDir(), listen(t)
		cfg.TLS = ca.Source(t, tlstest.Server(id))
		s := startServer(t, cfg)
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1 := start("s1", server.Config{Bootstrap: true})
	waitLeader(t, s1)
	s2 := start("s2", server.Config{Join: []string{s1.Addr()}})
	s3 := start("s3", server.Config{Join: []string{s2.Addr()}}) // forwarded by s2 to s1
	cluster := pb.NewClusterServiceClient(tlsConn(t, s3.Addr(), ca.Source(t, tlstest.Client("ops"))))
	waitFor(t, 15*time.Second, "three voters over TLS", func() bool {
		m, err := cluster.Members(context.Background(), &pb.MembersRequest{})
		return err == nil && len(m.Members) == 3 && m.LeaderId == "s1"
	})
	startTLSAgent(t, ca, "a1", []string{s2.Addr()})
	c := pb.NewJobServiceClient(tlsConn(t, s3.Addr(), ca.Source(t, tlstest.Client("alice"))))
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("j", "", 3, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}
}

func TestTLSServerServesReloadedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	files := ca.Issue(t, tlstest.Server("s1"))
	src, err := tlsconfig.NewSource(tlsconfig.Options{Files: files, Role: tlsconfig.RoleServer})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: listen(t), Bootstrap: true, TLS: src})
	defer s.Close()
	client := ca.Source(t, tlstest.Client("c"))
	served := func() string {
		c, err := tls.Dial("tcp", s.Addr(), client.ClientConfig("127.0.0.1", tlsconfig.ALPNGRPC))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	next := ca.Issue(t, tlstest.Server("s1"))
	for _, p := range [][2]string{{next.Cert, files.Cert}, {next.Key, files.Key}} {
		data, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(time.Hour) // a distinct mtime on any clock
		if err := os.Chtimes(p[1], mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if after := served(); after == before {
		t.Fatal("server still serves the replaced certificate")
	}
	if err := call(tlsConn(t, s.Addr(), client)); err != nil {
		t.Fatalf("call after reload: %v", err)
	}
}

func TestNonLoopbackWithoutTLSRefused(t *testing.T) {
	for _, bind := range []string{"0.0.0.0:0", ":0", "10.1.2.3:7400"} {
		_, err := server.New(server.Config{NodeID: "s1", DataDir: t.TempDir(), BindAddr: bind, Bootstrap: true,
			Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), "without TLS") || !strings.Contains(err.Error(), "--insecure") {
			t.Fatalf("bind %s without TLS: %v", bind, err)
		}
	}
}
