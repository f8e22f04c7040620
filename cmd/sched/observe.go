//go:build !schedthin

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/banyan-sched/banyan/agent"
	"github.com/banyan-sched/banyan/scheduler/httpapi"
	"github.com/banyan-sched/banyan/scheduler/metrics"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
)

// DefaultDevHTTPAddr is where `sched dev` serves /metrics, /healthz and
// /readyz unless --http-addr says otherwise ("" turns it off).
const DefaultDevHTTPAddr = "127.0.0.1:7480"

// httpAddrHelp documents --http-addr.
const httpAddrHelp = "serve /metrics, /healthz and /readyz over HTTP on this address, and on a server the web page at / (read-only, no secrets; off when empty)"

// pprofEnv, set to 1, mounts Go's profiler (/debug/pprof/) on the HTTP
// address of a server, agent or sched dev. Off by default: profiles show
// the process's internals to whoever reaches the address.
const pprofEnv = "BANYAN_DEBUG_PPROF"

// mountPprof serves net/http/pprof's handlers on h.
func mountPprof(h *httpapi.Server) {
	h.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	h.Handle("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	h.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	h.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	h.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
}

// httpSurface is a running HTTP listener, stopped with stop.
type httpSurface struct {
	*httpapi.Server
	cancel context.CancelFunc
	done   chan error
}

// startHTTP listens on addr and serves g and checks until stop is called.
// Mount more handlers (the web page) with the returned surface's Handle.
func startHTTP(addr string, g prometheus.Gatherer, checks []httpapi.Check, log *slog.Logger) (*httpSurface, error) {
	h, err := httpapi.New(httpapi.Config{Addr: addr, Gatherer: g, Ready: checks, Logger: log})
	if err != nil {
		return nil, err
	}
	if os.Getenv(pprofEnv) == "1" {
		mountPprof(h)
		log.Warn("serving Go's profiler on the HTTP address", "path", "/debug/pprof/", "env", pprofEnv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &httpSurface{Server: h, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- h.Serve(ctx) }()
	log.Info("serving metrics and health over HTTP", "addr", h.Addr())
	return s, nil
}

// stop shuts the listener down and waits for it; nil-safe.
func (s *httpSurface) stop() error {
	if s == nil {
		return nil
	}
	s.cancel()
	return <-s.done
}

// serverHTTP starts the HTTP surface of server s (metrics m, readiness
// from s.Ready, the web page at /); addr "" starts nothing.
func serverHTTP(addr string, s *server.Server, m *metrics.Metrics, log *slog.Logger) (*httpSurface, error) {
	if addr == "" {
		return nil, nil
	}
	if err := m.WatchServer(s); err != nil {
		return nil, fmt.Errorf("register server metrics: %w", err)
	}
	h, err := startHTTP(addr, m.Registry, []httpapi.Check{{Name: "raft", Fn: s.Ready}}, log)
	if err != nil {
		return nil, err
	}
	web.New(web.Config{Read: s.FSM().Read, Authorize: func(secret string) (web.Access, error) {
		return s.ResolveReader(secret)
	}}).Mount(h)
	return h, nil
}

// agentHTTP starts the HTTP surface of agent a: process metrics, the
// agent's running tasks and session, readiness while it holds a session
// with the leader; addr "" starts nothing.
func agentHTTP(addr string, a *agent.Agent, log *slog.Logger) (*httpSurface, error) {
	if addr == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "banyan_agent_running_tasks",
			Help: "Tasks this agent runs now."}, func() float64 { return float64(a.Running()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "banyan_agent_connected",
			Help: "1 while this agent holds a session with the leader, else 0."}, func() float64 {
			if a.Ready() == nil {
				return 1
			}
			return 0
		}))
	return startHTTP(addr, reg, []httpapi.Check{{Name: "session", Fn: a.Ready}}, log)
}

// serverHTTPAddr is --http-addr, or http_addr from the config file when
// the flag is not given.
func serverHTTPAddr(cmd *cobra.Command, file serverFile, flag string) string {
	if !cmd.Flags().Changed("http-addr") && file.HTTPAddr != "" {
		return file.HTTPAddr
	}
	return flag
}
