package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// benchServer starts a bootstrapped single server (TLS when ca is set) and
// returns it with the credentials a client dials it with.
func benchServer(b *testing.B, ca *tlstest.CA) (*server.Server, credentials.TransportCredentials) {
	b.Helper()
	cfg := server.Config{NodeID: "s1", DataDir: b.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true,
		Logger: quietLogger(), RaftLogLevel: "off"}
	creds := insecure.NewCredentials()
	if ca != nil {
		cfg.TLS = ca.Source(b, tlstest.Server("s1"))
		creds = ca.Source(b, tlstest.Client("bench")).Credentials()
	}
	s, err := server.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, creds
}

// benchSubmit measures one-job submissions over one open connection: the
// cost TLS adds to every call once connected.
func benchSubmit(b *testing.B, ca *tlstest.CA) {
	s, creds := benchServer(b, ca)
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewJobServiceClient(conn)
	ctx := context.Background()
	// Wait for the leader loop through the first call.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := c.ListJobs(ctx, &pb.ListJobsRequest{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		job := shellJob("bench", fmt.Sprintf("k%d", i), 1, "true")
		if _, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubmitPlaintext(b *testing.B) { benchSubmit(b, nil) }

func BenchmarkSubmitTLS(b *testing.B) { benchSubmit(b, tlstest.NewCA(b)) }

// benchConnect measures a new connection and one read per op: what each
// CLI invocation pays, the TLS handshake included.
func benchConnect(b *testing.B, ca *tlstest.CA) {
	s, creds := benchServer(b, ca)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pb.NewClusterServiceClient(conn).Members(ctx, &pb.MembersRequest{}); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

func BenchmarkConnectPlaintext(b *testing.B) { benchConnect(b, nil) }

func BenchmarkConnectTLS(b *testing.B) { benchConnect(b, tlstest.NewCA(b)) }
