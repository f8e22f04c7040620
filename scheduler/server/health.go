package server

// The gRPC health service (grpc.health.v1) and server reflection, so that
// load balancers, grpc_health_probe and grpcurl work against a server.
// Health is SERVING while Ready returns nil, NOT_SERVING otherwise; a
// goroutine owned by the server keeps it up to date.

import (
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Method names of the health and reflection services: served by whichever
// server receives them (never forwarded), allowed for any caller the
// identity and ACL layers authenticated.
const (
	methodHealthCheck      = "/grpc.health.v1.Health/Check"
	methodHealthWatch      = "/grpc.health.v1.Health/Watch"
	methodHealthList       = "/grpc.health.v1.Health/List"
	methodReflection       = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	methodReflectionAlpha1 = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// healthInterval is how often the health service's status is refreshed.
const healthInterval = 250 * time.Millisecond

// registerHealth registers the health and reflection services on g and
// returns the health server to keep up to date with watchHealth.
func registerHealth(g *grpc.Server) *health.Server {
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return h
}

// watchHealth sets the health status ("" and every Banyan service) from
// Ready until the server closes, then marks everything NOT_SERVING.
func (s *Server) watchHealth(h *health.Server, services []string) {
	tick := time.NewTicker(healthInterval)
	defer tick.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if err := s.Ready(); err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last {
			for _, name := range append([]string{""}, services...) {
				h.SetServingStatus(name, st)
			}
			last = st
		}
		select {
		case <-s.ctx.Done():
			h.Shutdown()
			return
		case <-tick.C:
		}
	}
}

// serviceNames lists the Banyan services registered on g, sorted.
func serviceNames(g *grpc.Server) []string {
	var out []string
	for name := range g.GetServiceInfo() {
		if strings.HasPrefix(name, "banyan.") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
