// Package agent is the daemon on an encoding host. It fingerprints the
// host, holds a session (its lease) with the scheduler's leader, runs the
// tasks the leader hands it as processes, and reports their progress. A lost
// connection does not stop running tasks: the agent reconnects, tells the new
// session what it runs, and resends results the leader has not acknowledged.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banyan-sched/banyan/agent/cgroup"
	"github.com/banyan-sched/banyan/agent/devices"
	"github.com/banyan-sched/banyan/agent/process"
	"github.com/banyan-sched/banyan/agent/rotation"
	"github.com/banyan-sched/banyan/agent/tasklog"
	"github.com/banyan-sched/banyan/agent/worker"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// Config configures an agent.
type Config struct {
	// ID names the agent; it must stay the same across restarts.
	ID string
	// Servers are scheduler addresses; the agent finds the leader among them.
	Servers []string
	// Fingerprint is what the agent reports about its host.
	Fingerprint *pb.Fingerprint
	// WorkDir is where tasks without a workdir run ("" = each task's
	// private directory).
	WorkDir string
	// RunAs is the user tasks and function workers run as (nil: the
	// agent's own user). Running as another user needs root.
	RunAs *process.User
	// TaskDir holds the tasks' private directories ("" = a new temp dir,
	// removed at shutdown); see sandbox.go.
	TaskDir string
	// Cgroups, when set, gives each task a cgroup limited to its ask
	// (agent/cgroup); nil runs tasks without cgroups.
	Cgroups *cgroup.Manager
	// TaskPids is pids.max for each task's cgroup (0: no limit).
	TaskPids int64
	// TailBytes is how much of each task's stdout and stderr is kept (at
	// most the budget's TailBytes).
	TailBytes int
	// MaxMessageSize is the largest gRPC message the agent sends or
	// accepts (default limits.DefaultMessageSize; the same as the servers').
	// Events to the server are split by it, and outputs bounded below it.
	MaxMessageSize int
	// KillGrace is the SIGTERM-to-SIGKILL grace when the agent shuts down.
	KillGrace time.Duration
	// StorageRoots are the directories media functions may read and write;
	// tasks get them in $BANYAN_STORAGE_ROOTS (empty: no restriction).
	StorageRoots []string
	// Env is added to every task's environment (a task's own env wins).
	Env map[string]string
	// TracerProvider makes the spans of the agent's calls to the servers
	// (package tracing); nil: the global provider.
	TracerProvider trace.TracerProvider
	// Functions registers the functions this agent serves: name -> worker
	// command (agent/worker's line protocol; "@sched" is this binary). The
	// agent advertises each as the label "fn.NAME".
	Functions map[string][]string
	// Warm keeps this many workers per function alive before calls come
	// (pools may reserve more through the leader).
	Warm map[string]int
	// TLS, when set, dials the servers with mutual TLS using this agent
	// certificate (its id must be ID); nil dials in plaintext.
	TLS *tlsconfig.Source
	// Clock is the wall clock (default time.Now).
	Clock func() time.Time
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Token is the ACL token sent with every call (its policy needs
	// agent = "write" when the servers enforce ACLs).
	Token string
	// GPU configures how the agent watches and offers its GPUs (gpus.go).
	GPU GPUConfig
	// TaskLogDir keeps every attempt's full stdout and stderr (logs.go;
	// "" = "logs" in TaskDir, so removed at shutdown with a temp TaskDir).
	TaskLogDir string
	// TaskLogMax caps each stream of an attempt; the newest bytes are kept
	// (0: tasklog.DefaultMaxBytes).
	TaskLogMax int64
	// TaskLogAge removes output this old even when the leader never says
	// its job is gone (0: tasklog.DefaultMaxAge).
	TaskLogAge time.Duration
	// TaskLogSweep is how often old output is removed and the leader asked
	// which jobs are gone (0: DefaultTaskLogSweep).
	TaskLogSweep time.Duration
}

// Agent runs tasks for the scheduler. Create it with New and run it with Run.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running map[string]*run          // task id -> its current run
	unacked map[string]*pb.TaskEvent // "task/attempt" -> finished event not yet acknowledged
	resent  map[string]int64         // "task/attempt" -> when resendStale last queued it (unix ms)
	events  *eventQueue              // current session's event queue; nil when disconnected
	tasksWG sync.WaitGroup

	conns map[string]*grpc.ClientConn
	pools map[string]*worker.Pool // function name -> its workers

	devices   *devices.Table // live GPU view; guarded by mu
	devSignal chan struct{}  // the advertised GPUs changed (see gpus.go)

	taskDir     string // parent of the tasks' private directories
	ownsTaskDir bool   // taskDir is a temp dir to remove at shutdown

	drainUntil  time.Time     // end of the drain's grace (drain.go); zero: not draining; guarded by mu
	drainSignal chan struct{} // Drain was called

	logs        *tasklog.Store // every attempt's full output (logs.go)
	sweepSignal chan struct{}  // a session opened: sweep the output now
}

type run struct {
	attempt int32
	cancel  context.CancelFunc
	started *pb.TaskEvent
	gpu     *gpuUse // its granted GPU until it ends; nil without one
}

// New checks the configuration and returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.ID == "" {
		return nil, errors.New("agent config: id is required")
	}
	if len(cfg.Servers) == 0 {
		return nil, errors.New("agent config: at least one server address is required")
	}
	if cfg.Fingerprint == nil {
		return nil, errors.New("agent config: fingerprint is required")
	}
	if cfg.TLS != nil {
		if id := cfg.TLS.Identity(); id.Role != tlsconfig.RoleAgent || id.ID != cfg.ID {
			return nil, fmt.Errorf("agent config: TLS certificate names %s; agent %q needs agent/%s", id, cfg.ID, cfg.ID)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	if cfg.TaskLogAge <= 0 {
		cfg.TaskLogAge = tasklog.DefaultMaxAge
	}
	if cfg.TaskLogSweep <= 0 {
		cfg.TaskLogSweep = DefaultTaskLogSweep
	}
	if cfg.TaskPids < 0 {
		return nil, fmt.Errorf("agent config: negative task pids limit %d", cfg.TaskPids)
	}
	cfg.RunAs = switchTo(cfg.RunAs, os.Geteuid(), os.Getegid())
	budget := limits.Budget{MessageSize: cfg.MaxMessageSize}
	if err := budget.Check(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	cfg.MaxMessageSize = budget.Message()
	if cfg.TailBytes > budget.TailBytes() {
		return nil, fmt.Errorf("agent config: tail of %d bytes is more than the %d a message of %s allows",
			cfg.TailBytes, budget.TailBytes(), limits.FormatBytes(int64(budget.Message())))
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("agent", cfg.ID), running: map[string]*run{},
		unacked: map[string]*pb.TaskEvent{}, resent: map[string]int64{}, conns: map[string]*grpc.ClientConn{}, pools: map[string]*worker.Pool{},
		devices: newDeviceTable(cfg.Fingerprint, cfg.GPU), devSignal: make(chan struct{}, 1), drainSignal: make(chan struct{}, 1),
		sweepSignal: make(chan struct{}, 1)}
	var err error
	if a.taskDir, a.ownsTaskDir, err = prepareTaskDir(cfg.TaskDir); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if err := checkReachable(a.taskDir, cfg.RunAs); err != nil {
		a.removeTaskDir()
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if err := a.openTaskLogs(); err != nil {
		a.removeTaskDir()
		return nil, err
	}
	if err := a.registerFunctions(); err != nil {
		a.removeTaskDir()
		return nil, err
	}
	a.log.Info("task isolation", a.isolationSummary()...)
	return a, nil
}

// registerFunctions creates a worker pool per function and advertises the
// functions in the fingerprint's labels (on a copy of the fingerprint).
func (a *Agent) registerFunctions() error {
	if len(a.cfg.Functions) == 0 {
		return nil
	}
	fp := proto.Clone(a.cfg.Fingerprint).(*pb.Fingerprint)
	if fp.Labels == nil {
		fp.Labels = map[string]string{}
	}
	for name, argv := range a.cfg.Functions {
		if name == "" || len(argv) == 0 {
			return fmt.Errorf("agent config: function %q has no command", name)
		}
		cmd := append([]string(nil), argv...)
		if cmd[0] == SelfCommand {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("resolve %s for function %s: %w", SelfCommand, name, err)
			}
			cmd[0] = self
		}
		var env []string
		for k, v := range a.cfg.Env {
			env = append(env, k+"="+v)
		}
		p := worker.NewPool(worker.PoolConfig{Name: name, Command: cmd, Env: env, Credential: a.credential(), Logger: a.log})
		p.SetWarm(a.cfg.Warm[name])
		a.pools[name] = p
		fp.Labels["fn."+name] = "1"
	}
	a.cfg.Fingerprint = fp
	return nil
}

// setWarm applies the leader's warm targets (never below the local ones).
func (a *Agent) setWarm(targets map[string]int32) {
	for name, p := range a.pools {
		p.SetWarm(max(int(targets[name]), a.cfg.Warm[name]))
	}
}

// Running returns the number of tasks running now.
func (a *Agent) Running() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.running)
}

// errServerSilent ends a session whose server stopped answering.
var errServerSilent = errors.New("server silent")

// welcomeTimeout bounds the wait for the leader's welcome (the rotation's
// policy, where the leader's reconnection grace is derived from it).
const welcomeTimeout = rotation.WelcomeTimeout

// keepaliveParams ping a connection that has been quiet for a while and
// drop it when the ping is not answered: a server that vanished without a
// FIN (a partition) is noticed even between sessions.
var keepaliveParams = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}

// Run holds a session with the leader until ctx ends, reconnecting as
// needed. When ctx ends it stops every running task and waits for them.
func (a *Agent) Run(ctx context.Context) error {
	defer a.closeConns()
	defer a.Shutdown()
	if len(a.cfg.Fingerprint.Gpus) > 0 {
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.watchDevices(wctx)
		}()
		defer func() { stop(); <-done }()
	}
	sctx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		a.sweepLoop(sctx)
	}()
	defer func() { stopSweep(); <-swept }()
	servers := rotation.New(a.cfg.Servers)
	for ctx.Err() == nil {
		addr := servers.Next()
		opened, err := a.session(ctx, addr)
		if ctx.Err() != nil {
			break
		}
		wait := servers.Ended(addr, opened, err)
		if leader, refused := rotation.LeaderHint(err); refused {
			a.log.Debug("server refused the session", "server", addr, "leader", leader)
		} else {
			a.log.Warn("session with scheduler ended; reconnecting", "server", addr, "err", err, "in", wait)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

func (a *Agent) conn(addr string) (*grpc.ClientConn, error) {
	if c, ok := a.conns[addr]; ok {
		return c, nil
	}
	// A short connect timeout: a server that vanished is skipped quickly
	// and the next one (or the leader hint) tried.
	creds := insecure.NewCredentials()
	if a.cfg.TLS != nil {
		creds = a.cfg.TLS.Credentials()
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(pb.TokenCredentials(a.cfg.Token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(a.cfg.MaxMessageSize), grpc.MaxCallSendMsgSize(a.cfg.MaxMessageSize)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond,
			Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}, MinConnectTimeout: 3 * time.Second}),
		grpc.WithKeepaliveParams(keepaliveParams), grpc.WithStatsHandler(tracing.ClientHandler(a.cfg.TracerProvider)), wirecodec.DialOption())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	a.conns[addr] = c
	return c, nil
}

func (a *Agent) closeConns() {
	for _, c := range a.conns {
		c.Close()
	}
}

// session runs one session; opened reports whether the leader welcomed us.
func (a *Agent) session(ctx context.Context, addr string) (opened bool, err error) {
	c, err := a.conn(addr)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A frozen server accepts the connection and never answers: give up
	// on it if no welcome comes in time.
	silent := time.AfterFunc(welcomeTimeout, cancel)
	defer silent.Stop()
	noWelcome := func(err error) error {
		if !silent.Stop() && ctx.Err() == nil {
			return fmt.Errorf("%w: no welcome within %v", errServerSilent, welcomeTimeout)
		}
		return err
	}
	stream, err := pb.NewAgentServiceClient(c).Session(sctx)
	if err != nil {
		return false, noWelcome(fmt.Errorf("open session: %w", err))
	}
	if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: a.hello()}}); err != nil {
		if errors.Is(err, io.EOF) {
			_, err = stream.Recv() // the server closed the stream: its status says why
			return false, noWelcome(err)
		}
		return false, noWelcome(fmt.Errorf("send hello: %w", err))
	}
	first, err := stream.Recv()
	if err != nil {
		return false, noWelcome(err)
	}
	if !silent.Stop() {
		return false, fmt.Errorf("%w: no welcome within %v", errServerSilent, welcomeTimeout)
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return false, errors.New("session did not open with a welcome")
	}
	a.log.Info("session open", "server", addr, "lease_ms", welcome.LeaseMs)

	terms := newSessionTerms(welcome)
	events := newEventQueue()
	heard := &lastHeard{}
	heard.mark()
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sendErr <- a.sendLoop(sctx, stream, events, terms, heard)
	}()
	a.attach(events)
	defer func() {
		a.detach(events)
		cancel()
		wg.Wait()
	}()
	recvErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		recvErr <- a.recvLoop(sctx, stream, heard, terms)
	}()
	select {
	case err = <-recvErr:
	case err = <-sendErr:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return true, err
}

// hello names every attempt the agent knows: running, or finished and not
// yet acknowledged. The leader requeues what is placed here but not named.
func (a *Agent) hello() *pb.AgentHello {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := &pb.AgentHello{AgentId: a.cfg.ID, Fingerprint: a.fingerprintLocked()}
	for id, r := range a.running {
		h.Running = append(h.Running, &pb.TaskAssignment{TaskId: id, Attempt: r.attempt})
	}
	for _, ev := range a.unacked {
		if r, ok := a.running[ev.TaskId]; ok && r.attempt == ev.Attempt {
			continue
		}
		h.Running = append(h.Running, &pb.TaskAssignment{TaskId: ev.TaskId, Attempt: ev.Attempt})
	}
	return h
}

// attach makes events the live queue and replays what the new leader needs:
// start events of running tasks and unacknowledged results.
func (a *Agent) attach(events *eventQueue) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = events
	select { // a new leader says which jobs are gone (logs.go)
	case a.sweepSignal <- struct{}{}:
	default:
	}
	for _, r := range a.running {
		if r.started != nil {
			a.enqueueLocked(r.started)
		}
	}
	for _, ev := range a.unacked {
		a.enqueueLocked(ev)
	}
}

func (a *Agent) detach(events *eventQueue) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.events == events {
		a.events = nil
	}
}

// enqueueLocked queues an event for the live session, if there is one;
// without one, finished events wait in unacked for the next session.
func (a *Agent) enqueueLocked(ev *pb.TaskEvent) {
	if a.events != nil {
		a.events.push(ev)
	}
}

// eventQueue is one session's outgoing events. It is unbounded, so a burst
// of results never drops an event, and it signals the sender when it has
// something to send.
type eventQueue struct {
	mu    sync.Mutex
	items []*pb.TaskEvent
	ready chan struct{}
	// up carries the session's other messages to the sender (task output).
	up chan *pb.AgentMessage
}

func newEventQueue() *eventQueue {
	return &eventQueue{ready: make(chan struct{}, 1), up: make(chan *pb.AgentMessage, 16)}
}

func (q *eventQueue) push(ev *pb.TaskEvent) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take removes up to max events, oldest first, and re-signals if more wait.
func (q *eventQueue) take(max int) []*pb.TaskEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.items), max)
	out := make([]*pb.TaskEvent, n)
	copy(out, q.items)
	q.items = q.items[n:]
	if len(q.items) == 0 {
		q.items = nil
	} else {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return out
}

func (a *Agent) emit(ev *pb.TaskEvent) {
	boundEvent(ev, limits.Budget{MessageSize: a.cfg.MaxMessageSize})
	a.mu.Lock()
	defer a.mu.Unlock()
	if ev.Kind == "finished" {
		a.unacked[ev.TaskId+"/"+fmt.Sprint(ev.Attempt)] = ev
	}
	a.enqueueLocked(ev)
}

// lastHeard is when the session last received anything from the server
// (monotonic wall time: it judges a live connection, not task timing).
type lastHeard struct{ at atomic.Int64 }

func (h *lastHeard) mark() { h.at.Store(int64(time.Since(processStart))) }
func (h *lastHeard) since() time.Duration {
	return time.Since(processStart) - time.Duration(h.at.Load())
}

var processStart = time.Now()

// boundEvent holds an event to the byte budget: output tails keep their
// last bytes and the error its first, each with a marker saying how much was
// cut; a result over limits.ResultBytes turns the attempt into a failure
// naming the size (readResult refuses such results first; this is the last
// guard before the wire).
func boundEvent(ev *pb.TaskEvent, b limits.Budget) {
	if n := len(ev.Result); n > limits.ResultBytes {
		ev.Result = nil
		ev.Outcome, ev.ExitCode = process.OutcomeFailed, -1
		ev.Error = resultTooLarge(int64(n)).Error()
	}
	ev.StdoutTail = limits.TruncateTail(ev.StdoutTail, b.TailBytes())
	ev.StderrTail = limits.TruncateTail(ev.StderrTail, b.TailBytes())
	ev.Error = limits.TruncateHead(ev.Error, limits.ErrorBytes)
}

// eventSize is an event's encoded size with its field header.
func eventSize(ev *pb.TaskEvent) int { return proto.Size(ev) + 8 }

// sendLoop sends heartbeats, a DeviceUpdate whenever the advertised GPUs
// change, and coalesces queued events into messages of at most the budget's
// batch bytes each. The leader answers every heartbeat; a
// session that hears nothing for two heartbeat intervals is given up (a
// hung or partitioned leader keeps its TCP connection open), so the agent
// moves to the new leader. The interval is the session's latest terms.
func (a *Agent) sendLoop(ctx context.Context, stream pb.AgentService_SessionClient, events *eventQueue, terms *sessionTerms, heard *lastHeard) error {
	every := terms.every()
	tick := time.NewTicker(every)
	spreading := false // the ticker is at a random first beat after new terms
	defer tick.Stop()
	if m := a.drainMessage(); m != nil { // a new session of a draining agent
		if err := stream.Send(m); err != nil {
			return fmt.Errorf("send drain: %w", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.drainSignal:
			if m := a.drainMessage(); m != nil {
				if err := stream.Send(m); err != nil {
					return fmt.Errorf("send drain: %w", err)
				}
			}
		case <-terms.changed:
			// The whole fleet is told at once: the first heartbeat at the
			// new interval comes at a random point of it, so that the
			// fleet's heartbeats stay spread rather than all on one tick.
			every = terms.every()
			tick.Reset(time.Duration(rand.Int64N(int64(every))) + time.Millisecond)
			spreading = true
		case <-tick.C:
			if spreading {
				tick.Reset(every)
				spreading = false
			}
			if d := heard.since(); d > 2*every {
				return fmt.Errorf("%w: nothing from the server for %v (heartbeats every %v)", errServerSilent, d.Round(time.Millisecond), every)
			}
			if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{
				UnixMs: a.cfg.Clock().UnixMilli()}}}); err != nil {
				return fmt.Errorf("send heartbeat: %w", err)
			}
			a.resendStale(events, 4*every)
		case m := <-events.up:
			if err := stream.Send(m); err != nil {
				return fmt.Errorf("send task output: %w", err)
			}
		case <-a.devSignal:
			if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Devices{Devices: a.deviceUpdate()}}); err != nil {
				return fmt.Errorf("send device update: %w", err)
			}
		case <-events.ready:
			batch := events.take(4096)
			budget := limits.Budget{MessageSize: a.cfg.MaxMessageSize}.BatchBytes()
			for _, group := range limits.Split(batch, eventSize, budget) {
				if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.TaskEvents{Events: group}}}); err != nil {
					return fmt.Errorf("send events: %w", err)
				}
			}
		}
	}
}

// resendStale queues again the results that have waited longer than age for
// an acknowledgement: a safety net, since the leader ignores duplicates.
// Each is queued again at most once per age, so a leader that stops
// acknowledging does not make the queue grow with copies.
func (a *Agent) resendStale(events *eventQueue, age time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Clock().UnixMilli()
	cutoff := now - age.Milliseconds()
	for key, ev := range a.unacked {
		if ev.UnixMs < cutoff && a.resent[key] < cutoff {
			a.resent[key] = now
			events.push(ev)
		}
	}
}

// recvLoop acts on what the leader sends. A message that arrives after a
// silence longer than the lease (this agent was frozen, or the network
// stalled) may be stale: the leader has marked the agent down and queued
// its tasks elsewhere, so a task batch read now would run them twice. The
// session ends instead; the next hello reconciles what runs here. A
// Welcome mid-session brings the session's new terms.
func (a *Agent) recvLoop(ctx context.Context, stream pb.AgentService_SessionClient, heard *lastHeard, terms *sessionTerms) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if gap, lease := heard.since(), terms.leaseLength(); lease > 0 && gap > lease {
			return fmt.Errorf("%w: nothing heard for %v, past the %v lease: what the session holds may be stale", errServerSilent, gap.Round(time.Millisecond), lease)
		}
		heard.mark()
		switch msg := m.Msg.(type) {
		case *pb.ServerMessage_Welcome:
			a.log.Info("session terms changed", "lease_ms", msg.Welcome.LeaseMs, "heartbeat_ms", msg.Welcome.HeartbeatMs)
			terms.update(msg.Welcome)
		case *pb.ServerMessage_Batch:
			for _, t := range msg.Batch.Tasks {
				a.start(ctx, t)
			}
		case *pb.ServerMessage_Cancel:
			a.cancelTasks(msg.Cancel)
		case *pb.ServerMessage_Ack:
			a.ack(msg.Ack.Events)
		case *pb.ServerMessage_Warm:
			a.setWarm(msg.Warm.Workers)
		case *pb.ServerMessage_Logs:
			a.onLogs(ctx, msg.Logs)
		}
	}
}

func (a *Agent) ack(events []*pb.TaskEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range events {
		if ev.Kind == "finished" {
			delete(a.unacked, ev.TaskId+"/"+fmt.Sprint(ev.Attempt))
			delete(a.resent, ev.TaskId+"/"+fmt.Sprint(ev.Attempt))
		}
	}
}

func (a *Agent) cancelTasks(c *pb.CancelTasks) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range c.Tasks {
		if r, ok := a.running[t.TaskId]; ok && r.attempt == t.Attempt {
			a.log.Info("cancelling task", "task", t.TaskId, "attempt", t.Attempt, "reason", c.Reason)
			r.cancel()
		}
	}
}

// start runs one assignment unless this attempt is already running or done
// here (a resent batch must not run a task twice).
func (a *Agent) start(_ context.Context, t *pb.TaskAssignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.running[t.TaskId]; ok && r.attempt >= t.Attempt {
		return
	}
	if _, done := a.unacked[t.TaskId+"/"+fmt.Sprint(t.Attempt)]; done {
		return
	}
	// Tasks outlive sessions: they stop on cancellation, not on reconnect.
	rctx, cancel := context.WithCancel(context.Background())
	r := &run{attempt: t.Attempt, cancel: cancel}
	a.running[t.TaskId] = r
	a.acquireLocked(r, t)
	if fn := t.Spec.Function; fn != "" {
		a.callLocked(t, r, fn)
		return
	}
	a.tasksWG.Add(1)
	go func() {
		defer a.tasksWG.Done()
		defer cancel()
		a.execute(rctx, t, r)
	}()
}

func (a *Agent) execute(ctx context.Context, t *pb.TaskAssignment, r *run) {
	sb, err := a.newSandbox(t)
	if err != nil {
		a.finishUnstarted(t, r, err)
		return
	}
	defer func() {
		if err := sb.cleanup(); err != nil {
			a.log.Warn("task cleanup", "task", t.TaskId, "err", err)
		}
	}()
	spec, err := a.processSpec(t, sb)
	if err != nil {
		a.finishUnstarted(t, r, err)
		return
	}
	started := &pb.TaskEvent{TaskId: t.TaskId, Attempt: t.Attempt, Kind: "started", UnixMs: a.cfg.Clock().UnixMilli()}
	a.mu.Lock()
	r.started = started
	a.mu.Unlock()
	a.emit(started)
	endOutput := a.keepOutput(t, &spec)
	res := process.Run(ctx, spec)
	endOutput()
	ev := &pb.TaskEvent{TaskId: t.TaskId, Attempt: t.Attempt, Kind: "finished",
		UnixMs: res.Finished.UnixMilli(), Outcome: res.Outcome, ExitCode: int32(res.ExitCode), Error: res.Err,
		StdoutTail: res.Stdout, StderrTail: res.Stderr}
	if res.Finished.IsZero() {
		ev.UnixMs = a.cfg.Clock().UnixMilli()
	}
	if res.Outcome == process.OutcomeSucceeded {
		if ev.Result, err = readResult(sb.result); err != nil {
			ev.Outcome, ev.Error = process.OutcomeFailed, err.Error()
		}
	}
	a.complete(t, r, ev)
}

// callLocked hands a function call to its worker pool. A call cannot be
// stopped once a worker runs it; a cancelled call still waiting is dropped
// when a worker takes it. The call carries the attempt's TRACEPARENT in
// its request line, and its output is kept like an ordinary attempt's.
func (a *Agent) callLocked(t *pb.TaskAssignment, r *run, fn string) {
	p, ok := a.pools[fn]
	if !ok {
		go a.finishUnstarted(t, r, fmt.Errorf("function %q is not registered on agent %s", fn, a.cfg.ID))
		return
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	a.tasksWG.Add(1)
	endOutput := func() {} // set by Started, in the worker's goroutine, before Done
	p.Submit(worker.Call{ID: t.TaskId + "/" + fmt.Sprint(t.Attempt), Args: t.Spec.Args, Class: int32(t.Class),
		Priority: t.Priority, Timeout: time.Duration(t.Spec.TimeoutMs) * time.Millisecond,
		Traceparent: t.Traceparent, // the attempt's run span, in the job's trace
		Started: func() worker.Output {
			ev := &pb.TaskEvent{TaskId: t.TaskId, Attempt: t.Attempt, Kind: "started", UnixMs: a.cfg.Clock().UnixMilli()}
			a.mu.Lock()
			r.started = ev
			a.mu.Unlock()
			a.emit(ev)
			out, end := a.keepCallOutput(t)
			endOutput = end
			return out
		},
		Done: func(res worker.Result) {
			defer a.tasksWG.Done()
			defer cancel()
			endOutput()
			outcome := res.Outcome
			if runCtx.Err() != nil && outcome != worker.OutcomeSucceeded {
				outcome = process.OutcomeCancelled
			}
			out := limits.TruncateTail(res.Output, limits.Budget{MessageSize: a.cfg.MaxMessageSize}.FunctionOutputBytes())
			a.complete(t, r, &pb.TaskEvent{TaskId: t.TaskId, Attempt: t.Attempt, Kind: "finished",
				UnixMs: a.cfg.Clock().UnixMilli(), Outcome: outcome, Error: res.Error, StdoutTail: out})
		}})
}

// finishUnstarted reports a task that could not even be prepared.
func (a *Agent) finishUnstarted(t *pb.TaskAssignment, r *run, err error) {
	now := a.cfg.Clock().UnixMilli()
	a.complete(t, r, &pb.TaskEvent{TaskId: t.TaskId, Attempt: t.Attempt, Kind: "finished", UnixMs: now,
		Outcome: process.OutcomeFailed, ExitCode: -1, Error: err.Error()})
}

// complete forgets a run and reports how it ended.
func (a *Agent) complete(t *pb.TaskAssignment, r *run, ev *pb.TaskEvent) {
	a.mu.Lock()
	if cur, ok := a.running[t.TaskId]; ok && cur == r {
		delete(a.running, t.TaskId)
	}
	a.releaseLocked(r, ev)
	a.mu.Unlock()
	a.emit(ev)
}

// SelfCommand is the command word that an agent replaces with the path of
// its own executable, so job graphs can call `sched` functions (e.g.
// "@sched encoder encode-chunk ...") wherever the agent is installed.
const SelfCommand = "@sched"

// MaxResultBytes bounds what a task may return in $BANYAN_RESULT; a larger
// result fails the task with the size and the bound.
const MaxResultBytes = limits.ResultBytes

// resultTooLarge is the reason a task with an oversized result fails.
func resultTooLarge(n int64) error {
	return fmt.Errorf("task result is %d bytes, more than the limit of %d (%s)", n, MaxResultBytes,
		limits.FormatBytes(MaxResultBytes))
}

// processSpec builds the process for an assignment: it resolves
// SelfCommand, pins the task to its granted GPUs (GPUEnv), and gives the
// task its identity, its private temp dir and
// result file in its environment (BANYAN_TASK_ID, BANYAN_JOB_ID,
// BANYAN_ATTEMPT, BANYAN_RESULT, TMPDIR, and TRACEPARENT: the W3C trace
// context of the attempt's run span), its user and its cgroup.
func (a *Agent) processSpec(t *pb.TaskAssignment, sb *sandbox) (process.Spec, error) {
	cmd := append([]string(nil), t.Spec.Command...)
	if len(cmd) > 0 && cmd[0] == SelfCommand {
		self, err := os.Executable()
		if err != nil {
			return process.Spec{}, fmt.Errorf("resolve %s: %w", SelfCommand, err)
		}
		cmd[0] = self
	}
	env := make(map[string]string, len(a.cfg.Env)+len(t.Spec.Env)+5)
	for k, v := range a.cfg.Env {
		env[k] = v
	}
	for k, v := range t.Spec.Env {
		env[k] = v
	}
	// A task granted GPUs sees exactly those (its own CUDA_VISIBLE_DEVICES
	// and the agent's are overridden); without grants nothing is set.
	for k, v := range GPUEnv(t.Gpus) {
		env[k] = v
	}
	env["BANYAN_TASK_ID"], env["BANYAN_JOB_ID"] = t.TaskId, t.JobId
	env["BANYAN_ATTEMPT"], env["BANYAN_RESULT"] = fmt.Sprint(t.Attempt), sb.result
	env["TMPDIR"] = sb.tmp
	if t.Traceparent != "" {
		env["TRACEPARENT"] = t.Traceparent // the attempt's run span, in the job's trace
	}
	if u := a.cfg.RunAs; u != nil && int(u.UID) != os.Geteuid() {
		if _, set := env["HOME"]; !set {
			env["HOME"] = sb.dir // the agent's HOME is not the task user's
		}
	}
	if len(a.cfg.StorageRoots) > 0 {
		env["BANYAN_STORAGE_ROOTS"] = strings.Join(a.cfg.StorageRoots, ":")
	}
	spec := process.Spec{Command: cmd, Env: env, Dir: t.Spec.Workdir,
		Timeout: time.Duration(t.Spec.TimeoutMs) * time.Millisecond, Grace: a.cfg.KillGrace,
		TailBytes: a.cfg.TailBytes, Now: a.cfg.Clock, User: a.cfg.RunAs, Cgroup: sb.group}
	if spec.Dir == "" {
		spec.Dir = a.cfg.WorkDir
	}
	if spec.Dir == "" {
		spec.Dir = sb.dir
	}
	return spec, nil
}

// Shutdown stops every running task (SIGTERM, then SIGKILL after the grace)
// and every function worker.
func (a *Agent) Shutdown() {
	a.mu.Lock()
	for _, r := range a.running {
		r.cancel()
	}
	a.mu.Unlock()
	for _, p := range a.pools {
		p.Close()
	}
	a.tasksWG.Wait()
	a.removeTaskDir()
}

// removeTaskDir removes the task directory if the agent created it.
func (a *Agent) removeTaskDir() {
	if a.ownsTaskDir {
		if err := os.RemoveAll(a.taskDir); err != nil {
			a.log.Warn("remove task directory", "err", err)
		}
	}
}
