package tracing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestEnabled(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want bool
	}{
		{nil, false},
		{[]string{"PATH=/bin", "OTEL_SERVICE_NAME=x"}, false},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"}, true},
		{[]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:4317"}, true},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT="}, false},
		{[]string{"OTEL_TRACES_EXPORTER=otlp"}, true},
		{[]string{"OTEL_TRACES_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4317"}, false},
		{[]string{"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=otlp"}, false},
	} {
		if got := Enabled(c.env); got != c.want {
			t.Errorf("Enabled(%q) = %v, want %v", c.env, got, c.want)
		}
	}
}

// Without OTEL_* variables Setup installs a provider that records and
// exports nothing, and the W3C propagator.
func TestSetupWithoutVariablesExportsNothing(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
	}
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	tp, shutdown, err := Setup(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, sdk := tp.(*sdktrace.TracerProvider); sdk {
		t.Fatal("Setup without OTEL_* variables installed an SDK provider")
	}
	// Servers skip the spans of ended attempts under exactly this provider.
	if _, off := otel.GetTracerProvider().(noop.TracerProvider); !off {
		t.Fatalf("global provider %T, want the no-op one", otel.GetTracerProvider())
	}
	_, span := otel.Tracer("t").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Fatal("a span of the installed provider records")
	}
	span.End()
	if f := otel.GetTextMapPropagator().Fields(); len(f) == 0 || f[0] != "traceparent" {
		t.Fatalf("propagator fields %v", f)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// With an OTLP endpoint set Setup installs an exporting provider; its
// shutdown gives up within the context when no collector answers.
func TestSetupWithEndpointExports(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
	tp, shutdown, err := Setup(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, sdk := tp.(*sdktrace.TracerProvider); !sdk {
		t.Fatalf("provider %T, want the SDK's", tp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = shutdown(ctx) // nothing listens: an error, but a bounded one
}

// An encoder step under TRACEPARENT is a child of the span it names.
func TestStepIsChildOfTraceparent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := NewProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	trace, run := "4bf92f3577b34da6a3ce929d0e0e4736", jobtrace.SpanID("4bf92f3577b34da6a3ce929d0e0e4736", jobtrace.KindRun, "job-1.0", 1)
	_, span := StartStep(context.Background(), tr, jobtrace.Traceparent(trace, run), "encode-chunk", AttrTask.String("job-1.0"))
	EndStep(span, errors.New("boom"))
	_, root := StartStep(context.Background(), tr, "", "verify")
	EndStep(root, nil)
	got := rec.Ended()
	if len(got) != 2 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Name() != "encode-chunk" || s.SpanContext().TraceID().String() != trace || s.Parent().SpanID().String() != run ||
		!s.Parent().IsRemote() || s.Status().Code != codes.Error {
		t.Fatalf("step span %s trace %s parent %s status %v", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), s.Status())
	}
	if got[1].Parent().IsValid() {
		t.Fatal("a step without TRACEPARENT has a parent")
	}
}

// A job without a parent span gets its attempt spans as roots of its own
// trace, with the derived ids; a job without a trace id gets none.
func TestEmitAttemptWithoutParent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := NewProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	tid := "4bf92f3577b34da6a3ce929d0e0e4736"
	a := Attempt{TraceID: tid, JobID: "job-1", TaskID: "job-1.0", Attempt: 2, AgentID: "a1",
		QueuedMs: 1000, PlacedMs: 1500, StartedMs: 1600, FinishedMs: 3000, Outcome: "failed", FailureClass: "encoder_error"}
	EmitAttempt(context.Background(), tr, a)
	EmitAttempt(context.Background(), tr, Attempt{TaskID: "x", QueuedMs: 1, PlacedMs: 2, FinishedMs: 3})
	got := rec.Ended()
	if len(got) != 2 {
		t.Fatalf("%d spans, want place and run", len(got))
	}
	for _, s := range got {
		want := jobtrace.SpanID(tid, s.Name(), "job-1.0", 2)
		if s.SpanContext().TraceID().String() != tid || s.SpanContext().SpanID().String() != want || s.Parent().IsValid() {
			t.Fatalf("%s: trace %s span %s (want %s) parent %v", s.Name(), s.SpanContext().TraceID(), s.SpanContext().SpanID(), want, s.Parent())
		}
	}
	run := got[1]
	if run.Name() != "run" || run.Status().Code != codes.Error || !run.StartTime().Equal(time.UnixMilli(1600)) ||
		!run.EndTime().Equal(time.UnixMilli(3000)) {
		t.Fatalf("run span %s %v %v..%v", run.Name(), run.Status(), run.StartTime(), run.EndTime())
	}
}
