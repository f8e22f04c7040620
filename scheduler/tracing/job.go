package tracing

import (
	"context"
	"time"

	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span names and attribute keys of a job's trace.
const (
	SpanCommit = "commit"
	SpanPlace  = jobtrace.KindPlace
	SpanRun    = jobtrace.KindRun

	AttrJob          = attribute.Key("banyan.job")
	AttrTask         = attribute.Key("banyan.task")
	AttrAttempt      = attribute.Key("banyan.attempt")
	AttrAgent        = attribute.Key("banyan.agent")
	AttrOutcome      = attribute.Key("banyan.outcome")
	AttrFailureClass = attribute.Key("banyan.failure_class")
)

// Attempt is what the spans of one finished task attempt are made from:
// the job's trace ids (pb.Job.trace_id, trace_span_id) and the attempt's
// record (times in Unix milliseconds, zero when it never got there).
type Attempt struct {
	TraceID, ParentSpanID string
	JobID, TaskID         string
	Attempt               int32
	AgentID               string
	QueuedMs, PlacedMs    int64
	StartedMs, FinishedMs int64
	Outcome, FailureClass string
}

// EmitAttempt records an attempt's "place" span (queued to placed) and
// "run" span (started, or placed when it never started, to finished) in
// the job's trace, under its parent span, with the span ids jobtrace
// derives: the run span is the parent the task's own spans named. It does
// nothing for a job without a valid trace id.
func EmitAttempt(ctx context.Context, tracer trace.Tracer, a Attempt) {
	tid, err := ParseTraceID(a.TraceID)
	if err != nil {
		return
	}
	ctx = jobContext(ctx, tid, a.ParentSpanID)
	attrs := []attribute.KeyValue{AttrJob.String(a.JobID), AttrTask.String(a.TaskID),
		AttrAttempt.Int(int(a.Attempt)), AttrAgent.String(a.AgentID)}
	if a.QueuedMs != 0 && a.PlacedMs != 0 {
		emit(ctx, tracer, tid, SpanPlace, a, a.QueuedMs, a.PlacedMs, attrs, false)
	}
	start := a.StartedMs
	if start == 0 {
		start = a.PlacedMs
	}
	if start != 0 && a.FinishedMs != 0 {
		attrs = append(attrs, AttrOutcome.String(a.Outcome))
		if a.FailureClass != "" {
			attrs = append(attrs, AttrFailureClass.String(a.FailureClass))
		}
		emit(ctx, tracer, tid, SpanRun, a, start, a.FinishedMs, attrs, a.Outcome != "succeeded")
	}
}

// jobContext is ctx with the job's parent span as remote parent; without
// a valid parent span the job's spans are roots of its trace (WithIDs
// gives them its trace id).
func jobContext(ctx context.Context, tid trace.TraceID, parent string) context.Context {
	if sid, err := ParseSpanID(parent); err == nil {
		return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	}
	return trace.ContextWithSpanContext(ctx, trace.SpanContext{})
}

func emit(ctx context.Context, tracer trace.Tracer, tid trace.TraceID, kind string, a Attempt,
	startMs, endMs int64, attrs []attribute.KeyValue, failed bool) {
	sid, _ := ParseSpanID(jobtrace.SpanID(a.TraceID, kind, a.TaskID, a.Attempt)) // valid by construction
	_, span := tracer.Start(WithIDs(ctx, tid, sid), kind, trace.WithTimestamp(time.UnixMilli(startMs)),
		trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	if failed {
		span.SetStatus(codes.Error, a.Outcome)
	}
	span.End(trace.WithTimestamp(time.UnixMilli(endMs)))
}
