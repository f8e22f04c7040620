package server

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/banyan-sched/banyan/agent/rotation"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// leaderLoop is everything a server does only while it leads: the
// scheduling loop, the agents' sessions, the event committer and the lease
// checker. It owns its goroutines and stops them all in stop.
type leaderLoop struct {
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	events chan sessionEvents
	// ready is closed once the state holds everything earlier leaders
	// committed; until then this server serves no reads or writes.
	ready chan struct{}

	// preemptTokens is a token bucket bounding preemptions; only the
	// scheduling goroutine touches it.
	preemptTokens float64
	preemptAt     time.Time
	// peaks remembers what guaranteed pools used lately, so that capacity
	// they give back is held for them a moment (state.UsagePeaks); only
	// the scheduling goroutine touches it.
	peaks *state.UsagePeaks

	// mu guards sessions (and each one's terms), seen, unheard,
	// undelivered and warmSent. Lock order: mu before the FSM's lock.
	mu       sync.Mutex
	sessions map[string]*session
	seen     map[string]time.Time
	// unheard holds the agents up in the state that have not opened a
	// session with this leader since it took over: their lease runs from
	// the takeover and is lengthened by rotation.ReconnectBound, the time
	// an agent may take to find a new leader (see expiredLeases).
	unheard map[string]struct{}
	// undelivered holds, per agent, the attempts (task id -> attempt) this
	// leader committed to it while it had no session here: they were sent
	// to no one, so the agent's next hello has them delivered instead of
	// declared lost (see serveSession).
	undelivered map[string]map[string]int32
	// warmSent is the warm-worker targets each session was last sent
	// (pushWarmLocked); a session absent here has been sent none.
	warmSent map[string]map[string]int32

	// logs matches agents' task output to the reads waiting for it (logs.go).
	logs logRelay
}

type sessionEvents struct {
	sess   *session
	events []*pb.TaskEvent
}

// session is one agent's open stream on the leader.
type session struct {
	agentID string
	out     outbox
	ctx     context.Context
	cancel  context.CancelFunc
	// terms are the heartbeat terms the agent was last told (under the
	// leader loop's mu).
	terms heartbeatTerms
}

// newSession is the session of agentID, open until ctx ends (cancel ends it).
func newSession(ctx context.Context, cancel context.CancelFunc, agentID string) *session {
	return &session{agentID: agentID, out: outbox{ready: make(chan struct{}, 1)}, ctx: ctx, cancel: cancel}
}

// send queues a message for the agent without blocking; a session that
// cannot keep up is closed, and the agent's reconnect reconciles its tasks.
func (s *session) send(m *pb.ServerMessage) {
	if !s.out.put(m) {
		s.cancel()
	}
}

// outboxLimit is how many messages may wait for an agent before its
// session is closed as one that cannot keep up.
const outboxLimit = 1024

// outbox holds a session's messages until its send loop writes them: a
// list as long as what waits, so that a quiet session (most of a large
// fleet's, between heartbeats) holds no buffer. A channel of outboxLimit
// slots was 8 KiB a session, 80 MiB of a leader's live heap with 10,000
// agents.
type outbox struct {
	mu    sync.Mutex
	msgs  []*pb.ServerMessage
	ready chan struct{} // holds a token while msgs may be non-empty
}

// put queues m; false when outboxLimit messages already wait.
func (o *outbox) put(m *pb.ServerMessage) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.msgs) >= outboxLimit {
		return false
	}
	o.msgs = append(o.msgs, m)
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns the messages waiting, oldest first, and empties the outbox.
func (o *outbox) take() []*pb.ServerMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs := o.msgs
	o.msgs = nil
	return msgs
}

func newLeaderLoop(s *Server) *leaderLoop {
	ctx, cancel := context.WithCancel(s.ctx)
	l := &leaderLoop{s: s, ctx: ctx, cancel: cancel, events: make(chan sessionEvents, 4096), ready: make(chan struct{}),
		sessions: map[string]*session{}, seen: map[string]time.Time{}, unheard: map[string]struct{}{},
		undelivered: map[string]map[string]int32{},
		warmSent:    map[string]map[string]int32{}, peaks: state.NewUsagePeaks(s.cfg.ReclaimHold.Milliseconds())}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run()
	}()
	return l
}

func (l *leaderLoop) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *leaderLoop) run() {
	// Apply everything earlier leaders committed before acting on the state.
	if err := l.s.raft.Barrier(10 * time.Second).Error(); err != nil {
		l.s.log.Warn("leader barrier failed", "err", err)
		return
	}
	close(l.ready)
	now := l.s.cfg.Clock()
	l.mu.Lock()
	l.s.fsm.Read(func(st *state.State) {
		for _, id := range st.UpAgents() {
			l.seen[id] = now           // every agent gets a full lease to reconnect,
			l.unheard[id] = struct{}{} // and the time it takes to find this leader
		}
	})
	l.mu.Unlock()
	l.wg.Add(3)
	go func() {
		defer l.wg.Done()
		l.commitEvents()
	}()
	go func() {
		defer l.wg.Done()
		l.gcLoop()
	}()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.autopilot()
	}()
	go func() {
		defer l.wg.Done()
		l.checkLeases()
	}()
	l.schedule()
}

// schedule runs scheduling passes whenever the state changes, and at least
// every 100 ms so that retry backoffs come due.
func (l *leaderLoop) schedule() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := l.s.fsm.Changed()
		for l.pass() {
		}
		select {
		case <-l.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// pass promotes opportunistic jobs that are due, then plans and commits one
// batch of assignments (and the preemptions they need); it reports whether
// any took effect (so the caller plans again at once).
func (l *leaderLoop) pass() bool {
	if l.ctx.Err() != nil || l.s.disk.err() != nil {
		return false // nothing can be committed from a full disk
	}
	began := time.Now() // the pass's duration, for the Observer
	nowT := l.s.cfg.Clock()
	now := nowT.UnixMilli()
	lim := state.DefaultPlanLimits
	lim.PreemptBudget = l.preemptBudget(nowT)
	lim.MinRuntimeMs = l.s.cfg.MinRuntime.Milliseconds()
	var plan *fsmpb.Assign
	var promote, fallback []string
	l.s.fsm.Read(func(st *state.State) {
		if st.QueueLen() == 0 {
			return // nothing to place, promote or fall back
		}
		promote = st.DuePromotions(now)
		fallback = st.DueFallbacks(now)
		lim.Held = st.HeldBack(l.peaks, now)
		plan = st.Plan(now, lim)
	})
	if plan == nil {
		return false
	}
	if len(fallback) > 0 {
		if _, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Fallback{Fallback: &fsmpb.Fallback{TaskIds: fallback}}}); err != nil {
			l.s.log.Warn("commit fallbacks failed", "err", err)
			return false
		}
		l.s.log.Info("tasks not placed within their wait fell back", "task", fallback)
		l.s.observer().FellBack(len(fallback))
		return true
	}
	if len(promote) > 0 {
		if _, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{JobIds: promote}}}); err != nil {
			l.s.log.Warn("commit promotions failed", "err", err)
			return false
		}
		l.s.log.Info("promoted opportunistic jobs to batch", "job", promote)
		return true
	}
	if len(plan.Assignments) == 0 && len(plan.Preemptions) == 0 {
		l.s.observer().SchedulingPass(time.Since(began), 0)
		return false
	}
	r, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}})
	if err != nil {
		l.s.log.Warn("commit assignments failed", "err", err)
		return false
	}
	l.s.observer().SchedulingPass(time.Since(began), len(r.Assigned))
	if n := len(plan.Preemptions); n > 0 {
		l.s.observer().Preempted(n)
		l.preemptTokens -= float64(n)
		victims := make([]string, 0, n)
		for _, p := range plan.Preemptions {
			victims = append(victims, p.GetVictim().GetTaskId())
		}
		l.s.log.Info("preempted tasks", "victims", n, "for", len(plan.Assignments), "task", victims)
	}
	l.s.log.Debug("placed tasks", "planned", len(plan.Assignments), "assigned", len(r.Assigned))
	return len(r.Assigned) > 0
}

// preemptBudget refills the token bucket and returns how many tasks this
// pass may preempt.
func (l *leaderLoop) preemptBudget(now time.Time) int {
	burst := float64(l.s.cfg.PreemptBurst)
	if l.preemptAt.IsZero() {
		l.preemptTokens = burst
	} else {
		l.preemptTokens += now.Sub(l.preemptAt).Seconds() * l.s.cfg.PreemptRate
	}
	l.preemptAt = now
	l.preemptTokens = min(l.preemptTokens, burst)
	return int(l.preemptTokens)
}

// afterApply acts on what a committed command decided: it pushes new
// assignments and cancellations to the agents' sessions.
func (l *leaderLoop) afterApply(r *state.Result) {
	if r.Pool != nil {
		l.mu.Lock()
		l.pushWarmLocked()
		l.mu.Unlock()
	}
	if len(r.RemovedFrom) > 0 {
		l.sendGone(r.RemovedFrom) // their task output goes too (logs.go)
	}
	if len(r.Assigned) == 0 && len(r.Cancels) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	batches := map[string][]*pb.TaskAssignment{}
	l.s.fsm.Read(func(st *state.State) {
		for _, a := range r.Assigned {
			if ta := st.AssignmentFor(a.TaskId, a.Attempt, a.AgentId); ta != nil {
				batches[a.AgentId] = append(batches[a.AgentId], ta)
			}
		}
	})
	for agent, tasks := range batches {
		if sess := l.sessions[agent]; sess != nil {
			l.sendBatches(sess, tasks)
			continue
		}
		if l.undelivered[agent] == nil {
			l.undelivered[agent] = map[string]int32{}
		}
		for _, ta := range tasks {
			l.undelivered[agent][ta.TaskId] = ta.Attempt
		}
	}
	l.sendCancelsLocked(r.Cancels)
}

// sendBatches hands an agent its tasks in as many messages as the byte
// budget needs, so that no message exceeds the maximum however many tasks
// are queued for it (each task spec is bounded by limits.TaskSpecBytes).
func (l *leaderLoop) sendBatches(sess *session, tasks []*pb.TaskAssignment) {
	budget := limits.Budget{MessageSize: l.s.cfg.MaxMessageSize}.BatchBytes()
	for _, group := range limits.Split(tasks, assignmentSize, budget) {
		sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Batch{Batch: &pb.TaskBatch{Tasks: group}}})
	}
}

// assignmentSize is an assignment's encoded size with its field header.
func assignmentSize(t *pb.TaskAssignment) int { return t.SizeVT() + 8 }

// ackOf is what acknowledges an event: its identity without its payload
// (result, tails), so an acknowledgement is never larger than needed.
func ackOf(events []*pb.TaskEvent) []*pb.TaskEvent {
	out := make([]*pb.TaskEvent, len(events))
	for i, ev := range events {
		out[i] = &pb.TaskEvent{TaskId: ev.TaskId, Attempt: ev.Attempt, Kind: ev.Kind}
	}
	return out
}

// pushWarmLocked tells the agent sessions how many warm workers to keep
// per function, spreading the pools' reservations over the agents. Only
// the sessions whose targets changed since they were last told hear
// anything, so its cost follows the agents serving functions, not the
// fleet: it runs on every agent's hello, and a fleet of 10,000 saying hello
// at once must not cost 10,000 squared.
func (l *leaderLoop) pushWarmLocked() {
	var targets map[string]map[string]int32
	l.s.fsm.Read(func(st *state.State) { targets = st.WarmTargets() })
	tell := func(agent string) {
		want := targets[agent]
		sess := l.sessions[agent]
		if sess == nil {
			delete(l.warmSent, agent)
			return
		}
		if sent, ok := l.warmSent[agent]; ok && maps.Equal(sent, want) {
			return
		}
		sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Warm{Warm: &pb.WarmTargets{Workers: want}}})
		if len(want) == 0 {
			delete(l.warmSent, agent) // told none: back to the agent's own
			return
		}
		l.warmSent[agent] = want
	}
	for agent := range targets {
		tell(agent)
	}
	for agent := range l.warmSent {
		if _, ok := targets[agent]; !ok {
			tell(agent)
		}
	}
}

func (l *leaderLoop) sendCancelsLocked(cancels []state.Cancel) {
	byAgent := map[string]*pb.CancelTasks{}
	for _, c := range cancels {
		ct := byAgent[c.AgentID]
		if ct == nil {
			ct = &pb.CancelTasks{Reason: c.Reason, GraceMs: 5000}
			byAgent[c.AgentID] = ct
		}
		ct.Tasks = append(ct.Tasks, &pb.TaskAssignment{TaskId: c.TaskID, Attempt: c.Attempt})
	}
	for agent, ct := range byAgent {
		if sess := l.sessions[agent]; sess != nil {
			sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Cancel{Cancel: ct}})
		}
	}
}

// isReady reports whether the leader has applied all earlier entries.
func (l *leaderLoop) isReady() bool {
	select {
	case <-l.ready:
		return true
	default:
		return false
	}
}

// lastSeen returns when the agent last heartbeated to this leader.
func (l *leaderLoop) lastSeen(agentID string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[agentID]
}

// serveSession runs one agent's session: hello, registration, then
// heartbeats and events up and task batches down.
func (l *leaderLoop) serveSession(stream pb.AgentService_SessionServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil || hello.AgentId == "" || hello.Fingerprint == nil {
		return status.Error(codes.InvalidArgument, "session must open with a hello naming the agent and its fingerprint")
	}
	if err := state.ValidateGPUs(hello.Fingerprint.Gpus); err != nil {
		return status.Errorf(codes.InvalidArgument, "agent %s: %v", hello.AgentId, err)
	}
	known := make([]*fsmpb.Assignment, 0, len(hello.Running))
	knownSet := map[string]int32{}
	for _, r := range hello.Running {
		known = append(known, &fsmpb.Assignment{TaskId: r.TaskId, Attempt: r.Attempt, AgentId: hello.AgentId})
		knownSet[r.TaskId] = r.Attempt
	}
	// Attempts this leader placed on the agent while it had no session were
	// never sent: the hello keeps them (register sends them), where it
	// would otherwise declare them lost. Only those still current there.
	for _, c := range l.pendingFor(hello.AgentId) {
		if _, ok := knownSet[c.TaskID]; !ok {
			known = append(known, &fsmpb.Assignment{TaskId: c.TaskID, Attempt: c.Attempt, AgentId: hello.AgentId})
		}
	}
	r, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
		AgentId: hello.AgentId, Fingerprint: hello.Fingerprint, Known: known}}})
	if err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			// The agent is alive and this leader cannot commit its hello
			// (its data dir is full, see diskGuard): the silence that
			// follows is this server's, not the agent's, and is not
			// counted against its lease while it keeps saying hello.
			l.heard(hello.AgentId)
		}
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	sess := newSession(ctx, cancel, hello.AgentId)
	l.register(sess, knownSet, r.Cancels)
	defer l.unregister(sess)
	l.s.log.Info("agent session open", "agent", hello.AgentId, "running", len(hello.Running))

	// The receive side runs on its own goroutine so that a replaced or
	// closed session ends the handler (and with it the stream) at once; it
	// exits when the stream does.
	go l.recvLoop(sess, stream)
	err = l.sendLoop(sess, stream)
	cancel()
	return err
}

// heard restarts the lease of an agent the leader knows, on a sign of life
// that is not a heartbeat.
func (l *leaderLoop) heard(agentID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[agentID]; ok {
		l.seen[agentID] = l.s.cfg.Clock()
	}
}

// register makes sess the agent's session, tells it the lease, the
// cancellations its hello called for, and the attempts committed to it
// after its hello that it cannot know yet.
func (l *leaderLoop) register(sess *session, known map[string]int32, cancels []state.Cancel) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.sessions[sess.agentID]; old != nil {
		old.cancel()
	}
	l.sessions[sess.agentID] = sess
	delete(l.warmSent, sess.agentID) // a new session has been told nothing
	l.seen[sess.agentID] = l.s.cfg.Clock()
	delete(l.unheard, sess.agentID)
	delete(l.undelivered, sess.agentID) // the hello kept them; sent below as missed
	terms := l.fleetTermsLocked()
	if terms.level > heartbeatTermsFor(len(l.sessions)-1, l.s.cfg.Lease, l.s.cfg.MaxHeartbeatRate).level {
		// This session took the fleet past its heartbeat rate: every
		// session told shorter terms (it came when the fleet was smaller)
		// is told these.
		for _, other := range l.sessions {
			if other != sess && other.terms.level < terms.level {
				other.terms = terms
				other.send(welcome(terms))
			}
		}
	}
	sess.terms = terms
	sess.send(welcome(terms))
	l.sendCancelsLocked(cancels)
	l.pushWarmLocked() // the set of agents serving each function changed
	var missed []*pb.TaskAssignment
	l.s.fsm.Read(func(st *state.State) {
		for _, c := range st.AgentRunning(sess.agentID) {
			if att, ok := known[c.TaskID]; ok && att == c.Attempt {
				continue
			}
			if ta := st.AssignmentFor(c.TaskID, c.Attempt, sess.agentID); ta != nil {
				missed = append(missed, ta)
			}
		}
	})
	l.sendBatches(sess, missed)
}

// pendingFor returns the attempts this leader placed on the agent while it
// had no session, that the state still has there.
func (l *leaderLoop) pendingFor(agentID string) []state.Cancel {
	l.mu.Lock()
	defer l.mu.Unlock()
	pending := l.undelivered[agentID]
	if len(pending) == 0 {
		return nil
	}
	var out []state.Cancel
	l.s.fsm.Read(func(st *state.State) {
		for _, c := range st.AgentRunning(agentID) {
			if att, ok := pending[c.TaskID]; ok && att == c.Attempt {
				out = append(out, c)
			}
		}
	})
	return out
}

func (l *leaderLoop) unregister(sess *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[sess.agentID] == sess {
		delete(l.sessions, sess.agentID)
	}
}

// fleetTermsLocked is the heartbeat terms for the sessions open now.
func (l *leaderLoop) fleetTermsLocked() heartbeatTerms {
	return heartbeatTermsFor(len(l.sessions), l.s.cfg.Lease, l.s.cfg.MaxHeartbeatRate)
}

// welcome is the message that tells a session its terms.
func welcome(t heartbeatTerms) *pb.ServerMessage {
	return &pb.ServerMessage{Msg: &pb.ServerMessage_Welcome{Welcome: &pb.Welcome{
		LeaseMs: t.lease.Milliseconds(), HeartbeatMs: t.heartbeat.Milliseconds()}}}
}

func (l *leaderLoop) sendLoop(sess *session, stream pb.AgentService_SessionServer) error {
	for {
		select {
		case <-sess.ctx.Done():
			return nil
		case <-l.ctx.Done():
			return status.Error(codes.Unavailable, "leadership lost")
		case <-sess.out.ready:
			for _, m := range sess.out.take() {
				if sess.ctx.Err() != nil {
					return nil // closed meanwhile (replaced, or could not keep up)
				}
				if err := stream.Send(m); err != nil {
					return err
				}
			}
		}
	}
}

func (l *leaderLoop) recvLoop(sess *session, stream pb.AgentService_SessionServer) {
	defer sess.cancel()
	for {
		m, err := stream.Recv()
		if err != nil {
			return
		}
		switch msg := m.Msg.(type) {
		case *pb.AgentMessage_Heartbeat:
			if !l.agentUp(sess.agentID) {
				// Marked down while its session stayed open (a frozen
				// agent): end the session, so that the agent says hello
				// again with what it runs; that marks it up and cancels
				// the attempts the state no longer has there.
				l.s.log.Info("agent marked down heartbeats again; asking it to reconnect", "agent", sess.agentID)
				return
			}
			l.mu.Lock()
			l.seen[sess.agentID] = l.s.cfg.Clock()
			l.mu.Unlock()
			sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_HeartbeatAck{HeartbeatAck: &pb.HeartbeatAck{
				UnixMs: msg.Heartbeat.UnixMs}}})
		case *pb.AgentMessage_Events:
			for _, ev := range msg.Events.Events {
				withOutcome(ev)
			}
			select {
			case l.events <- sessionEvents{sess: sess, events: msg.Events.Events}:
			case <-sess.ctx.Done():
				return
			}
		case *pb.AgentMessage_Logs:
			l.onLogsUp(sess, msg.Logs)
		case *pb.AgentMessage_Drain:
			l.s.log.Info("agent asks to be drained (shutting down)", "agent", sess.agentID, "grace_ms", msg.Drain.GraceMs)
			if err := l.drainSelf(sess.agentID, msg.Drain.GraceMs); err != nil {
				l.s.log.Warn("commit agent's own drain failed", "agent", sess.agentID, "err", err)
			}
		case *pb.AgentMessage_Devices:
			// Rare (a GPU's health or offered sessions changed): committed
			// here, in order with this agent's other messages. Tasks on a
			// device now unhealthy are requeued and cancelled by apply.
			if err := state.ValidateGPUs(msg.Devices.GetGpus()); err != nil {
				l.s.log.Warn("device update refused; ending the session", "agent", sess.agentID, "err", err)
				return
			}
			l.logDeviceChanges(sess.agentID, msg.Devices)
			if _, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDevices{AgentDevices: &fsmpb.AgentDevices{
				AgentId: sess.agentID, Update: msg.Devices}}}); err != nil {
				l.s.log.Warn("commit device update failed; ending the session so the agent says hello again",
					"agent", sess.agentID, "err", err)
				return
			}
		}
	}
}

// commitEvents batches task events from every session into one raft entry
// per round, then acknowledges them to their agents. A round stops taking
// messages once it holds the batch budget in bytes: each message is within
// it already (agents split by it), so an entry stays within one message.
func (l *leaderLoop) commitEvents() {
	const maxBatch = 8192
	budget := limits.Budget{MessageSize: l.s.cfg.MaxMessageSize}.BatchBytes()
	for {
		var batch []sessionEvents
		select {
		case <-l.ctx.Done():
			return
		case se := <-l.events:
			batch = append(batch, se)
		}
		n, size := len(batch[0].events), eventsSize(batch[0].events)
	drain:
		for n < maxBatch && size < budget {
			select {
			case se := <-l.events:
				batch = append(batch, se)
				n += len(se.events)
				size += eventsSize(se.events)
			default:
				break drain
			}
		}
		var fresh []sessionEvents // the events that change the state
		var before eventsBefore   // what the Observer needs from before the entry
		l.s.fsm.Read(func(st *state.State) {
			fresh = changingEvents(st, batch)
			before = readEventsBefore(st, fresh)
		})
		if len(fresh) > 0 {
			// The leader decides how failures are classified: entries it
			// proposes classify by exit code (see fsmpb.ReportEvents).
			cmd := &fsmpb.ReportEvents{ClassifyExitCodes: true, ClassifyNvencSessions: true}
			for _, se := range fresh {
				cmd.Agents = append(cmd.Agents, &fsmpb.AgentEvents{AgentId: se.sess.agentID, Events: se.events})
			}
			if _, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: cmd}, ResultArrays: resultArrays(fresh)}); err != nil {
				l.s.log.Warn("commit task events failed; agents will resend", "err", err)
				continue
			}
			l.observeEvents(fresh, before)
		}
		for _, se := range batch {
			se.sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Ack{Ack: &pb.AckEvents{Events: ackOf(se.events)}}})
		}
	}
}

// noOutcome is the error of an attempt whose agent reported it finished
// without saying how.
const noOutcome = "the agent reported the attempt finished without an outcome"

// withOutcome makes an end reported without an outcome (an agent's bug: an
// attempt record without one reads as still running) a failure that says
// so, before it is proposed: entries hold what the leader decided.
func withOutcome(ev *pb.TaskEvent) {
	if ev.Kind == "finished" && ev.Outcome == "" {
		ev.Outcome, ev.ExitCode = "failed", -1
		if ev.Error == "" {
			ev.Error = noOutcome
		} else {
			ev.Error = noOutcome + ": " + ev.Error
		}
	}
}

// changingEvents returns the batch without the events that would change
// nothing (state.EventChanges): copies that agents resent after a new
// session or a late acknowledgement. Committing them again would cost a log
// entry each time, and a large result resent by an agent whose session
// keeps ending on a slow leader would cost it again and again. A session's
// events are copied only when some are dropped.
func changingEvents(st *state.State, batch []sessionEvents) []sessionEvents {
	out := make([]sessionEvents, 0, len(batch))
	for _, se := range batch {
		keep := se.events
		for i, ev := range se.events {
			if st.EventChanges(se.sess.agentID, ev) {
				continue
			}
			keep = append(make([]*pb.TaskEvent, 0, len(se.events)-1), se.events[:i]...)
			for _, ev := range se.events[i+1:] {
				if st.EventChanges(se.sess.agentID, ev) {
					keep = append(keep, ev)
				}
			}
			break
		}
		if len(keep) > 0 {
			out = append(out, sessionEvents{sess: se.sess, events: keep})
		}
	}
	return out
}

// resultArrays reports whether a task of the batch succeeded with a result
// that holds arrays, which its entry must say (Command.result_arrays).
// Results are rare and bounded (limits.ResultBytes), so reading them once
// more here costs little.
func resultArrays(batch []sessionEvents) bool {
	for _, se := range batch {
		for _, ev := range se.events {
			if ev.Kind == "finished" && ev.Outcome == "succeeded" && len(ev.Result) > 0 && state.ResultHasArrays(ev.Result) {
				return true
			}
		}
	}
	return false
}

// eventsSize is the encoded size of one agent message's events.
func eventsSize(events []*pb.TaskEvent) int { return (&pb.TaskEvents{Events: events}).SizeVT() }

// checkLeases marks agents down when they have not heartbeated within the
// lease; their tasks go back to the queue without using a retry. An agent
// with a session has the lease its session was told; one without (its
// session ended, or this leader is new) has the lease of a fleet of the
// agents up, so that a whole fleet reconnecting to a new leader has the
// time its size gives it. An agent this leader has not heard from since it
// took over has rotation.ReconnectBound more: it may still be waiting on a
// silent server (the old leader, frozen or cut off) or backing off, by the
// agents' own rules, and marking it down would run its work twice.
func (l *leaderLoop) checkLeases() {
	tick := time.NewTicker(l.s.cfg.Lease / 8)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-tick.C:
		}
		now := l.s.cfg.Clock()
		l.stopDueDrains(now)
		l.markDown(l.expiredLeases(now))
	}
}

// expiredLease is an agent silent past its lease.
type expiredLease struct {
	agentID string
	lease   time.Duration
	// unheard: the agent never reached this leader, which gave it
	// rotation.ReconnectBound on top of lease.
	unheard bool
}

// reason says why the agent is marked down, for its attempts and the log.
func (e expiredLease) reason() string {
	if e.unheard {
		return fmt.Sprintf("missed its lease of %v and did not reach the new leader within %v more", e.lease, rotation.ReconnectBound)
	}
	return "missed its lease of " + e.lease.String()
}

// expiredLeases returns the agents up whose silence at now is past their
// lease.
func (l *leaderLoop) expiredLeases(now time.Time) []expiredLease {
	var expired []expiredLease
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.fsm.Read(func(st *state.State) {
		up := st.UpAgents()
		fleet := heartbeatTermsFor(len(up), l.s.cfg.Lease, l.s.cfg.MaxHeartbeatRate).lease
		for _, id := range up {
			seen, ok := l.seen[id]
			if !ok { // up in the state (a restored snapshot) but new here
				l.seen[id], l.unheard[id] = now, struct{}{}
				continue
			}
			lease := fleet
			if sess := l.sessions[id]; sess != nil {
				lease = sess.terms.lease
			}
			_, unheard := l.unheard[id] // never with a session: register clears it
			limit := lease
			if unheard {
				limit += rotation.ReconnectBound
			}
			if now.Sub(seen) > limit {
				expired = append(expired, expiredLease{agentID: id, lease: lease, unheard: unheard})
			}
		}
	})
	return expired
}

// leaseDownsInFlight bounds the agent-down commands a lease check has in
// flight at once.
const leaseDownsInFlight = 64

// markDown marks the agents that missed their lease down, their tasks
// going back to the queue. The commands go to raft concurrently, so that
// raft batches them into few log writes: a stall that expires thousands of
// leases at once (a frozen network, a starved host) would otherwise take a
// round trip per agent, seconds of a leader doing little else while the
// agents it dropped say hello again.
func (l *leaderLoop) markDown(expired []expiredLease) {
	sem := make(chan struct{}, leaseDownsInFlight)
	var wg sync.WaitGroup
	for _, e := range expired {
		id, lease, reason := e.agentID, e.lease, e.reason()
		sem <- struct{}{}
		wg.Add(1)
		go func() { // owned by this call: it waits for them below
			defer wg.Done()
			defer func() { <-sem }()
			l.s.log.Warn("agent missed its lease; requeueing its tasks", "agent", id, "lease", lease, "reason", reason)
			if _, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{
				AgentId: id, Reason: reason}}}); err != nil {
				l.s.log.Warn("mark agent down failed", "agent", id, "err", err)
			} else {
				l.s.observer().LeaseMissed(id)
			}
			l.mu.Lock()
			if sess := l.sessions[id]; sess != nil {
				sess.cancel() // a late agent must say hello again (see recvLoop)
			}
			delete(l.undelivered, id) // its attempts were requeued with it
			delete(l.unheard, id)
			l.mu.Unlock()
		}()
	}
	wg.Wait()
	if len(expired) > 0 {
		l.mu.Lock()
		l.pushWarmLocked()
		l.mu.Unlock()
	}
}

// agentUp reports whether the state has the agent up.
func (l *leaderLoop) agentUp(id string) bool {
	up := false
	l.s.fsm.Read(func(st *state.State) {
		if ag, ok := st.Agent(id); ok {
			up = ag.Up()
		}
	})
	return up
}

// logDeviceChanges logs, at warn level, each GPU of an agent's device
// update that is unhealthy, and at info level the sessions each offers.
func (l *leaderLoop) logDeviceChanges(agentID string, u *pb.DeviceUpdate) {
	for _, g := range u.GetGpus() {
		if g.Unhealthy != "" {
			l.s.log.Warn("GPU unhealthy: no new work goes to it, its tasks are requeued", "agent", agentID,
				"gpu", g.Index, "uuid", g.Uuid, "reason", g.Unhealthy)
			continue
		}
		l.s.log.Info("GPU update", "agent", agentID, "gpu", g.Index, "uuid", g.Uuid, "nvenc_sessions", g.EncoderSessions)
	}
}
