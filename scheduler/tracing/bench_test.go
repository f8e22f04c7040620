package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

var benchAttempt = Attempt{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ParentSpanID: "00f067aa0ba902b7",
	JobID: "job-1", TaskID: "job-1.17", Attempt: 1, AgentID: "a1", QueuedMs: 1000, PlacedMs: 1100,
	StartedMs: 1200, FinishedMs: 9000, Outcome: "succeeded"}

// BenchmarkEmitAttemptOn is what the leader pays per finished attempt with
// tracing on (two spans, batched to an exporter that drops them).
func BenchmarkEmitAttemptOn(b *testing.B) {
	tp := NewProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer(TracerName)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		EmitAttempt(context.Background(), tr, benchAttempt)
	}
}

// BenchmarkEmitAttemptOff is the same with the no-op provider.
func BenchmarkEmitAttemptOff(b *testing.B) {
	tr := noop.NewTracerProvider().Tracer(TracerName)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		EmitAttempt(context.Background(), tr, benchAttempt)
	}
}
