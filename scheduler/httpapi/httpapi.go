// Package httpapi is the read-only HTTP surface of a server or an agent:
// /metrics (Prometheus text format from the owner's own registry),
// /healthz (the process is up: always 200) and /readyz (200 only when every
// named readiness check passes; 503 naming the failed checks otherwise).
// More handlers (the web page) are mounted with Handle.
//
// It serves no secrets and changes nothing: binding it to a non-loopback
// address exposes metrics, health and, on a server, the read-only web page
// (scheduler/web), whose API asks for a token when ACLs are enforced.
//
// Use: New, Handle as needed (before or while serving), then Serve(ctx) on
// a goroutine the owner keeps; Serve returns once ctx ends and the
// listener is closed.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one named readiness check: nil when ready, or why not.
type Check struct {
	Name string
	Fn   func() error
}

// Config configures the HTTP surface.
type Config struct {
	// Addr is the address to listen on, e.g. "127.0.0.1:7480".
	Addr string
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// Gatherer is what /metrics serves; nil serves no /metrics.
	Gatherer prometheus.Gatherer
	// Ready are the checks behind /readyz.
	Ready []Check
	// Logger receives errors (default slog.Default()).
	Logger *slog.Logger
}

// Server is the HTTP surface. Create it with New.
type Server struct {
	mux *http.ServeMux
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// New listens on cfg.Addr (or takes cfg.Listener) and mounts /metrics,
// /healthz and /readyz. Nothing is served until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("http listen on %s: %w", cfg.Addr, err)
		}
	}
	s := &Server{mux: http.NewServeMux(), ln: ln, log: cfg.Logger}
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog: promLogger{cfg.Logger}, ErrorHandling: promhttp.ContinueOnError}))
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s.mux.Handle("GET /readyz", ReadyHandler(cfg.Ready))
	return s, nil
}

// Addr is the address the surface listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handle mounts h at pattern (http.ServeMux syntax, e.g. "GET /ui/"): the
// web page and other read-only views. It may be called while serving; a
// pattern that conflicts with a mounted one panics, as with http.ServeMux.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Serve serves until ctx ends, then shuts down (waiting up to 5 s for
// requests in flight) and returns nil; it returns an error if serving failed.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http serve on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("http shutdown on %s: %w", s.Addr(), err)
	}
	return nil
}

// ReadyHandler answers 200 "ready" when every check passes, else 503 with
// one line per failed check ("name: reason").
func ReadyHandler(checks []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var failed []string
		for _, c := range checks {
			if err := c.Fn(); err != nil {
				failed = append(failed, c.Name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// promLogger adapts slog to promhttp's error logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) { p.l.Warn("metrics scrape", "err", fmt.Sprint(v...)) }
