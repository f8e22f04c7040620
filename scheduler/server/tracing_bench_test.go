package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// benchSubmitTraced measures one-job submissions over one open connection
// with tp tracing the client and the server (nil: the global no-op
// provider, what a server without OTEL_* variables runs with).
func benchSubmitTraced(b *testing.B, tp trace.TracerProvider) {
	s, err := server.New(server.Config{NodeID: "s1", DataDir: b.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true,
		Logger: quietLogger(), RaftLogLevel: "off", TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for deadline := time.Now().Add(10 * time.Second); !s.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
	}
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(tracing.ClientHandler(tp)))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewJobServiceClient(conn)
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := c.ListJobs(ctx, &pb.ListJobsRequest{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		job := shellJob("bench", fmt.Sprintf("k%d", i), 1, "true")
		if _, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubmitTracingOff(b *testing.B) { benchSubmitTraced(b, nil) }

// BenchmarkSubmitTracingOn batches every span to an exporter that drops
// them: the cost of making and batching the spans, not of the network.
func BenchmarkSubmitTracingOn(b *testing.B) {
	tp := tracing.NewProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	benchSubmitTraced(b, tp)
}
