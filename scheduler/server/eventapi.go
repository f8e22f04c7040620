package server

// The event stream (EventService): the changes of the applied raft log,
// read from this server's event log (package events). It is served by
// whichever server receives it: followers apply the same log, so they
// hold the same events at the same cursors, a moment later.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// eventBatch is how many events a stream takes from the log at once.
	eventBatch = 256
	// caughtUpEvery is how often at most a stream tells its client how
	// far it has caught up, after the first time.
	caughtUpEvery = time.Second
)

// eventTopics are the topics a stream may ask for.
var eventTopics = []string{state.TopicJob, state.TopicTask, state.TopicAgent, state.TopicPool}

type eventService struct {
	pb.UnimplementedEventServiceServer
	s *Server

	backfillOnce sync.Once
	backfill     *backfill
}

// Stream sends the events from the request's cursor on, then follows new
// ones, with a caught_up mark when it reaches the newest (at most once a
// second after the first), until the client ends the call.
func (e *eventService) Stream(req *pb.EventsRequest, stream pb.EventService_StreamServer) error {
	ctx := stream.Context()
	f, err := newEventFilter(req, callerFrom(ctx))
	if err != nil {
		return err
	}
	log := e.s.fsm.Events()
	from := events.Cursor{Index: req.FromIndex, Position: req.FromPosition}
	var sub *events.Sub
	if req.Newest {
		sub, err = log.SubscribeNewest()
	} else {
		sub, err = log.Subscribe(from, e.s.restoredIndex)
	}
	// Older than the ring: follow the ring from its horizon (which may
	// move on meanwhile), and replay the stored log up to there first.
	var old *events.TooOldError
	var replayUntil events.Cursor
	for try := 0; try < 3 && errors.As(err, &old); try++ {
		replayUntil = old.Horizon
		sub, err = log.Subscribe(old.Horizon, e.s.restoredIndex)
	}
	if err != nil {
		return eventStatus(err)
	}
	defer sub.Close()
	if replayUntil != (events.Cursor{}) {
		if err := e.replay(ctx, from, replayUntil, f, stream.Send); err != nil {
			return eventStatus(err)
		}
	}
	return e.pump(ctx, sub, f, stream.Send)
}

// replay sends the events in [from, until) that pass the filter,
// regenerated from the raft log on disk, with a progress mark at once (a
// client takes silence for a hung server) and then about once a second.
func (e *eventService) replay(ctx context.Context, from, until events.Cursor, f *eventFilter,
	send func(*pb.Event) error) error {
	e.backfillOnce.Do(func() { e.backfill = newBackfill(e.s.store, e.s.snaps, e.s.cfg.Defaults) })
	progress := func(index uint64) error {
		return send(&pb.Event{Topic: state.TopicStream, Kind: state.KindProgress, Index: index,
			UnixMs: e.s.cfg.Clock().UnixMilli()})
	}
	if err := progress(max(from.Index, 1) - 1); err != nil {
		return err
	}
	markedAt := time.Now()
	keep := func(ev *pb.Event) error {
		if f.keep(ev) {
			return send(ev)
		}
		return nil
	}
	return e.backfill.replay(ctx, from, until, keep, func(index uint64) error {
		if time.Since(markedAt) < caughtUpEvery {
			return nil
		}
		markedAt = time.Now()
		return progress(index)
	})
}

// pump sends a subscription's events that pass the filter, and a
// caught_up mark the first time it has sent all the server holds (even
// when that is less than the client asked from), then each time it
// catches up to newer entries, at most once per caughtUpEvery.
func (e *eventService) pump(ctx context.Context, sub *events.Sub, f *eventFilter, send func(*pb.Event) error) error {
	var marked uint64
	// The pace of marks is kept on the monotonic clock (it paces I/O and
	// decides nothing); due is when a held-back mark goes out (zero: none).
	var markedAt, due time.Time
	everMarked := false
	for {
		b, err := e.next(ctx, sub, due, everMarked) // the first mark goes out at once
		if err != nil {
			return eventStatus(err)
		}
		for _, ev := range b.Events {
			if f.keep(ev) {
				if err := send(ev); err != nil {
					return err
				}
			}
		}
		if !b.CaughtUp || everMarked && b.LastIndex <= marked {
			continue
		}
		if everMarked && time.Since(markedAt) < caughtUpEvery {
			if due.IsZero() {
				due = markedAt.Add(caughtUpEvery)
			}
			continue
		}
		if err := send(&pb.Event{Topic: state.TopicStream, Kind: state.KindCaughtUp, Index: b.LastIndex,
			UnixMs: e.s.cfg.Clock().UnixMilli()}); err != nil {
			return err
		}
		marked, markedAt, due, everMarked = b.LastIndex, time.Now(), time.Time{}, true
	}
}

// next waits for the next batch (unless wait is false); with a mark held
// back (due set) it waits no longer than due.
func (e *eventService) next(ctx context.Context, sub *events.Sub, due time.Time, wait bool) (events.Batch, error) {
	if due.IsZero() || !wait {
		return sub.Next(ctx, eventBatch, wait)
	}
	wctx, cancel := context.WithDeadline(ctx, due)
	b, err := sub.Next(wctx, eventBatch, true)
	cancel()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return sub.Next(ctx, eventBatch, false)
	}
	return b, err
}

// restoredIndex bounds from above the index of the snapshot the FSM
// restored last, for the event log's horizon when the restore could not
// tell it: raft's applied index, or the newest snapshot stored when that
// is higher (raft moves its applied index only after a snapshot installed
// from the leader is restored).
func (s *Server) restoredIndex() uint64 {
	return max(s.raft.AppliedIndex(), newestSnapshot(s.snaps))
}

// newestSnapshot is the index of the newest snapshot in the store: the one
// raft restores at start, or that it installs from the leader before it
// hands it to the FSM (0 if none or unreadable).
func newestSnapshot(snaps raft.SnapshotStore) uint64 {
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].Index
}

// eventStatus turns an event log error into the call's status.
func eventStatus(err error) error {
	var old *events.TooOldError
	switch {
	case errors.As(err, &old):
		return status.Error(codes.FailedPrecondition, old.Error())
	case errors.Is(err, events.ErrSlow):
		return status.Errorf(codes.ResourceExhausted,
			"%v: the stream was ended; resume from the last event received (sched events --from INDEX.POSITION)", err)
	case errors.Is(err, events.ErrReset):
		return status.Errorf(codes.Unavailable, "%v: resume from the last event received", err)
	case errors.Is(err, errReplay):
		return status.Errorf(codes.DataLoss, "%v", err)
	case errors.Is(err, events.ErrClosed):
		return status.Error(codes.Unavailable, "server shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// eventFilter decides which events a stream sends: those of the topics and
// the pool subtree asked for, that the caller may read (a pool's events
// need read on it; agents' events need cluster read).
type eventFilter struct {
	topics   map[string]bool // nil: all
	pool     string
	c        *caller
	readable map[string]bool // pool -> may read, cached
	agents   bool            // may read agents' events
}

func newEventFilter(req *pb.EventsRequest, c *caller) (*eventFilter, error) {
	f := &eventFilter{pool: strings.TrimSuffix(req.Pool, "/"), c: c, readable: map[string]bool{}}
	for _, t := range req.Topics {
		if !slices.Contains(eventTopics, t) {
			return nil, status.Errorf(codes.InvalidArgument, "unknown event topic %q: want one of %s",
				t, strings.Join(eventTopics, ", "))
		}
		if f.topics == nil {
			f.topics = map[string]bool{}
		}
		f.topics[t] = true
	}
	f.agents = c.allow(acl.ClusterRead, "") == nil
	return f, nil
}

func (f *eventFilter) keep(ev *pb.Event) bool {
	if f.topics != nil && !f.topics[ev.Topic] {
		return false
	}
	if ev.Topic == state.TopicAgent {
		return f.pool == "" && f.agents
	}
	if f.pool != "" && ev.Pool != f.pool && !strings.HasPrefix(ev.Pool, f.pool+"/") {
		return false
	}
	ok, seen := f.readable[ev.Pool]
	if !seen {
		ok = f.c.allow(acl.PoolRead, ev.Pool) == nil
		f.readable[ev.Pool] = ok
	}
	return ok
}

// checkEvents is the ACL rule of EventService.Stream: asking for a pool's
// events needs read on it, asking for agents' events needs cluster read;
// otherwise the stream leaves out what the caller may not read.
func checkEvents(c *caller, _ *state.State, req *pb.EventsRequest) error {
	if req.Pool != "" {
		if err := c.allow(acl.PoolRead, req.Pool); err != nil {
			return err
		}
	}
	if slices.Contains(req.Topics, state.TopicAgent) {
		if err := c.allow(acl.ClusterRead, ""); err != nil {
			return fmt.Errorf("agent events: %w", err)
		}
	}
	return nil
}
