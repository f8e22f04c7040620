package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceparentEnv is the variable that carries a task's trace context: the
// W3C traceparent of its attempt's run span.
const TraceparentEnv = "TRACEPARENT"

// StartStep starts the span of one step of a task (an encoder step), a
// child of the span traceparent names (the attempt's run span, from
// TRACEPARENT) or a root when traceparent is empty or malformed. End it
// with EndStep.
func StartStep(ctx context.Context, tracer trace.Tracer, traceparent, name string,
	attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if traceparent != "" {
		ctx = Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	return tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// EndStep ends a step's span, marking it failed with err when err is not
// nil.
func EndStep(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
