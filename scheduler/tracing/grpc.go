package tracing

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// ServerHandler is the gRPC server stats handler that makes a span of each
// call, a child of the caller's span when the call carries trace context
// (W3C traceparent in its metadata); health checks make none. tp nil:
// the global provider.
func ServerHandler(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(ProviderOr(tp)),
		otelgrpc.WithPropagators(Propagator()), otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))
}

// ClientHandler is the gRPC client stats handler that makes a span of each
// call and sends its trace context with it. tp nil: the global provider.
func ClientHandler(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(ProviderOr(tp)),
		otelgrpc.WithPropagators(Propagator()), otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))
}
