package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/prometheus/client_golang/prometheus"
)

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	h, err := logHandler(&buf, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	slog.New(h).Info("task started", "job", "job-1", "task", "job-1.0", "agent", "a1")
	m := map[string]any{}
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["job"] != "job-1" || m["task"] != "job-1.0" || m["agent"] != "a1" {
		t.Fatalf("json line %q: %v", buf.String(), err)
	}
	if _, err := logHandler(&buf, "text", slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	var u usageError
	if _, err := logHandler(&buf, "xml", slog.LevelInfo); !errors.As(err, &u) {
		t.Fatalf("--log-format xml: %v; want a usage error", err)
	}
}

func TestServerHTTPAddrFromConfigOrFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(path, []byte("data_dir: d\nhttp_addr: 127.0.0.1:9100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newServerCmd(&globals{})
	if _, err := serverConfig(cmd, fileAt(t, path), serverFile{Bind: DefaultAddr, Lease: "10s"}); err != nil {
		t.Fatalf("config with http_addr refused: %v", err)
	}
	if got := serverHTTPAddr(cmd, fileAt(t, path), ""); got != "127.0.0.1:9100" {
		t.Fatalf("from the file: %q", got)
	}
	if err := cmd.Flags().Set("http-addr", "127.0.0.1:9200"); err != nil {
		t.Fatal(err)
	}
	if got := serverHTTPAddr(cmd, fileAt(t, path), "127.0.0.1:9200"); got != "127.0.0.1:9200" {
		t.Fatalf("the flag must win: %q", got)
	}
}

// An agent without a session with a leader is not ready.
func TestAgentHTTPNotReadyWithoutSession(t *testing.T) {
	fp := &pb.Fingerprint{Hostname: "a1", CpuCores: 1, MemoryBytes: 1 << 30,
		Capacity: &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}}
	a, err := agent.New(agent.Config{ID: "a1", Servers: []string{"127.0.0.1:1"}, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	h, err := agentHTTP("127.0.0.1:0", a, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + h.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "session: no session with a leader") {
		t.Errorf("readyz: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "banyan_agent_connected 0") || !strings.Contains(body, "banyan_agent_running_tasks 0") {
		t.Errorf("metrics lack the agent's gauges:\n%s", body)
	}
}

// Go's profiler is served on the HTTP address only when BANYAN_DEBUG_PPROF
// is 1.
func TestPprofOnlyWhenAsked(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	for _, on := range []bool{false, true} {
		if on {
			t.Setenv(pprofEnv, "1")
		}
		h, err := startHTTP("127.0.0.1:0", reg, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + h.Addr() + "/debug/pprof/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: 404, true: 200}[on]; resp.StatusCode != want {
			t.Errorf("%s=%v: /debug/pprof/cmdline answered %d, want %d", pprofEnv, on, resp.StatusCode, want)
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
	}
}
