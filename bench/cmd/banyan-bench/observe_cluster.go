package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// Under -observe the cluster's servers run as an observed farm's do: each
// exports every span over OTLP/gRPC (the standard OTEL_* variables) to a
// collector in the benchmark process that counts and drops them, and the
// benchmark scrapes each server's /metrics every second, as Prometheus
// would. The spans received are reported, so a run shows tracing was on.

// spanSink is an OTLP trace collector on loopback that counts spans.
type spanSink struct {
	coltrace.UnimplementedTraceServiceServer
	addr  string
	spans atomic.Int64
}

// Export counts the spans of one export call.
func (s *spanSink) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	return &coltrace.ExportTraceServiceResponse{}, nil
}

var sinkOnce struct {
	once sync.Once
	sink atomic.Pointer[spanSink]
	err  error
}

// theSpanSink starts the collector on first use; it serves until the
// benchmark exits.
func theSpanSink() (*spanSink, error) {
	sinkOnce.once.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			sinkOnce.err = fmt.Errorf("span collector: %w", err)
			return
		}
		s := &spanSink{addr: ln.Addr().String()}
		g := grpc.NewServer()
		coltrace.RegisterTraceServiceServer(g, s)
		go func() { _ = g.Serve(ln) }()
		sinkOnce.sink.Store(s)
	})
	return sinkOnce.sink.Load(), sinkOnce.err
}

// observeEnv is the environment of a server process: this process's,
// plus the OTLP exporter's variables under -observe.
func observeEnv() ([]string, error) {
	env := os.Environ()
	if !observeOn {
		return env, nil
	}
	s, err := theSpanSink()
	if err != nil {
		return nil, err
	}
	return append(env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+s.addr, "OTEL_EXPORTER_OTLP_INSECURE=true"), nil
}

// scrapeServers scrapes every server's /metrics once a second until the
// scenario's scrapers are stopped; the bytes read are counted.
func scrapeServers(c *cluster) {
	if !observeOn {
		return
	}
	stop := scrapers.add()
	client := &http.Client{Timeout: 5 * time.Second}
	for _, s := range c.servers {
		url := "http://" + s.httpAddr + "/metrics"
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					resp, err := client.Get(url)
					if err != nil {
						continue // a killed server (failover) answers no more
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					scrapedBytes.Add(n)
					scrapes.Add(1)
				}
			}
		}()
	}
}

// scrapes and scrapedBytes count the /metrics scrapes of the run.
var scrapes, scrapedBytes atomic.Int64

// observeSettings describes what -observe turned on, for a run's Setup.
func observeSettings() string {
	return "every server exports every span over OTLP/gRPC (OTEL_EXPORTER_OTLP_ENDPOINT) to a collector in the benchmark process that drops them; /metrics of every server scraped every second"
}

// exportedSpans is how many spans the collector has received so far.
func exportedSpans() int64 {
	if s := sinkOnce.sink.Load(); s != nil {
		return s.spans.Load()
	}
	return 0
}
