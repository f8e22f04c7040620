package server_test

import (
	"errors"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// TestResolveReader resolves secrets for the web page the way the gRPC
// interceptors do: no token, an unknown one and a good one, with the pool
// and cluster rights of its policies.
func TestResolveReader(t *testing.T) {
	s, _ := startACLServer(t)
	if _, err := s.ResolveReader(""); !errors.Is(err, server.ErrUnauthenticated) {
		t.Fatalf("before bootstrap: %v, want ErrUnauthenticated", err)
	}
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
	putPolicy(t, root, "ingest-read", map[string]string{"studio/ingest": "read"}, "", "")
	tok := createToken(t, root, "viewer", "ingest-read")
	for _, secret := range []string{"", "made-up"} {
		if _, err := s.ResolveReader(secret); !errors.Is(err, server.ErrUnauthenticated) {
			t.Fatalf("secret %q: %v, want ErrUnauthenticated", secret, err)
		}
	}
	r, err := s.ResolveReader(tok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != "viewer" || !r.CanReadPool("studio/ingest") || r.CanReadPool("studio/marketing") ||
		r.CanReadPool("studio") || r.CanReadCluster() {
		t.Fatalf("viewer rights: name %q ingest %v marketing %v studio %v cluster %v", r.Name(),
			r.CanReadPool("studio/ingest"), r.CanReadPool("studio/marketing"), r.CanReadPool("studio"), r.CanReadCluster())
	}
	mgmt, err := s.ResolveReader(boot.Secret)
	if err != nil || !mgmt.CanReadPool("studio/marketing") || !mgmt.CanReadCluster() {
		t.Fatalf("management token: %v", err)
	}
}

// TestResolveReaderACLOff lets every caller read everything, with or
// without a secret, when the server does not enforce ACLs.
func TestResolveReaderACLOff(t *testing.T) {
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: listen(t), Bootstrap: true,
		Logger: quietLogger()})
	t.Cleanup(func() { s.Close() })
	for _, secret := range []string{"", "anything"} {
		r, err := s.ResolveReader(secret)
		if err != nil || !r.CanReadPool("studio") || !r.CanReadCluster() || r.Name() != "" {
			t.Fatalf("secret %q with ACLs off: %v", secret, err)
		}
	}
}
