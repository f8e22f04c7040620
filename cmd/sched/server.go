//go:build !schedthin

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/hugeheap"
	"github.com/banyan-sched/banyan/scheduler/metrics"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// serverFile is the server's config file; flags given on the command line
// override it.
type serverFile struct {
	NodeID    string   `json:"node_id,omitempty"`
	DataDir   string   `json:"data_dir,omitempty"`
	Bind      string   `json:"bind,omitempty"`
	Advertise string   `json:"advertise,omitempty"`
	Bootstrap bool     `json:"bootstrap,omitempty"`
	Peers     []string `json:"peers,omitempty"`
	Join      []string `json:"join,omitempty"`
	Lease     string   `json:"lease,omitempty"`
	// MaxHeartbeats bounds the agents' heartbeats a second on the leader
	// (1000; 0: no bound; nil: the flag's value).
	MaxHeartbeats *int `json:"max_heartbeats,omitempty"`
	// DiskReserve is the free space the data dir keeps ("32Mi").
	DiskReserve string `json:"disk_reserve,omitempty"`
	TLSCA       string `json:"tls_ca,omitempty"`
	TLSCert     string `json:"tls_cert,omitempty"`
	TLSKey      string `json:"tls_key,omitempty"`
	Insecure    bool   `json:"insecure,omitempty"`
	ACL         bool   `json:"acl,omitempty"`
	Token       string `json:"token,omitempty"`
	// MaxMessageSize is the largest gRPC message, e.g. "16MiB".
	MaxMessageSize string `json:"max_message_size,omitempty"`
	// GCMaxAge and GCMaxJobs are the retention of finished jobs ("24h",
	// 10000).
	GCMaxAge  string `json:"gc_max_age,omitempty"`
	GCMaxJobs int    `json:"gc_max_jobs,omitempty"`
	// DeadServerTimeout is how long a server may fail heartbeats before the
	// leader removes it ("15m"; "0" never).
	DeadServerTimeout string `json:"dead_server_timeout,omitempty"`
	// HTTPAddr serves /metrics, /healthz and /readyz (observe.go).
	HTTPAddr string `json:"http_addr,omitempty"`
	// GCPercent is the Go garbage collector's target (GOGC) for the server
	// process (DefaultGCPercent; nil: the flag's value). A GOGC variable in
	// the environment wins.
	GCPercent *int `json:"gc_percent,omitempty"`
	// HeapHugePages marks the process's Go heap for transparent huge pages
	// (scheduler/hugeheap; nil: the flag's value, true by default).
	HeapHugePages *bool `json:"heap_huge_pages,omitempty"`
}

// DefaultGCPercent is the server's garbage-collection target: the heap may
// grow to three times what is live between collections, not Go's two.
// The leader's collector took a fifth of its CPU under load at Go's 100;
// at 200, a 3-server cluster placed 10-14% more tasks a second
// (banyan-bench -only placement, interleaved A/B runs) for a peak heap of
// up to 3x the live state (about 1 KiB a queued task). A server short of
// memory sets gc_percent lower, or GOMEMLIMIT, which the Go runtime honours.
const DefaultGCPercent = 200

func newServerCmd(g *globals) *cobra.Command {
	f := serverFile{}
	var configPath string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a scheduler server",
		Long: `Run a scheduler server. A lone server bootstraps itself (--bootstrap, the
default when neither --peers nor --join is given). Three servers form a
cluster either statically (--peers a=HOST:PORT,b=HOST:PORT,c=HOST:PORT on
each, same list everywhere) or by joining (--join ADDR of any member).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.TLSCA, f.TLSCert, f.TLSKey = g.tls.CA, g.tls.Cert, g.tls.Key
			f.Token = g.token
			file, err := readServerFile(configPath)
			if err != nil {
				return err
			}
			cfg, err := serverConfig(cmd, file, f)
			if err != nil {
				return err
			}
			gcPct, err := serverGCPercent(cmd, file, configPath, *f.GCPercent)
			if err != nil {
				return err
			}
			setGCPercent(gcPct)
			if serverHeapHugePages(cmd, file, *f.HeapHugePages) {
				defer startHugeHeap(cmd.Context())()
			}
			httpAddr := serverHTTPAddr(cmd, file, f.HTTPAddr)
			m := metrics.New()
			cfg.Observer = m
			s, err := server.New(cfg)
			if err != nil {
				return err
			}
			h, err := serverHTTP(httpAddr, s, m, slog.Default())
			if err != nil {
				_ = s.Close()
				return err
			}
			defer h.stop()
			select {
			case <-cmd.Context().Done():
				slog.Info("shutting down")
				return s.Close()
			case <-s.Halted():
				_ = s.Close()
				return fmt.Errorf("server stopped: %w", s.HaltErr())
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "YAML config file (node_id, data_dir, bind, advertise, bootstrap, peers, join, lease, max_heartbeats, disk_reserve, max_message_size, tls_ca, tls_cert, tls_key, insecure, acl, token, http_addr, gc_percent, heap_huge_pages)")
	fl.StringVar(&f.NodeID, "node-id", "", "this server's id (default: hostname)")
	fl.StringVar(&f.DataDir, "data-dir", "", "data directory (required)")
	fl.StringVar(&f.Bind, "bind", DefaultAddr, "address to serve gRPC and raft on")
	fl.StringVar(&f.Advertise, "advertise", "", "address peers and clients reach this server at (default: --bind)")
	fl.BoolVar(&f.Bootstrap, "bootstrap", false, "bootstrap a one-server cluster if the data dir is empty")
	fl.StringSliceVar(&f.Peers, "peers", nil, "bootstrap a cluster of these servers: id=host:port,... (same on every server)")
	fl.StringSliceVar(&f.Join, "join", nil, "join the cluster through this server address (repeatable)")
	fl.StringVar(&f.Lease, "lease", "10s", "agent lease: silence after which an agent's tasks are requeued")
	f.MaxHeartbeats = new(int)
	fl.IntVar(f.MaxHeartbeats, "max-heartbeats", server.DefaultMaxHeartbeatRate,
		"heartbeats a second the leader takes from all agents: a larger fleet heartbeats less often, its lease lengthened to match (0: no bound)")
	fl.StringVar(&f.DeadServerTimeout, "dead-server-timeout", "15m", "remove a server that failed the leader's heartbeats this long, when the rest keep a quorum (0: never)")
	fl.StringVar(&f.GCMaxAge, "gc-max-age", "24h", "remove finished jobs this long after they finished")
	fl.IntVar(&f.GCMaxJobs, "gc-max-jobs", 10_000, "keep at most this many finished jobs (the oldest finished go first)")
	fl.StringVar(&f.DiskReserve, "disk-reserve", "32Mi", "free space the data dir keeps: below it writes are refused and a leader steps aside")
	fl.BoolVar(&f.Insecure, "insecure", false, "serve without TLS on a non-loopback address (anyone who reaches the port owns the farm)")
	fl.BoolVar(&f.ACL, "acl", false, "enforce ACLs: every call needs a token (see `sched acl bootstrap`)")
	fl.StringVar(&f.MaxMessageSize, "max-message-size", "16MiB", "largest gRPC message, the same on servers and agents")
	fl.StringVar(&f.HTTPAddr, "http-addr", "", httpAddrHelp)
	f.GCPercent = new(int)
	fl.IntVar(f.GCPercent, "gc-percent", DefaultGCPercent,
		"the Go garbage collector's target for this process (GOGC; -1 turns it off); a GOGC variable in the environment wins")
	f.HeapHugePages = new(bool)
	fl.BoolVar(f.HeapHugePages, "heap-huge-pages", true,
		"ask Linux for 2 MiB pages under the growing heap (madvise): far fewer page faults, a resident size that may stay nearer the heap's high-water mark")
	cmd.AddCommand(serverClientCmds(g)...)
	return cmd
}

// serverConfig merges the config file's settings (file, from
// readServerFile) with the flags, the flags given on the command line
// winning.
func serverConfig(cmd *cobra.Command, file, flags serverFile) (server.Config, error) {
	f := file
	fl := cmd.Flags()
	set := func(name string, dst *string, v string) {
		if fl.Changed(name) || *dst == "" {
			*dst = v
		}
	}
	set("node-id", &f.NodeID, flags.NodeID)
	set("data-dir", &f.DataDir, flags.DataDir)
	set("bind", &f.Bind, flags.Bind)
	set("advertise", &f.Advertise, flags.Advertise)
	set("lease", &f.Lease, flags.Lease)
	if fl.Changed("max-heartbeats") || f.MaxHeartbeats == nil {
		f.MaxHeartbeats = flags.MaxHeartbeats
	}
	set("disk-reserve", &f.DiskReserve, flags.DiskReserve)
	set("gc-max-age", &f.GCMaxAge, flags.GCMaxAge)
	set("dead-server-timeout", &f.DeadServerTimeout, flags.DeadServerTimeout)
	if fl.Changed("gc-max-jobs") || f.GCMaxJobs == 0 {
		f.GCMaxJobs = flags.GCMaxJobs
	}
	set("tls-ca", &f.TLSCA, flags.TLSCA)
	set("tls-cert", &f.TLSCert, flags.TLSCert)
	set("tls-key", &f.TLSKey, flags.TLSKey)
	if fl.Changed("insecure") {
		f.Insecure = flags.Insecure
	}
	set("max-message-size", &f.MaxMessageSize, flags.MaxMessageSize)
	if fl.Changed("bootstrap") {
		f.Bootstrap = flags.Bootstrap
	}
	if fl.Changed("peers") {
		f.Peers = flags.Peers
	}
	if fl.Changed("join") {
		f.Join = flags.Join
	}
	if fl.Changed("acl") {
		f.ACL = flags.ACL
	}
	if flags.Token != "" {
		f.Token = flags.Token
	}
	if f.DataDir == "" {
		return server.Config{}, usageError{"--data-dir is required"}
	}
	lease, err := time.ParseDuration(f.Lease)
	if err != nil || lease <= 0 {
		return server.Config{}, usageError{fmt.Sprintf("--lease %q: want a positive duration such as 10s", f.Lease)}
	}
	heartbeats := server.DefaultMaxHeartbeatRate
	if f.MaxHeartbeats != nil {
		heartbeats = *f.MaxHeartbeats
	}
	if heartbeats < 0 {
		return server.Config{}, usageError{fmt.Sprintf("--max-heartbeats %d: want heartbeats a second such as 1000 (0: no bound)", heartbeats)}
	}
	heartbeatRate := float64(heartbeats)
	if heartbeats == 0 {
		heartbeatRate = -1 // no bound
	}
	var reserve int64 // 0: the server's default
	if f.DiskReserve != "" {
		if reserve, err = pool.ParseQuantity("memory", f.DiskReserve); err != nil || reserve <= 0 {
			return server.Config{}, usageError{fmt.Sprintf("--disk-reserve %q: want a positive size such as 32Mi", f.DiskReserve)}
		}
	}
	retention, err := retentionOf(f.GCMaxAge, f.GCMaxJobs)
	if err != nil {
		return server.Config{}, err
	}
	if f.DeadServerTimeout == "" {
		f.DeadServerTimeout = server.DefaultDeadServerTimeout.String()
	}
	deadAfter, err := time.ParseDuration(f.DeadServerTimeout)
	if err != nil || deadAfter < 0 {
		return server.Config{}, usageError{fmt.Sprintf("--dead-server-timeout %q: want a duration such as 15m (0: never)", f.DeadServerTimeout)}
	}
	if deadAfter == 0 {
		deadAfter = -1 // never
	}
	maxMsg, err := messageSize(f.MaxMessageSize)
	if err != nil {
		return server.Config{}, err
	}
	src, err := tlsSource(tlsconfig.Files{CA: f.TLSCA, Cert: f.TLSCert, Key: f.TLSKey}, tlsconfig.RoleServer)
	if err != nil {
		return server.Config{}, err
	}
	if src != nil && f.NodeID == "" {
		f.NodeID = src.Identity().ID // with TLS the certificate names the server
	}
	if src != nil && src.Identity().ID != f.NodeID {
		return server.Config{}, usageError{fmt.Sprintf("--node-id %q but the TLS certificate names %s", f.NodeID, src.Identity())}
	}
	cfg := server.Config{NodeID: f.NodeID, DataDir: f.DataDir, BindAddr: f.Bind, AdvertiseAddr: f.Advertise,
		Bootstrap: f.Bootstrap, Join: f.Join, Lease: lease, MaxHeartbeatRate: heartbeatRate, DiskReserve: uint64(reserve), Logger: slog.Default(), TLS: src, Insecure: f.Insecure,
		ACL: f.ACL, Token: f.Token, MaxMessageSize: maxMsg, Retention: retention, DeadServerTimeout: deadAfter}
	for _, p := range f.Peers {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return server.Config{}, usageError{fmt.Sprintf("--peers entry %q: want id=host:port", p)}
		}
		cfg.Peers = append(cfg.Peers, server.Peer{ID: id, Addr: addr})
	}
	if len(cfg.Peers) == 0 && len(cfg.Join) == 0 {
		cfg.Bootstrap = true
	}
	return cfg, nil
}

// serverGCPercent is --gc-percent, or gc_percent of the config file (file,
// read from path) when the flag is not given.
func serverGCPercent(cmd *cobra.Command, file serverFile, path string, flag int) (int, error) {
	pct, name := flag, "--gc-percent"
	if !cmd.Flags().Changed("gc-percent") && file.GCPercent != nil {
		pct, name = *file.GCPercent, "gc_percent in "+path
	}
	if pct < -1 || pct == 0 {
		return 0, usageError{fmt.Sprintf("%s %d: want a percentage such as 200 (-1: no collection)", name, pct)}
	}
	return pct, nil
}

// startHugeHeap starts the heap's huge-page advice (scheduler/hugeheap)
// and returns the function that stops it and waits for it.
func startHugeHeap(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := hugeheap.Start(ctx, slog.Default())
	return func() {
		cancel()
		if done != nil {
			<-done
		}
	}
}

// serverHeapHugePages is --heap-huge-pages, or heap_huge_pages of the
// config file when the flag is not given.
func serverHeapHugePages(cmd *cobra.Command, file serverFile, flag bool) bool {
	if !cmd.Flags().Changed("heap-huge-pages") && file.HeapHugePages != nil {
		return *file.HeapHugePages
	}
	return flag
}

// readServerFile reads the server config file at path (no path: every key
// unset); a key it does not know is an error.
func readServerFile(path string) (serverFile, error) {
	var f serverFile
	if path == "" {
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return f, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// setGCPercent sets the collector's target unless GOGC, read by the Go
// runtime at start, already has.
func setGCPercent(pct int) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(pct)
}

// messageSize parses --max-message-size and checks its range.
func messageSize(v string) (int, error) {
	if v == "" {
		return 0, nil // the default
	}
	n, err := limits.ParseSize(v)
	if err == nil {
		err = limits.Budget{MessageSize: n}.Check()
	}
	if err != nil {
		return 0, usageError{"--max-message-size: " + err.Error()}
	}
	return n, nil
}

// retentionOf checks and converts the retention flags.
func retentionOf(maxAge string, maxJobs int) (state.Retention, error) {
	if maxAge == "" {
		maxAge = "24h"
	}
	if maxJobs == 0 {
		maxJobs = state.DefaultRetention.MaxJobs
	}
	age, err := time.ParseDuration(maxAge)
	if err != nil || age <= 0 {
		return state.Retention{}, usageError{fmt.Sprintf("--gc-max-age %q: want a positive duration such as 24h", maxAge)}
	}
	if maxJobs <= 0 {
		return state.Retention{}, usageError{fmt.Sprintf("--gc-max-jobs %d: want a positive count", maxJobs)}
	}
	return state.Retention{MaxAgeMs: age.Milliseconds(), MaxJobs: maxJobs}, nil
}
