package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// waitServing polls the gRPC health service on conn until it answers
// SERVING, and returns the last error.
func waitServing(t *testing.T, conn *grpc.ClientConn) error {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var h *healthpb.HealthCheckResponse
		h, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && h.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			err = errNotServing{h.Status}
		}
	}
	return err
}

type errNotServing struct {
	s healthpb.HealthCheckResponse_ServingStatus
}

func (e errNotServing) Error() string { return "health status " + e.s.String() }

func tokenConn(t *testing.T, addr, token string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(pb.TokenCredentials(token)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// With ACLs on, health and reflection are served to any caller with a
// valid token, even one whose policies allow nothing else, and refused
// without one.
func TestHealthAndReflectionWithACLs(t *testing.T) {
	s, _ := startACLServer(t)
	root, err := dialToken(t, s.Addr(), "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rootClients := dialToken(t, s.Addr(), root.Secret)
	putPolicy(t, rootClients, "nothing", map[string]string{"nowhere": "read"}, "", "")
	weak := createToken(t, rootClients, "weak", "nothing")
	conn := tokenConn(t, s.Addr(), weak.Secret)
	if err := waitServing(t, conn); err != nil {
		t.Fatalf("health with a token that allows nothing: %v", err)
	}
	if got := reflectServices(t, ctx5(t), conn); !strings.Contains(strings.Join(got, ","), "banyan.v1.JobService") {
		t.Errorf("reflection with a token that allows nothing lists %v", got)
	}
	_, err = healthpb.NewHealthClient(tokenConn(t, s.Addr(), "")).Check(ctx5(t), &healthpb.HealthCheckRequest{})
	wantCode(t, "health without a token", err, codes.Unauthenticated, "no ACL token")
}

// With TLS, every certificate role may ask for health and reflection,
// agents included (which may call nothing else but their session).
func TestHealthAndReflectionWithTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	s := startTLSServer(t, ca)
	for _, id := range []tlsconfig.Identity{tlstest.Client("alice"), tlstest.Agent("a1"), tlstest.Server("s2")} {
		conn := tlsConn(t, s.Addr(), ca.Source(t, id))
		if err := waitServing(t, conn); err != nil {
			t.Errorf("health as %v: %v", id, err)
		}
		if got := reflectServices(t, ctx5(t), conn); len(got) == 0 {
			t.Errorf("reflection as %v lists nothing", id)
		}
	}
}

// A server that knows no leader (never bootstrapped, joined nothing) is
// alive but not ready: /readyz says why, gRPC health is NOT_SERVING.
func TestNotReadyWithoutLeader(t *testing.T) {
	o := startObservedServer(t, server.Config{NodeID: "lonely", DataDir: t.TempDir()})
	time.Sleep(600 * time.Millisecond) // an election timeout and a health refresh
	if code, _ := httpStatus(t, o.http+"/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := httpStatus(t, o.http+"/readyz"); code != 503 || !strings.Contains(body, "raft: no leader known") {
		t.Errorf("readyz %d %q", code, body)
	}
	h, err := healthpb.NewHealthClient(dialConn(t, o.addr)).Check(ctx5(t), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health: %v %v", h, err)
	}
	if !errors.Is(o.s.Ready(), server.ErrNoLeader) {
		t.Errorf("Ready: %v", o.s.Ready())
	}
}
