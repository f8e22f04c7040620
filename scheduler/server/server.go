// Package server runs a Banyan scheduler server: raft (hashicorp/raft with
// raft-boltdb for the log and a file snapshot store) around the state
// machine of package state, the gRPC services, and, while this server leads,
// the scheduling loop and the agents' sessions. Raft and gRPC share one TCP
// port, told apart by the first byte (or, with TLS, by the ALPN protocol),
// so a server has one address. With TLS, identity.go decides which
// certificate roles may call what.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/scheduler/deadleader"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/logcache"
	"github.com/banyan-sched/banyan/scheduler/raftlog"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Peer is one server of a statically configured cluster.
type Peer struct {
	ID   string
	Addr string
}

// Config configures a server. Zero values take the documented defaults.
type Config struct {
	// NodeID names this server in the raft configuration (default: hostname).
	NodeID string
	// DataDir holds the raft log, stable store and snapshots.
	DataDir string
	// BindAddr is the TCP address serving gRPC and raft (default 127.0.0.1:7400).
	BindAddr string
	// AdvertiseAddr is the address peers and clients use (default: the bound address).
	AdvertiseAddr string
	// Listener, when set, is used instead of listening on BindAddr.
	Listener net.Listener
	// Bootstrap starts a one-server cluster when the data dir is empty.
	Bootstrap bool
	// Peers bootstraps a cluster of these servers (this one included) when
	// the data dir is empty; every server must be given the same list.
	Peers []Peer
	// Join lists servers to ask to add this one, tried until one succeeds.
	Join []string
	// Lease is how long an agent may stay silent before its tasks are
	// requeued (default 10s). Agents heartbeat every Lease/4, until the
	// fleet outgrows MaxHeartbeatRate.
	Lease time.Duration
	// MaxHeartbeatRate bounds the heartbeats a second the leader takes from
	// its agents: a larger fleet is told to heartbeat less often, with its
	// lease lengthened to match (heartbeat.go). 0 means
	// DefaultMaxHeartbeatRate; a negative rate sets no bound.
	MaxHeartbeatRate float64
	// Defaults apply to jobs that leave fields unset.
	Defaults state.Defaults
	// Clock is the wall clock (default time.Now); tests may fix it.
	Clock func() time.Time
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// RaftLogLevel is the lowest level of raft's own log lines (default
	// "warn"; "off" silences them). They go through Logger's handler, so
	// its level applies too.
	RaftLogLevel string
	// SnapshotThreshold is how many log entries between snapshots (default 8192).
	SnapshotThreshold uint64
	// Retention says how long finished jobs are kept (zero value:
	// state.DefaultRetention).
	Retention state.Retention
	// DeadServerTimeout is how long a voter may fail the leader's
	// heartbeats before the leader removes it (autopilot.go; 0: the
	// default, 15m; negative: never).
	DeadServerTimeout time.Duration
	// PreemptRate is how many running tasks per second the leader may
	// preempt, with bursts up to PreemptBurst (defaults 10/s and 20).
	PreemptRate  float64
	PreemptBurst int
	// TLS, when set, makes every connection on the port mutual TLS (gRPC
	// and raft alike) with this source's server certificate, and this
	// server's own dials (raft, forwarding, joining) present it.
	TLS *tlsconfig.Source
	// Insecure allows serving without TLS on an address that is not
	// loopback. Without it such a server refuses to start.
	Insecure bool
	// MinRuntime protects tasks from preemption for this long after they
	// start (default 5s): together with the rate it prevents thrashing.
	MinRuntime time.Duration
	// ReclaimHold is how long capacity that a pool within its guarantee
	// gave back stays held for it before pools that borrow may take it
	// (state.UsagePeaks): a stream of short guaranteed tasks then reuses
	// its own capacity instead of lending it and preempting to get it back
	// (default 1s; negative: nothing is held).
	ReclaimHold time.Duration
	// DiskReserve is the free space the data dir keeps: below it the
	// server refuses writes (ErrDiskFull) and a leader hands leadership to
	// a peer (default 32 MiB).
	DiskReserve uint64
	// ACL enforces ACLs on every call (scheduler/acl, auth.go): a call
	// needs a token whose policies allow it; until the ACL system is
	// bootstrapped only ACLService.Bootstrap is served.
	ACL bool
	// Token is the ACL token this server sends with its own calls to
	// other servers (joining a cluster).
	Token string
	// Events sizes the ring of recent events this server keeps for event
	// streams (package events; zero values take its defaults).
	Events events.Options
	// MaxMessageSize is the largest gRPC message this server sends or
	// accepts, and the budget its batches to agents are split by (default
	// limits.DefaultMessageSize; agents and clients must use the same).
	MaxMessageSize int
	// Observer, when set, is told what the leader does (scheduler/metrics).
	Observer Observer
	// TracerProvider makes the spans of calls and of jobs' lives (package
	// tracing); nil: the global provider (a no-op one unless
	// tracing.Setup installed an exporting one).
	TracerProvider trace.TracerProvider

	// wrapLogStore, set by this package's tests, wraps the raft log store
	// (to make its writes fail as a full disk's do).
	wrapLogStore func(raft.LogStore) raft.LogStore
}

func (c *Config) fill() error {
	if c.DataDir == "" {
		return errors.New("server config: data dir is required")
	}
	if c.NodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("server config: node id: %w", err)
		}
		c.NodeID = h
	}
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1:7400"
	}
	if c.TLS != nil && c.TLS.Identity().Role != tlsconfig.RoleServer {
		return fmt.Errorf("server config: TLS certificate names %s, not a server", c.TLS.Identity())
	}
	if c.Lease <= 0 {
		c.Lease = 10 * time.Second
	}
	if c.MaxHeartbeatRate == 0 {
		c.MaxHeartbeatRate = DefaultMaxHeartbeatRate
	}
	if c.Defaults == (state.Defaults{}) {
		c.Defaults = state.DefaultDefaults
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = "warn"
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.PreemptRate <= 0 {
		c.PreemptRate = 10
	}
	if c.PreemptBurst <= 0 {
		c.PreemptBurst = 20
	}
	if c.MinRuntime <= 0 {
		c.MinRuntime = 5 * time.Second
	}
	if c.ReclaimHold == 0 {
		c.ReclaimHold = time.Second
	}
	if c.DiskReserve == 0 {
		c.DiskReserve = 32 << 20
	}
	if err := (limits.Budget{MessageSize: c.MaxMessageSize}).Check(); err != nil {
		return fmt.Errorf("server config: %w", err)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = limits.DefaultMessageSize
	}
	return nil
}

// serverReadBuffer is the read buffer of each gRPC connection a server
// accepts (see New).
const serverReadBuffer = 8 << 10

// keepaliveEnforcement lets agents and clients ping every 5 s or more
// (agents ping a quiet connection every 10 s to notice a lost server).
var keepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}

// damagedStoreHelp is the way out named when the raft store is damaged.
const damagedStoreHelp = "move this server's data dir aside and start it again to rejoin from the other servers " +
	"(its log and state come back from them), or restore a snapshot"

// The raft log cache (scheduler/logcache) holds at most this many of the
// newest entries and bytes of them. Replication and apply read an entry
// within milliseconds of its write, so a few MiB cover both; what it holds
// stays held while the cluster is idle, 4 B a task of a million queued.
const (
	raftLogCacheEntries = 512
	raftLogCacheBytes   = 4 << 20
)

// openStore opens the raft log and stable store at path. A damaged file
// (bbolt panics on some: a truncated freelist) is an error that names the
// file and the way out, never a crash.
func openStore(path string) (store *raftboltdb.BoltStore, err error) {
	if err := checkBoltFile(path); err != nil {
		return nil, fmt.Errorf("raft store damaged: %w: %s", err, damagedStoreHelp)
	}
	if err := checkBoltPages(path); err != nil {
		return nil, fmt.Errorf("raft store damaged: %w: %s", err, damagedStoreHelp)
	}
	defer func() {
		if p := recover(); p != nil {
			store, err = nil, fmt.Errorf("raft store %s is damaged (%v): %s", path, p, damagedStoreHelp)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w (%s)", path, err, damagedStoreHelp)
	}
	return store, nil
}

// Server is one scheduler server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	fsm   *FSM
	raft  *raft.Raft
	trans raftTransport
	store *raftboltdb.BoltStore
	snaps raft.SnapshotStore
	mux   *mux
	grpc  *grpc.Server
	fwd   *forwarder
	disk  *diskGuard
	addr  string
	// deadLeader stands for election when the leader's port refuses
	// connections (deadleader.go).
	deadLeader *deadleader.Watcher

	ctx    context.Context
	cancel context.CancelFunc
	// submits merges concurrent SubmitJobs calls into shared raft entries.
	submits *submitBatcher
	wg      sync.WaitGroup

	leaderNotify chan bool

	leaderMu sync.Mutex
	leader   *leaderLoop // non-nil while this server leads

	applyWatch applyWatch // Ready's memory of the commit index (observe.go)
}

// New starts a server: it opens the data dir, starts raft and serves gRPC.
// Stop it with Close.
func New(cfg Config) (*Server, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if cfg.Listener == nil {
		// Refuse before creating or binding anything.
		if err := checkInsecureBind(cfg.BindAddr, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, err
		}
	}
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.BindAddr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.BindAddr, err)
		}
	}
	if err := checkInsecureBind(ln.Addr().String(), cfg.TLS != nil, cfg.Insecure); err != nil {
		ln.Close()
		return nil, err
	}
	advertise := ln.Addr()
	if cfg.AdvertiseAddr != "" {
		// Keep the name as given (e.g. a container's service name): peers
		// resolve it when they dial, so a restarted host's new address is
		// found and a stopped one is refused rather than timed out.
		if _, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		advertise = namedAddr(cfg.AdvertiseAddr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), fsm: NewFSM(cfg.Defaults),
		addr: advertise.String(), ctx: ctx, cancel: cancel}
	s.fsm.setEvents(events.New(cfg.Events))
	var muxTLS *tls.Config
	if cfg.TLS != nil {
		muxTLS = cfg.TLS.ServerConfig(tlsconfig.ALPNGRPC, tlsconfig.ALPNRaft)
	}
	s.mux = newMux(ln, advertise, muxTLS, s.log)
	s.disk = newDiskGuard(cfg.DataDir, cfg.DiskReserve)
	if _, _, err := s.disk.check(); err != nil {
		s.log.Warn("cannot measure the data dir's free space", "err", err)
	}
	if err := s.startRaft(); err != nil {
		s.mux.close()
		cancel()
		return nil, err
	}
	s.fwd = newForwarder(s)
	s.watchForDeadLeader()
	s.submits = newSubmitBatcher(s.propose, s.afterApply, limits.Budget{MessageSize: cfg.MaxMessageSize}.BatchBytes())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.submits.run(s.ctx)
	}()
	// ReadBufferSize: each connection keeps its read buffer for its life,
	// and a leader holds one per agent; gRPC's 32 KiB was 313 MiB of the
	// leader's live heap with 10,000 agents (banyan-bench -only agents),
	// which the collector's pacing then doubles. Agents send small
	// messages, and a frame larger than the buffer is read straight into
	// its own.
	opts := []grpc.ServerOption{grpc.ReadBufferSize(serverReadBuffer), grpc.ChainUnaryInterceptor(s.identityUnary, s.fwd.unary, s.authUnary),
		grpc.ChainStreamInterceptor(s.identityStream, s.authStream), grpc.KeepaliveEnforcementPolicy(keepaliveEnforcement),
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize), grpc.MaxSendMsgSize(cfg.MaxMessageSize),
		grpc.StatsHandler(tracing.ServerHandler(cfg.TracerProvider)), wirecodec.ServerOption()}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(tlsconfig.AcceptedCredentials()))
	}
	s.grpc = grpc.NewServer(opts...)
	registerServices(s.grpc, s)
	hs := registerHealth(s.grpc)
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.watchHealth(hs, serviceNames(s.grpc))
	}()
	go func() {
		defer s.wg.Done()
		_ = s.grpc.Serve(newChanListener(s.mux, s.mux.grpcCh))
	}()
	go func() {
		defer s.wg.Done()
		s.watchLeadership()
	}()
	if len(cfg.Join) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.joinLoop()
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.watchDisk()
	}()
	go func() {
		defer s.wg.Done()
		select {
		case <-s.ctx.Done():
		case <-s.fsm.Halted():
			s.log.Error("server stops applying the raft log", "err", s.fsm.Halt(),
				"way_out", "move this server's data dir aside and let it rejoin from the other servers (or restore a snapshot)")
		}
	}()
	s.log.Info("server started", "addr", s.addr, "data_dir", cfg.DataDir)
	return s, nil
}

// Halted is closed when this server met a raft log entry it cannot apply
// and stopped applying (see FSM.Halted); HaltErr says why. The owner of
// the server should Close it and exit with that error.
func (s *Server) Halted() <-chan struct{} { return s.fsm.Halted() }

// HaltErr is why the server halted, or nil.
func (s *Server) HaltErr() error { return s.fsm.Halt() }

// raftTimeout is raft's heartbeat, election and leader-lease timeout
// (startRaft says why 750 ms); a server whose data dir is full waits
// fullDiskStandBack times as long before it stands (diskguard.go).
const raftTimeout = 750 * time.Millisecond

func (s *Server) startRaft() error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	// Followers call an election after 750-1500 ms without the leader
	// (raft's default is 1-2 s), and the leader steps down when it has not
	// heard from a quorum for 750 ms (raft's default is 500 ms); raft
	// wants the lease no longer than the heartbeat timeout. All three were
	// 500 ms, but a loaded host (three servers, 10,000 agents and 2,000
	// task events a second on two cores) stalled the leader's raft
	// goroutines past that in about one run in three: it stepped down with
	// both followers healthy, and every step-down makes the whole fleet say
	// hello again to the next leader. At raft's 1 s a kill -9 of the leader
	// took 2.7-2.9 s to recover from (bench: failover, target 3 s). A
	// leader whose process is gone is not waited out: its port refuses
	// connections, and a follower stands at once (deadleader.go).
	rc.HeartbeatTimeout = raftTimeout
	rc.ElectionTimeout = raftTimeout
	rc.LeaderLeaseTimeout = raftTimeout
	rc.CommitTimeout = 5 * time.Millisecond
	// Concurrent proposals (submissions from many clients, assignments,
	// events) share one log write and one fsync.
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = 30 * time.Second
	// Raft's lines go through this server's slog handler (same format and
	// level), at RaftLogLevel or above.
	rc.Logger = raftlog.New(s.log, "raft", hclog.LevelFromString(s.cfg.RaftLogLevel))
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	s.leaderNotify = notify

	store, err := openStore(filepath.Join(s.cfg.DataDir, "raft.db"))
	if err != nil {
		return err
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, 2, rc.Logger)
	if err == nil {
		err = tighten(s.cfg.DataDir) // the store made its directory 0755
	}
	if err != nil {
		store.Close()
		return fmt.Errorf("open snapshot store: %w", err)
	}
	snaps := newPrivateSnapshots(s.cfg.DataDir, fileSnaps)
	// MaxRPCsInFlight 1 turns raft's pipelined replication off: in
	// hashicorp/raft v1.7.3 a follower's failed append (a full disk) ends
	// the pipeline's reader while its sender waits on a channel only the
	// reader drains, and the leader sends that follower no entry again
	// until leadership changes, though its heartbeats go on (its issue
	// #612). The chaos harness found followers of a steady leader minutes
	// behind after a full disk. Without the pipeline each follower gets
	// one AppendEntries at a time, each with up to MaxAppendEntries
	// entries.
	trans := raftTransport{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &streamLayer{chanListener: newChanListener(s.mux, s.mux.raftCh), tls: s.cfg.TLS}, MaxPool: raftMaxPool,
		MaxRPCsInFlight: 1, Timeout: 10 * time.Second, Logger: rc.Logger,
	})}
	s.fsm.snapshotIndex = func() uint64 { return newestSnapshot(snaps) }
	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return fmt.Errorf("inspect raft state: %w", err)
	}
	// Raft reads each entry back right after writing it (the leader to
	// send it, a follower to apply it): the newest are served from memory.
	logs, err := logcache.New(store, raftLogCacheEntries, raftLogCacheBytes)
	if err != nil {
		store.Close()
		return fmt.Errorf("raft log cache: %w", err)
	}
	var logStore raft.LogStore = guardedLog{Store: logs, disk: s.disk}
	if s.cfg.wrapLogStore != nil {
		logStore = s.cfg.wrapLogStore(logStore)
	}
	r, err := raft.NewRaft(rc, s.fsm, logStore, store, snaps, trans)
	if err != nil {
		store.Close()
		if rerr := s.fsm.RestoreErr(); rerr != nil { // say why, not only that it failed
			return fmt.Errorf("start raft: %w: %w", err, rerr)
		}
		return fmt.Errorf("start raft: %w", err)
	}
	s.raft, s.store, s.snaps, s.trans = r, store, snaps, trans
	if hasState {
		return nil
	}
	var servers []raft.Server
	switch {
	case len(s.cfg.Peers) > 0:
		for _, p := range s.cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
	case s.cfg.Bootstrap:
		servers = []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(s.addr)}}
	default:
		return nil
	}
	if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil &&
		!errors.Is(err, raft.ErrCantBootstrap) {
		// Leave nothing open behind a failed start.
		_ = r.Shutdown().Error()
		store.Close()
		s.raft, s.store = nil, nil
		return fmt.Errorf("bootstrap cluster: %w", err)
	}
	return nil
}

// namedAddr is an advertised host:port kept unresolved.
type namedAddr string

func (a namedAddr) Network() string { return "tcp" }
func (a namedAddr) String() string  { return string(a) }

// Addr is the server's advertised address (gRPC and raft).
func (s *Server) Addr() string { return s.addr }

// NodeID is the server's raft id.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// IsLeader reports whether this server leads now.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderAddr returns the current leader's address, "" when unknown.
func (s *Server) LeaderAddr() string {
	addr, _ := s.raft.LeaderWithID()
	return string(addr)
}

// FSM exposes the state machine for reads (tests, the dev command).
func (s *Server) FSM() *FSM { return s.fsm }

// SnapshotNow has raft take a snapshot of the state now (and compact the
// log before it).
func (s *Server) SnapshotNow() error { return s.raft.Snapshot().Error() }

// Close stops the server: leader loop, gRPC, raft and the store.
func (s *Server) Close() error {
	s.cancel()
	s.stopLeader()
	s.fsm.events.Close()
	s.grpc.Stop()
	err := s.raft.Shutdown().Error()
	s.mux.close()
	s.fwd.close()
	s.wg.Wait()
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close server: %w", err)
	}
	return nil
}

// ErrNotLeader is returned when a write reaches a server that does not lead.
var ErrNotLeader = errors.New("not the leader")

// propose commits a command through raft and returns what Apply decided.
func (s *Server) propose(cmd *fsmpb.Command) (*state.Result, error) {
	if err := s.disk.err(); err != nil {
		return nil, err
	}
	cmd.NowUnixMs = s.cfg.Clock().UnixMilli()
	data, err := cmd.MarshalVT() // generated encoder, the same bytes proto.Marshal writes
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	f := s.raft.Apply(data, 10*time.Second)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("commit command: %w", err)
	}
	r, _ := f.Response().(*state.Result)
	if r == nil {
		return &state.Result{}, nil
	}
	s.traceEnded(r)
	return r, nil
}

// watchLeadership starts the leader loop when this server wins an election
// and stops it when it loses leadership.
func (s *Server) watchLeadership() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case isLeader := <-s.leaderNotify:
			if isLeader {
				s.startLeader()
			} else {
				s.stopLeader()
			}
		}
	}
}

func (s *Server) startLeader() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leader != nil || s.ctx.Err() != nil {
		return // leading already, or closing: Close must not race a new loop
	}
	s.log.Info("became leader")
	s.leader = newLeaderLoop(s)
}

func (s *Server) stopLeader() {
	s.leaderMu.Lock()
	l := s.leader
	s.leader = nil
	s.leaderMu.Unlock()
	if l != nil {
		s.log.Info("leadership lost")
		l.stop()
	}
}

// currentLeader returns the running leader loop, or nil.
func (s *Server) currentLeader() *leaderLoop {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	return s.leader
}

// joinLoop asks the configured servers to add this one until one does.
func (s *Server) joinLoop() {
	backoff := 200 * time.Millisecond
	for {
		if s.hasJoined() {
			return
		}
		for _, addr := range s.cfg.Join {
			err := s.fwd.join(s.ctx, addr, &pb.JoinRequest{Id: s.cfg.NodeID, Address: s.addr})
			if err == nil {
				s.log.Info("joined cluster", "via", addr)
				return
			}
			s.log.Warn("join failed; retrying", "via", addr, "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// hasJoined reports whether this server is in the raft configuration it knows.
func (s *Server) hasJoined() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(s.cfg.NodeID) {
			return true
		}
	}
	return false
}
