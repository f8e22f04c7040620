package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "banyan_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var leader atomic.Bool
	s, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg, Ready: []Check{{Name: "leader", Fn: func() error {
		if !leader.Load() {
			return errors.New("no leader")
		}
		return nil
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "page") }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "leader: no leader") {
		t.Errorf("readyz before: %d %q", code, body)
	}
	leader.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("readyz after: %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "banyan_test_total 3") {
		t.Errorf("metrics: %d %q", code, body)
	}
	if code, body := get(t, base+"/ui/"); code != 200 || body != "page" {
		t.Errorf("mounted handler: %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after ctx ended")
	}
}
