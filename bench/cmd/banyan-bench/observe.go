package main

import (
	"context"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/banyan-sched/banyan/scheduler/metrics"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/tracing"
)

// observeOn is set by -observe: the servers run with what an observed farm
// pays for, metrics (the leader's observer, the state, raft and runtime
// collectors, scraped every second as Prometheus would) and tracing (every
// span of calls and jobs made and batched to an exporter that drops them,
// so the cost of export over the network is left out).
var observeOn bool

// scrapers are the scrape loops of the running scenario's servers.
var scrapers scraperSet

// scraperSet stops the scrape loops a scenario started.
type scraperSet struct {
	mu    sync.Mutex
	stops []chan struct{}
}

func (s *scraperSet) add() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{})
	s.stops = append(s.stops, c)
	return c
}

// stopAll ends every scrape loop started so far.
func (s *scraperSet) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.stops {
		close(c)
	}
	s.stops = nil
}

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// observed sets up cfg for -observe and returns what to call once the
// server is up; without -observe it does nothing.
func observed(cfg *server.Config) func(*server.Server) {
	if !observeOn {
		return func(*server.Server) {}
	}
	m := metrics.New()
	cfg.Observer = m
	cfg.TracerProvider = tracing.NewProvider(sdktrace.WithBatcher(discard{}))
	return func(s *server.Server) {
		if err := m.WatchServer(s); err != nil {
			return
		}
		stop := scrapers.add()
		go func() { // scrapes every second, as Prometheus would, until the scenario ends
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					_, _ = m.Registry.Gather()
				}
			}
		}()
	}
}
