package server

// Hooks for the observability edge (scheduler/metrics): the leader tells
// an Observer what it did, and Ready/RaftIndexes say how far this server
// has applied the log. The server itself keeps no metrics.

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Observer is told what the leader does. Its methods are called on the
// leader's goroutines and must return quickly and never block (update a
// counter, observe a histogram).
type Observer interface {
	// SchedulingPass reports one pass that had queued work: how long it
	// took (planning and committing) and how many tasks it placed.
	SchedulingPass(took time.Duration, placed int)
	// Preempted reports preemptions committed by a pass.
	Preempted(n int)
	// FellBack reports tasks handed to their fallback after waiting too long.
	FellBack(n int)
	// TaskStarted reports a task's first attempt to start: the job's class
	// ("latency", "batch", "opportunistic") and the time from the job's
	// submission to the start.
	TaskStarted(class string, wait time.Duration)
	// TaskFinished reports an attempt an agent finished: its outcome
	// ("succeeded", "failed", ...) and failure class ("" on success).
	TaskFinished(outcome, failureClass string)
	// LeaseMissed reports an agent marked down for missing its lease.
	LeaseMissed(agentID string)
}

// nopObserver is the Observer of a server configured without one.
type nopObserver struct{}

func (nopObserver) SchedulingPass(time.Duration, int) {}
func (nopObserver) Preempted(int)                     {}
func (nopObserver) FellBack(int)                      {}
func (nopObserver) TaskStarted(string, time.Duration) {}
func (nopObserver) TaskFinished(string, string)       {}
func (nopObserver) LeaseMissed(string)                {}

// tracer makes this server's own spans (commit, place, run).
func (s *Server) tracer() trace.Tracer {
	return tracing.ProviderOr(s.cfg.TracerProvider).Tracer(tracing.TracerName)
}

// observer returns the configured Observer or one that does nothing.
func (s *Server) observer() Observer {
	if s.cfg.Observer == nil {
		return nopObserver{}
	}
	return s.cfg.Observer
}

// ClassName is the label a job class gets in metrics and logs:
// "latency", "batch", "opportunistic" (or "unspecified").
func ClassName(c pb.JobClass) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "JOB_CLASS_"))
}

// RaftIndexes are how far this server's raft log reaches.
type RaftIndexes struct {
	// Applied is the last index applied to the state machine.
	Applied uint64
	// Commit is the last index this server knows committed.
	Commit uint64
	// Last is the last index in this server's log.
	Last uint64
}

// RaftIndexes returns this server's applied, commit and last log indexes.
func (s *Server) RaftIndexes() RaftIndexes {
	return RaftIndexes{Applied: s.raft.AppliedIndex(), Commit: s.raft.CommitIndex(), Last: s.raft.LastIndex()}
}

// SnapshotInfo describes a raft snapshot on disk.
type SnapshotInfo struct {
	// Index is the last log index the snapshot includes.
	Index uint64
	// Size is its size in bytes.
	Size int64
}

// LatestSnapshot returns this server's latest snapshot; ok is false when
// it has none (or the store cannot be listed).
func (s *Server) LatestSnapshot() (info SnapshotInfo, ok bool) {
	metas, err := s.snaps.List()
	if err != nil || len(metas) == 0 {
		return SnapshotInfo{}, false
	}
	return SnapshotInfo{Index: metas[0].Index, Size: metas[0].Size}, true
}

// ErrNoLeader is why a server without a known leader is not ready.
var ErrNoLeader = errors.New("no leader known")

// Ready returns nil when this server is ready to serve: it knows a leader
// and has applied the log up to the commit index (a leader: has also
// applied everything earlier leaders committed). Otherwise it says why.
//
// Under a steady stream of writes the commit index is nearly always a few
// entries ahead of the applied one, so "up to the commit index" means: up
// to the commit index now, or up to the one this server saw readyGrace ago
// (it keeps up); a server replaying a long log is not ready.
func (s *Server) Ready() error {
	if s.raft.State() == raft.Leader {
		if l := s.currentLeader(); l == nil || !l.isReady() {
			return errors.New("leader still applying earlier terms' entries")
		}
	} else if s.LeaderAddr() == "" {
		return ErrNoLeader
	}
	if ix := s.RaftIndexes(); !s.applyWatch.caughtUp(s.cfg.Clock(), ix.Applied, ix.Commit, readyGrace) {
		return fmt.Errorf("applied index %d behind commit index %d", ix.Applied, ix.Commit)
	}
	if err := s.fsm.Halt(); err != nil {
		return fmt.Errorf("halted: %w", err)
	}
	return nil
}

// eventKey names one attempt of a task.
type eventKey struct {
	task    string
	attempt int32
}

// eventsBefore is what observeEvents needs to know from before a batch of
// events was applied: which tasks had never started, and which attempts
// had no outcome yet. With it each task's first start and each attempt's
// outcome is reported once, however often an agent resends an event.
type eventsBefore struct {
	neverStarted map[string]bool
	open         map[eventKey]bool
}

// readEventsBefore reads eventsBefore for batch under the state's read lock.
func readEventsBefore(st *state.State, batch []sessionEvents) eventsBefore {
	b := eventsBefore{neverStarted: map[string]bool{}, open: map[eventKey]bool{}}
	for _, se := range batch {
		for _, ev := range se.events {
			if ev.Kind != "started" && ev.Kind != "finished" {
				continue
			}
			if f, _, _, ok := st.FirstStart(ev.TaskId); ok && f {
				b.neverStarted[ev.TaskId] = true
			}
			if ev.Kind == "finished" {
				if a := st.AttemptRecord(ev.TaskId, ev.Attempt); a != nil && a.Outcome == "" {
					b.open[eventKey{ev.TaskId, ev.Attempt}] = true
				}
			}
		}
	}
	return b
}

// observeEvents reports, after a batch of events was applied, the first
// starts and the outcomes that the batch recorded.
func (l *leaderLoop) observeEvents(batch []sessionEvents, before eventsBefore) {
	obs := l.s.observer()
	type start struct {
		class string
		wait  time.Duration
	}
	var starts []start
	var finished [][2]string
	l.s.fsm.Read(func(st *state.State) {
		for _, se := range batch {
			for _, ev := range se.events {
				a := st.AttemptRecord(ev.TaskId, ev.Attempt)
				if a == nil || a.AgentId != se.sess.agentID {
					continue
				}
				if before.neverStarted[ev.TaskId] && a.StartedUnixMs != 0 {
					delete(before.neverStarted, ev.TaskId)
					_, submitted, class, _ := st.FirstStart(ev.TaskId)
					wait := time.Duration(max(a.StartedUnixMs-submitted, 0)) * time.Millisecond
					starts = append(starts, start{ClassName(class), wait})
				}
				k := eventKey{ev.TaskId, ev.Attempt}
				if ev.Kind == "finished" && before.open[k] && a.Outcome != "" {
					delete(before.open, k)
					finished = append(finished, [2]string{a.Outcome, a.FailureClass})
				}
			}
		}
	})
	for _, s := range starts {
		obs.TaskStarted(s.class, s.wait)
	}
	for _, f := range finished {
		obs.TaskFinished(f[0], f[1])
	}
}

// traceEnded emits the place and run spans of every attempt that a
// command this server proposed ended (whatever ended it: the agent's
// report, a cancel, a lost lease, a preemption): its Result's Ended.
func (s *Server) traceEnded(r *state.Result) {
	if _, off := tracing.ProviderOr(s.cfg.TracerProvider).(noop.TracerProvider); off {
		return // what a server without OTEL_* variables runs with: spare the read lock
	}
	if len(r.Ended) == 0 {
		return
	}
	var spans []tracing.Attempt
	s.fsm.Read(func(st *state.State) {
		for _, e := range r.Ended {
			if a := st.AttemptRecord(e.TaskID, e.Attempt); a != nil {
				if sp, ok := attemptSpans(st, e.TaskID, a); ok {
					spans = append(spans, sp)
				}
			}
		}
	})
	tr := s.tracer()
	for _, sp := range spans {
		tracing.EmitAttempt(s.ctx, tr, sp)
	}
}

// attemptSpans is what the spans of a finished attempt of task are made
// from; ok is false when its job has no trace.
func attemptSpans(st *state.State, task string, a *pb.Attempt) (tracing.Attempt, bool) {
	t, ok := st.Task(task)
	if !ok {
		return tracing.Attempt{}, false
	}
	j, ok := st.Job(t.PB.JobId)
	if !ok || j.PB.TraceId == "" {
		return tracing.Attempt{}, false
	}
	return tracing.Attempt{TraceID: j.PB.TraceId, ParentSpanID: j.PB.TraceSpanId, JobID: j.PB.Id, TaskID: task,
		Attempt: a.Number, AgentID: a.AgentId, QueuedMs: a.QueuedUnixMs, PlacedMs: a.PlacedUnixMs,
		StartedMs: a.StartedUnixMs, FinishedMs: a.FinishedUnixMs, Outcome: a.Outcome, FailureClass: a.FailureClass}, true
}

// readyGrace is how far behind the commit index a ready server's applied
// index may be, in time: what was committed that long ago must be applied.
const readyGrace = time.Second

// applyWatch remembers the commit index over the last readyGrace, so that
// Ready can tell a server that keeps up from one that falls behind.
type applyWatch struct {
	mu      sync.Mutex
	samples []commitSample // oldest first
}

type commitSample struct {
	at     time.Time
	commit uint64
}

// caughtUp records (now, commit) and reports whether applied reaches
// commit, or the commit index of the newest sample at least grace old.
func (w *applyWatch) caughtUp(now time.Time, applied, commit uint64, grace time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.samples); n == 0 || now.Sub(w.samples[n-1].at) >= grace/20 {
		w.samples = append(w.samples, commitSample{at: now, commit: commit})
	}
	old := -1 // the newest sample at least grace old
	for i, smp := range w.samples {
		if now.Sub(smp.at) < grace {
			break
		}
		old = i
	}
	if old > 0 {
		w.samples = append(w.samples[:0], w.samples[old:]...)
		old = 0
	}
	return applied >= commit || (old == 0 && applied >= w.samples[0].commit)
}
