// Package tracing is Banyan's OpenTelemetry edge: it installs a tracer
// provider that exports over OTLP when the standard OTEL_* variables ask
// for it (and nothing otherwise), builds the gRPC stats handlers that put
// spans on the wire, and emits the spans of a job's life with ids the
// replicated state and the agents agree on (see jobtrace).
//
// How to use it: a command calls Setup once at its start and the shutdown
// function it returns at its end (that flushes what is batched). Servers
// and agents take a trace.TracerProvider in their configuration (nil: the
// global one, which Setup sets) and pass it to ServerHandler and
// ClientHandler. Spans that must have a given id (an attempt's run span,
// which the task's own spans name as parent before it is emitted) need a
// provider built by NewProvider, whose id generator honours WithIDs.
package tracing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/banyan-sched/banyan/scheduler/tracing/otelenv"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the instrumentation scope of Banyan's own spans.
const TracerName = "github.com/banyan-sched/banyan"

// Enabled reports whether environ (os.Environ's form) asks for traces to
// be exported (otelenv.Enabled: OTEL_TRACES_EXPORTER=otlp, or any
// OTEL_EXPORTER_OTLP_* variable set, unless disabled).
func Enabled(environ []string) bool { return otelenv.Enabled(environ) }

// Shutdown flushes and stops what Setup installed.
type Shutdown func(context.Context) error

// Setup installs the global tracer provider and the W3C trace-context
// propagator for a process named serviceName. When the environment asks
// for export (Enabled), spans are batched and exported over OTLP/gRPC,
// configured by the standard OTEL_EXPORTER_OTLP_* variables (serviceName
// unless OTEL_SERVICE_NAME is set); otherwise the
// provider is a no-op one and nothing is exported. The returned provider
// is the one installed; Shutdown flushes it.
func Setup(ctx context.Context, serviceName string) (trace.TracerProvider, Shutdown, error) {
	otel.SetTextMapPropagator(Propagator())
	if !Enabled(os.Environ()) {
		tp := noop.NewTracerProvider()
		otel.SetTracerProvider(tp)
		return tp, func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res := resource.Default() // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		if r, err := resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", serviceName))); err == nil {
			res = r
		}
	}
	tp := NewProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp, func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("flush traces: %w", err)
		}
		return nil
	}, nil
}

// Propagator is the propagator Banyan uses on the wire and in TRACEPARENT:
// W3C trace context.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// NewProvider builds an SDK tracer provider whose id generator honours
// WithIDs (random ids otherwise); opts add exporters, processors and the
// resource. Tests build one with a tracetest.SpanRecorder.
func NewProvider(opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	opts = append([]sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(&idGenerator{})}, opts...)
	return sdktrace.NewTracerProvider(opts...)
}

// ProviderOr returns tp, or the global provider when tp is nil.
func ProviderOr(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return otel.GetTracerProvider()
	}
	return tp
}

type forcedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

type forcedKey struct{}

// WithIDs returns a context in which the next span started by a provider
// from NewProvider gets span id spanID and, when it is a root, trace id
// traceID (zero values: random).
func WithIDs(ctx context.Context, traceID trace.TraceID, spanID trace.SpanID) context.Context {
	return context.WithValue(ctx, forcedKey{}, forcedIDs{traceID, spanID})
}

// idGenerator makes random ids unless the context forces them (WithIDs).
type idGenerator struct{}

func (g *idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	f, _ := ctx.Value(forcedKey{}).(forcedIDs)
	tid, sid := f.trace, f.span
	if !tid.IsValid() {
		tid = g.randomTraceID()
	}
	if !sid.IsValid() {
		sid = g.randomSpanID()
	}
	return tid, sid
}

func (g *idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if f, ok := ctx.Value(forcedKey{}).(forcedIDs); ok && f.span.IsValid() {
		return f.span
	}
	return g.randomSpanID()
}

func (g *idGenerator) randomTraceID() trace.TraceID {
	var t trace.TraceID
	for !t.IsValid() {
		_, _ = rand.Read(t[:]) // crypto/rand.Read never fails
	}
	return t
}

func (g *idGenerator) randomSpanID() trace.SpanID {
	var s trace.SpanID
	for !s.IsValid() {
		_, _ = rand.Read(s[:]) // crypto/rand.Read never fails
	}
	return s
}

// ErrBadID is returned for a trace or span id that is not W3C hex.
var ErrBadID = errors.New("not a W3C trace or span id")

// ParseTraceID parses 32 hex digits.
func ParseTraceID(s string) (trace.TraceID, error) {
	var t trace.TraceID
	if len(s) != 2*len(t) {
		return t, fmt.Errorf("trace id %q: %w", s, ErrBadID)
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil || !t.IsValid() {
		return trace.TraceID{}, fmt.Errorf("trace id %q: %w", s, ErrBadID)
	}
	return t, nil
}

// ParseSpanID parses 16 hex digits.
func ParseSpanID(s string) (trace.SpanID, error) {
	var sp trace.SpanID
	if len(s) != 2*len(sp) {
		return sp, fmt.Errorf("span id %q: %w", s, ErrBadID)
	}
	if _, err := hex.Decode(sp[:], []byte(s)); err != nil || !sp.IsValid() {
		return trace.SpanID{}, fmt.Errorf("span id %q: %w", s, ErrBadID)
	}
	return sp, nil
}
