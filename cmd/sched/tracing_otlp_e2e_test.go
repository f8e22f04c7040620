package main_test

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// collector is an OTLP/gRPC trace receiver that keeps the spans' names by
// trace id (hex).
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]string
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				id := hex.EncodeToString(sp.TraceId)
				c.spans[id] = append(c.spans[id], sp.Name)
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) names(trace string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, n := range c.spans[trace] {
		out[n]++
	}
	return out
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, `sched dev` and the client export
// a job's spans over OTLP, all in the trace `job show` names.
func TestTracesExportedOverOTLP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{spans: map[string][]string{}}
	g := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(g, col)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln.Addr().String(), "OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=100"}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // the client commands run with the same environment
	}
	d := startDevWith(t, freeAddr(t), t.TempDir(), 1, env)
	file := filepath.Join(t.TempDir(), "traced.yaml")
	if err := os.WriteFile(file, []byte("name: traced\ntasks:\n  - name: t\n    count: 2\n    command: [\"true\"]\n    resources: {cpu: 10m}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, file)
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	var j struct {
		TraceID string `json:"trace_id"`
	}
	showJobAs(t, d, id, &j)
	want := map[string]int{"banyan.v1.JobService/SubmitJobs": 2, "commit": 1, "place": 2, "run": 2}
	var got map[string]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = col.names(j.TraceID)
		ok := true
		for n, c := range want {
			ok = ok && got[n] >= c
		}
		if ok {
			return
		}
	}
	t.Fatalf("spans of trace %s at the collector: %v, want at least %v", j.TraceID, got, want)
}
