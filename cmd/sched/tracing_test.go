package main

import (
	"context"
	"errors"
	"testing"

	"github.com/banyan-sched/banyan/scheduler/tracing"
	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Each encoder step runs in a span named after it, a child of the span
// $TRACEPARENT names, carrying the step's error.
func TestEncoderStepSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tracing.NewProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	tid := "4bf92f3577b34da6a3ce929d0e0e4736"
	tp := jobtrace.RunTraceparent(tid, "job-1.3", 1)
	t.Setenv(tracing.TraceparentEnv, tp)
	t.Setenv("BANYAN_TASK_ID", "job-1.3")

	parent := &cobra.Command{Use: "encoder"}
	var inStep bool
	parent.AddCommand(&cobra.Command{Use: "encode-chunk", RunE: func(cmd *cobra.Command, _ []string) error {
		inStep = tracing.ProviderOr(nil) != nil && cmd.Context() != nil
		return errors.New("encoder failed")
	}})
	traceSteps(parent)
	parent.SetArgs([]string{"encode-chunk"})
	parent.SilenceErrors, parent.SilenceUsage = true, true
	if err := parent.ExecuteContext(context.Background()); err == nil || !inStep {
		t.Fatalf("step ran %v, err %v", inStep, err)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name() != "encode-chunk" || s.SpanContext().TraceID().String() != tid ||
		"00-"+tid+"-"+s.Parent().SpanID().String()+"-01" != tp || s.Status().Description != "encoder failed" {
		t.Fatalf("span %s trace %s parent %s status %v", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), s.Status())
	}
}

func TestServiceName(t *testing.T) {
	root := newRootCmd()
	for args, want := range map[string][]string{"banyan-server": {"server"}, "banyan-encoder": {"encoder", "plan"},
		"sched": {"job", "show"}} {
		c, _, err := root.Find(want)
		if err != nil {
			t.Fatal(err)
		}
		if got := serviceName(c); got != args {
			t.Errorf("serviceName(%v) = %q, want %q", want, got, args)
		}
	}
}
