// Package simagent runs many simulated agents in one process. Each one
// speaks the real agent protocol over real gRPC: it opens a session with a
// hello naming its fingerprint and what it runs, follows the welcome's
// heartbeat interval, receives task batches, reports started and finished
// events (coalesced per stream, like the real agent), forgets a finished
// event only once acknowledged, and reconnects (following the leader hint
// of a follower's refusal) when its session ends. Tasks are not run as
// processes: an assigned task completes after a simulated duration.
package simagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banyan-sched/banyan/agent/rotation"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// DurationEnv is the task environment variable that overrides the fleet's
// simulated duration for one task, in milliseconds.
const DurationEnv = "BANYAN_SIM_MS"

// Config configures a fleet of simulated agents.
type Config struct {
	// Servers are scheduler addresses; each agent finds the leader among them.
	Servers []string
	// N is the number of agents.
	N int
	// IDPrefix names the agents IDPrefix-0 ... IDPrefix-(N-1) (default "sim").
	IDPrefix string
	// Capacity is what each agent offers (default 8 cpu, 32 GiB).
	Capacity *pb.Resources
	// Labels are each agent's labels; "hostname" is added per agent.
	Labels map[string]string
	// Duration is how long a task runs; 0 completes it at once. A task's
	// DurationEnv entry overrides it.
	Duration time.Duration
	// AgentsPerConn is how many agents share one gRPC connection (each
	// agent has its own stream). Default 1: one connection per agent, like
	// the real agent.
	AgentsPerConn int
	// OnAssign, when set, is called (from the agent's receive goroutine)
	// for every task the agent receives.
	OnAssign func(Assignment)
	// OnHeartbeatRTT, when set, is called with each heartbeat's round trip.
	OnHeartbeatRTT func(d time.Duration)
	// Credentials, when set, gives each agent its own transport
	// credentials (mutual TLS with a certificate naming the agent), as real
	// agents have. Each agent then dials its own connections: AgentsPerConn
	// must be 1.
	Credentials func(agentID string) (credentials.TransportCredentials, error)
}

// Assignment is one task as a simulated agent received it.
type Assignment struct {
	AgentID string
	// Server is the address of the server whose session delivered it.
	Server string
	Task   *pb.TaskAssignment
	At     time.Time
}

// Stats are the fleet's counters.
type Stats struct {
	Sessions   int64 // sessions opened (welcomes received)
	Connected  int64 // agents with an open session now
	Assigned   int64 // task assignments received (duplicates excluded)
	Finished   int64 // finished events emitted
	Acked      int64 // finished events acknowledged by the leader
	Cancelled  int64 // attempts cancelled by the leader
	Heartbeats int64 // heartbeat acks received
	Refusals   int64 // sessions refused or ended with an error
}

// Fleet is a running set of simulated agents.
type Fleet struct {
	cfg    Config
	agents []*simAgent
	conns  []*grpc.ClientConn
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessions, connected, assigned, finished, acked, cancelled, heartbeats, refusals atomic.Int64
}

// Start dials the servers and starts the agents; they run until ctx ends
// or Stop is called.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("simagent: no servers")
	}
	if cfg.N <= 0 {
		return nil, errors.New("simagent: N must be positive")
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "sim"
	}
	if cfg.Capacity == nil {
		cfg.Capacity = &pb.Resources{CpuMillis: 8000, MemoryBytes: 32 << 30}
	}
	if cfg.AgentsPerConn <= 0 {
		cfg.AgentsPerConn = 1
	}
	if cfg.Credentials != nil && cfg.AgentsPerConn != 1 {
		return nil, errors.New("simagent: agents with credentials of their own cannot share connections (AgentsPerConn must be 1)")
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{cfg: cfg, cancel: cancel}
	// One connection group per AgentsPerConn agents, each with a client
	// connection per server, dialled lazily by gRPC. An agent with a
	// group of its own closes its connection to a server that refused a
	// session (a follower) and dials it afresh, lazily: it holds open only
	// the one its session is on, where 10,000 agents that each tried the
	// followers first would otherwise hold 30,000 files.
	groups := (cfg.N + cfg.AgentsPerConn - 1) / cfg.AgentsPerConn
	groupConns := make([]map[string]*grpc.ClientConn, groups)
	dials := make([]func(addr string) (*grpc.ClientConn, error), groups)
	for g := range groupConns {
		groupConns[g] = map[string]*grpc.ClientConn{}
		creds := insecure.NewCredentials()
		if cfg.Credentials != nil {
			var err error
			if creds, err = cfg.Credentials(cfg.IDPrefix + "-" + strconv.Itoa(g)); err != nil {
				cancel()
				f.closeConns()
				return nil, fmt.Errorf("simagent: credentials of agent %d: %w", g, err)
			}
		}
		dials[g] = func(addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limits.DefaultMessageSize)),
				grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond,
					Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}, MinConnectTimeout: 3 * time.Second}), wirecodec.DialOption())
		}
		for _, addr := range cfg.Servers {
			c, err := dials[g](addr)
			if err != nil {
				cancel()
				f.closeConns()
				return nil, fmt.Errorf("simagent: dial %s: %w", addr, err)
			}
			groupConns[g][addr] = c
			f.conns = append(f.conns, c)
		}
	}
	for i := 0; i < cfg.N; i++ {
		id := cfg.IDPrefix + "-" + strconv.Itoa(i)
		labels := map[string]string{"hostname": id}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		a := &simAgent{f: f, id: id, conns: groupConns[i/cfg.AgentsPerConn],
			owned: cfg.AgentsPerConn == 1, dial: dials[i/cfg.AgentsPerConn],
			fp: &pb.Fingerprint{Hostname: id, Capacity: cfg.Capacity, Labels: labels,
				CpuCores: int32(cfg.Capacity.CpuMillis / 1000), MemoryBytes: cfg.Capacity.MemoryBytes},
			running: map[string]*simTask{}, unacked: map[string]*pb.TaskEvent{}}
		f.agents = append(f.agents, a)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			a.run(ctx)
		}()
	}
	return f, nil
}

// Stop stops every agent and waits for their goroutines. Simulated tasks
// simply stop; nothing is reported for them.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
	f.closeConns()
}

func (f *Fleet) closeConns() {
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	for _, a := range f.agents {
		for _, c := range a.replaced {
			c.Close()
		}
		a.replaced = nil
	}
}

// Stats returns the counters now.
func (f *Fleet) Stats() Stats {
	return Stats{Sessions: f.sessions.Load(), Connected: f.connected.Load(), Assigned: f.assigned.Load(),
		Finished: f.finished.Load(), Acked: f.acked.Load(), Cancelled: f.cancelled.Load(),
		Heartbeats: f.heartbeats.Load(), Refusals: f.refusals.Load()}
}

// WaitConnected waits until n agents hold a session, or ctx ends.
func (f *Fleet) WaitConnected(ctx context.Context, n int) error {
	for {
		if f.connected.Load() >= int64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("simagent: %d of %d agents connected: %w", f.connected.Load(), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Running returns how many simulated tasks run now across the fleet.
func (f *Fleet) Running() int {
	n := 0
	for _, a := range f.agents {
		a.mu.Lock()
		n += len(a.running)
		a.mu.Unlock()
	}
	return n
}

type simTask struct {
	attempt int32
	timer   *time.Timer // nil for tasks that complete at once
	started *pb.TaskEvent
}

type simAgent struct {
	f     *Fleet
	id    string
	fp    *pb.Fingerprint
	conns map[string]*grpc.ClientConn
	// owned: the agent alone uses conns (a group of one), so it may
	// replace them (redial); dial makes one.
	owned bool
	dial  func(addr string) (*grpc.ClientConn, error)
	// replaced holds the connections redial made, for Stop to close.
	replaced []*grpc.ClientConn

	mu      sync.Mutex
	running map[string]*simTask      // task id -> current attempt
	unacked map[string]*pb.TaskEvent // "task/attempt" -> finished event
	events  chan *pb.TaskEvent       // the open session's queue, nil when none
	hbSent  map[int64]time.Time      // heartbeat unix_ms -> when it was sent
}

func eventKey(taskID string, attempt int32) string {
	return taskID + "/" + strconv.Itoa(int(attempt))
}

// run holds sessions until ctx ends, trying the servers in turn and
// following leader hints.
func (a *simAgent) run(ctx context.Context) {
	servers := rotation.New(a.f.cfg.Servers)
	for ctx.Err() == nil {
		addr := servers.Next()
		if a.conns[addr] == nil {
			addr = servers.Next() // a leader hint outside the configured list
		}
		opened, err := a.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if !opened && a.owned {
			a.redial(addr)
		}
		a.f.refusals.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(servers.Ended(addr, opened, err)):
		}
	}
}

// redial closes the agent's connection to addr, which refused a session,
// and puts a fresh one in its place that dials only when next used.
func (a *simAgent) redial(addr string) {
	old := a.conns[addr]
	if old == nil {
		return
	}
	c, err := a.dial(addr)
	if err != nil {
		return // keep the old one
	}
	a.conns[addr] = c
	a.replaced = append(a.replaced, c)
	old.Close()
}

func (a *simAgent) hello() *pb.AgentHello {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := &pb.AgentHello{AgentId: a.id, Fingerprint: a.fp}
	for id, t := range a.running {
		h.Running = append(h.Running, &pb.TaskAssignment{TaskId: id, Attempt: t.attempt})
	}
	for _, ev := range a.unacked {
		if t, ok := a.running[ev.TaskId]; ok && t.attempt == ev.Attempt {
			continue
		}
		h.Running = append(h.Running, &pb.TaskAssignment{TaskId: ev.TaskId, Attempt: ev.Attempt})
	}
	return h
}

func (a *simAgent) session(ctx context.Context, addr string) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewAgentServiceClient(a.conns[addr]).Session(sctx)
	if err != nil {
		return false, err
	}
	if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: a.hello()}}); err != nil {
		return false, err
	}
	first, err := stream.Recv()
	if err != nil {
		return false, err
	}
	w := first.GetWelcome()
	if w == nil {
		return false, errors.New("session did not open with a welcome")
	}
	a.f.sessions.Add(1)
	a.f.connected.Add(1)
	defer a.f.connected.Add(-1)

	events := make(chan *pb.TaskEvent, 8192)
	a.attach(events)
	defer a.detach(events)
	errc := make(chan error, 2)
	intervals := make(chan time.Duration, 1) // a Welcome mid-session: the leader's new heartbeat interval
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		errc <- a.sendLoop(sctx, stream, events, time.Duration(w.HeartbeatMs)*time.Millisecond, intervals)
	}()
	go func() {
		defer wg.Done()
		errc <- a.recvLoop(stream, addr, intervals)
	}()
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	cancel()
	wg.Wait()
	return true, err
}

// attach makes events the live queue and replays what a new leader needs.
func (a *simAgent) attach(events chan *pb.TaskEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = events
	a.hbSent = map[int64]time.Time{}
	for _, t := range a.running {
		if t.started != nil {
			a.enqueueLocked(t.started)
		}
	}
	for _, ev := range a.unacked {
		a.enqueueLocked(ev)
	}
}

func (a *simAgent) detach(events chan *pb.TaskEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.events == events {
		a.events = nil
	}
}

// enqueueLocked queues an event without blocking; what does not fit is
// replayed at the next session (finished events stay in unacked).
func (a *simAgent) enqueueLocked(ev *pb.TaskEvent) {
	if a.events == nil {
		return
	}
	select {
	case a.events <- ev:
	default:
	}
}

func (a *simAgent) sendLoop(ctx context.Context, stream pb.AgentService_SessionClient, events chan *pb.TaskEvent, every time.Duration, intervals <-chan time.Duration) error {
	if every <= 0 {
		every = time.Second
	}
	// Spread the fleet's heartbeats over the interval.
	first := time.NewTimer(time.Duration(fnv(a.id) % uint64(every)))
	defer first.Stop()
	var tick <-chan time.Time
	var ticker *time.Ticker
	spreading := false // the ticker is at a spread first beat after a new interval
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	heartbeat := func() error {
		now := time.Now()
		ms := now.UnixMilli()
		a.mu.Lock()
		if len(a.hbSent) > 64 { // unanswered heartbeats: keep the map bounded
			a.hbSent = map[int64]time.Time{}
		}
		a.hbSent[ms] = now
		a.mu.Unlock()
		return stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{UnixMs: ms}}})
	}
	batch := make([]*pb.TaskEvent, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d := <-intervals:
			if d > 0 {
				every = d
				if ticker != nil { // the fleet was told at once: spread its first beats again
					ticker.Reset(time.Duration(fnv(a.id)%uint64(every)) + time.Millisecond)
					spreading = true
				}
			}
		case <-first.C:
			ticker = time.NewTicker(every)
			tick = ticker.C
			if err := heartbeat(); err != nil {
				return err
			}
		case <-tick:
			if spreading {
				ticker.Reset(every)
				spreading = false
			}
			if err := heartbeat(); err != nil {
				return err
			}
		case ev := <-events:
			batch = append(batch[:0], ev)
		more:
			for len(batch) < 4096 {
				select {
				case ev := <-events:
					batch = append(batch, ev)
				default:
					break more
				}
			}
			out := append([]*pb.TaskEvent(nil), batch...)
			if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.TaskEvents{Events: out}}}); err != nil {
				return err
			}
		}
	}
}

func (a *simAgent) recvLoop(stream pb.AgentService_SessionClient, addr string, intervals chan time.Duration) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch msg := m.Msg.(type) {
		case *pb.ServerMessage_Welcome:
			select { // the latest interval wins
			case <-intervals:
			default:
			}
			intervals <- time.Duration(msg.Welcome.HeartbeatMs) * time.Millisecond
		case *pb.ServerMessage_Batch:
			now := time.Now()
			for _, t := range msg.Batch.Tasks {
				a.start(t, now, addr)
			}
		case *pb.ServerMessage_Cancel:
			a.cancelTasks(msg.Cancel)
		case *pb.ServerMessage_Ack:
			a.ack(msg.Ack.Events)
		case *pb.ServerMessage_HeartbeatAck:
			a.mu.Lock()
			sent, ok := a.hbSent[msg.HeartbeatAck.UnixMs]
			delete(a.hbSent, msg.HeartbeatAck.UnixMs)
			a.mu.Unlock()
			a.f.heartbeats.Add(1)
			if ok && a.f.cfg.OnHeartbeatRTT != nil {
				a.f.cfg.OnHeartbeatRTT(time.Since(sent))
			}
		}
	}
}

func (a *simAgent) durationOf(t *pb.TaskAssignment) time.Duration {
	if v, ok := t.GetSpec().GetEnv()[DurationEnv]; ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return a.f.cfg.Duration
}

// start takes one assignment unless this attempt is already running or
// done here (a resent batch must not run a task twice).
func (a *simAgent) start(t *pb.TaskAssignment, at time.Time, addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.running[t.TaskId]; ok && cur.attempt >= t.Attempt {
		return
	}
	if _, done := a.unacked[eventKey(t.TaskId, t.Attempt)]; done {
		return
	}
	a.f.assigned.Add(1)
	if a.f.cfg.OnAssign != nil {
		a.f.cfg.OnAssign(Assignment{AgentID: a.id, Server: addr, Task: t, At: at})
	}
	st := &simTask{attempt: t.Attempt}
	st.started = &pb.TaskEvent{TaskId: t.TaskId, Attempt: t.Attempt, Kind: "started", UnixMs: at.UnixMilli()}
	a.enqueueLocked(st.started)
	d := a.durationOf(t)
	if d <= 0 {
		a.finishLocked(t.TaskId, t.Attempt, "succeeded")
		return
	}
	a.running[t.TaskId] = st
	id, attempt := t.TaskId, t.Attempt
	st.timer = time.AfterFunc(d, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if cur, ok := a.running[id]; ok && cur == st {
			delete(a.running, id)
			a.finishLocked(id, attempt, "succeeded")
		}
	})
}

func (a *simAgent) finishLocked(taskID string, attempt int32, outcome string) {
	ev := &pb.TaskEvent{TaskId: taskID, Attempt: attempt, Kind: "finished", Outcome: outcome,
		UnixMs: time.Now().UnixMilli()}
	a.unacked[eventKey(taskID, attempt)] = ev
	a.f.finished.Add(1)
	a.enqueueLocked(ev)
}

func (a *simAgent) cancelTasks(c *pb.CancelTasks) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range c.Tasks {
		cur, ok := a.running[t.TaskId]
		if !ok || cur.attempt != t.Attempt {
			continue
		}
		if cur.timer != nil {
			cur.timer.Stop()
		}
		delete(a.running, t.TaskId)
		a.f.cancelled.Add(1)
		a.finishLocked(t.TaskId, t.Attempt, "cancelled")
	}
}

func (a *simAgent) ack(events []*pb.TaskEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range events {
		if ev.Kind != "finished" {
			continue
		}
		k := eventKey(ev.TaskId, ev.Attempt)
		if _, ok := a.unacked[k]; ok {
			delete(a.unacked, k)
			a.f.acked.Add(1)
		}
	}
}

// fnv hashes an id (FNV-1a) to spread heartbeat phases deterministically.
func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
