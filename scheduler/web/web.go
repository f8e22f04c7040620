// Package web is the web page of a server: a read-only view of its state
// (jobs with their timelines, the pool tree, agents with their GPUs)
// served on the HTTP surface next to /metrics and /healthz.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary; it
// fetches nothing from elsewhere. It reads JSON endpoints:
//
//	GET /api/jobs?pool=P&state=S&name=N&limit=L   the jobs, newest first
//	GET /api/jobs/{id}                            one job: tasks in stages, attempts
//	GET /api/pools                                the pool tree
//	GET /api/agents                               agents, GPUs, NVENC sessions
//
// and polls them every second while shown, so a running job's timeline
// moves without a reload.
//
// When the server enforces ACLs, every /api call needs a token
// ("Authorization: Bearer <secret>", as on the gRPC side); it is resolved
// by the server (Config.Authorize) and the answers hold only what it may
// read. A call without a valid token is answered 401, and the page asks
// for a token, kept in the tab's sessionStorage.
//
// Use: New, then Mount on the HTTP surface (httpapi.Server.Handle). The
// views are built by pure functions of the state (views.go, stages.go);
// the handlers only read the state under its lock, add the time and write
// JSON. The package starts no goroutines.
package web

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/state"
)

//go:embed assets
var assets embed.FS

// Access is what one caller may read.
type Access interface {
	// CanReadPool reports whether the caller may read the pool's jobs and
	// usage.
	CanReadPool(path string) bool
	// CanReadCluster reports whether the caller may read the agents.
	CanReadCluster() bool
}

// Config is what the page reads.
type Config struct {
	// Read runs fn with the state under a read lock (server.FSM().Read).
	// fn must not keep the state.
	Read func(fn func(*state.State))
	// Authorize resolves a request's token secret ("" when it sent none)
	// to what it may read. An error (a missing or bad token) is answered
	// 401 with its message. Nil lets every caller read everything.
	Authorize func(secret string) (Access, error)
	// Now is the clock of the views (default time.Now).
	Now func() time.Time
}

// Web serves the page and its API. Create it with New.
type Web struct {
	cfg    Config
	static http.Handler
}

// New returns the page's handlers for cfg.
func New(cfg Config) *Web {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &Web{cfg: cfg, static: http.StripPrefix("/ui/", http.FileServerFS(sub))}
}

// Mounter is where the page is mounted: httpapi.Server, or an
// http.ServeMux.
type Mounter interface {
	Handle(pattern string, h http.Handler)
}

// Mount mounts the page at / and /ui/ and its API at /api/.
func (w *Web) Mount(m Mounter) {
	m.Handle("GET /{$}", http.HandlerFunc(w.index))
	m.Handle("GET /ui/", w.static)
	m.Handle("GET /api/jobs", w.api(w.jobs))
	m.Handle("GET /api/jobs/{id}", w.api(w.job))
	m.Handle("GET /api/pools", w.api(w.pools))
	m.Handle("GET /api/agents", w.api(w.agents))
}

// Handler returns a handler serving only the page and its API.
func (w *Web) Handler() http.Handler {
	mux := http.NewServeMux()
	w.Mount(mux)
	return mux
}

func (w *Web) index(rw http.ResponseWriter, r *http.Request) {
	data, err := assets.ReadFile("assets/index.html")
	if err != nil {
		http.Error(rw, "page missing: "+err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-cache")
	_, _ = rw.Write(data)
}

// apiError is an answer with a status other than 200.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// apiFunc builds one answer for a caller.
type apiFunc func(r *http.Request, a Access) (any, error)

// api resolves the caller's token, runs f and writes its answer as JSON.
func (w *Web) api(f apiFunc) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Cache-Control", "no-store")
		a, err := w.authorize(r)
		if err != nil {
			rw.Header().Set("WWW-Authenticate", `Bearer realm="banyan"`)
			writeJSON(rw, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		v, err := f(r, a)
		if err != nil {
			code := http.StatusInternalServerError
			var ae *apiError
			if errors.As(err, &ae) {
				code = ae.code
			}
			writeJSON(rw, code, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(rw, http.StatusOK, v)
	})
}

func (w *Web) authorize(r *http.Request) (Access, error) {
	if w.cfg.Authorize == nil {
		return allAccess{}, nil
	}
	secret := pb.TokenFromMetadata(r.Header.Values("Authorization"), r.Header.Values(pb.TokenHeader))
	return w.cfg.Authorize(secret)
}

// allAccess reads everything (no Authorize configured).
type allAccess struct{}

func (allAccess) CanReadPool(string) bool { return true }
func (allAccess) CanReadCluster() bool    { return true }

func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	enc := json.NewEncoder(rw)
	_ = enc.Encode(v) // the client went away: nothing to do
}

func (w *Web) jobs(r *http.Request, a Access) (any, error) {
	q := r.URL.Query()
	f := JobFilter{Pool: q.Get("pool"), State: q.Get("state"), Name: q.Get("name")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, &apiError{http.StatusBadRequest, "limit must be a whole number, not " + strconv.Quote(l)}
		}
		f.Limit = n
	}
	var out JobList
	w.cfg.Read(func(st *state.State) { out = BuildJobList(st, a, f) })
	return out, nil
}

func (w *Web) job(r *http.Request, a Access) (any, error) {
	id := r.PathValue("id")
	now := w.cfg.Now().UnixMilli()
	var (
		d            JobDetail
		ok, readable bool
	)
	w.cfg.Read(func(st *state.State) { d, ok, readable = BuildJobDetail(st, a, id, now) })
	switch {
	case !ok:
		return nil, &apiError{http.StatusNotFound, "job " + strconv.Quote(id) + " not found"}
	case !readable:
		return nil, &apiError{http.StatusForbidden, "this token may not read the pool of job " + strconv.Quote(id)}
	}
	return d, nil
}

func (w *Web) pools(_ *http.Request, a Access) (any, error) {
	var out PoolTree
	w.cfg.Read(func(st *state.State) { out = BuildPoolTree(st, a) })
	return out, nil
}

func (w *Web) agents(_ *http.Request, a Access) (any, error) {
	if !a.CanReadCluster() {
		return nil, &apiError{http.StatusForbidden, `this token may not read the agents (it needs cluster "read")`}
	}
	var out AgentList
	w.cfg.Read(func(st *state.State) { out = BuildAgents(st) })
	return out, nil
}
