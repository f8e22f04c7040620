// Package events keeps one server's recent state changes and hands them to
// subscribers: the event stream of `sched events`.
//
// The changes come from the applied raft log, never from a second source
// of truth: package state's Apply records what each command changed
// (Result.Changes), the FSM tags each record with its entry's raft index,
// and Append adds them here. Every server applies the same log, so every
// server holds the same events at the same cursors (index, position), and
// a client can resume on any of them.
//
// A Log keeps a bounded ring of the latest events. It is honest about what
// it holds: its horizon is the oldest cursor from which it holds every
// event. A fresh log (a server that started without a snapshot and
// replays its whole raft log) holds everything from the start; after a
// snapshot restore (Reset) it holds what is applied from then on; events
// pushed out of the ring move the horizon on. Subscribing from a cursor
// before the horizon is refused with a TooOldError naming the horizon,
// never answered with a silent gap.
//
// Append never blocks on subscribers. A subscriber that falls more than
// MaxLag events behind the newest is dropped (ErrSlow) while the events it
// still needs are in the ring, so it can resume from its last event.
//
// Concurrency: one mutex guards the ring and the subscriber set; events
// are immutable once appended and shared by every subscriber.
package events

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// Cursor is the place of an event in the log: the raft index of the entry
// that made it and its position among that entry's changes.
type Cursor struct {
	Index    uint64
	Position uint32
}

// CursorOf returns an event's cursor.
func CursorOf(ev *pb.Event) Cursor { return Cursor{Index: ev.Index, Position: ev.Position} }

// Before reports whether c comes before o.
func (c Cursor) Before(o Cursor) bool {
	return c.Index < o.Index || c.Index == o.Index && c.Position < o.Position
}

// After returns the cursor just after c: where a client resumes once it
// has seen the event at c.
func (c Cursor) After() Cursor { return Cursor{Index: c.Index, Position: c.Position + 1} }

// String writes the cursor as index.position.
func (c Cursor) String() string { return fmt.Sprintf("%d.%d", c.Index, c.Position) }

// Defaults of Options.
const (
	DefaultCapacity = 1 << 16
	DefaultMaxLag   = 1 << 14
)

// Options size a Log. Zero values take the defaults.
type Options struct {
	// Capacity is how many events the ring keeps (DefaultCapacity).
	Capacity int
	// MaxLag is how many events a subscriber may be behind the newest
	// before it is dropped (DefaultMaxLag, at most Capacity/2). It is
	// measured before each entry's events are added, so the ring should
	// hold MaxLag plus the events of the largest entry (a submission makes
	// two per task) for a dropped subscriber to be sure to resume.
	MaxLag int
}

// Errors of subscriptions.
var (
	// ErrSlow ends a subscriber that fell more than MaxLag events behind.
	ErrSlow = errors.New("subscriber fell too far behind")
	// ErrReset ends subscribers when the server restored a snapshot: the
	// events between their cursor and the snapshot are not held.
	ErrReset = errors.New("server restored a snapshot")
	// ErrClosed ends subscribers when the log is closed.
	ErrClosed = errors.New("event log closed")
)

// TooOldError refuses a subscription from a cursor the log no longer
// holds (or never held).
type TooOldError struct {
	From    Cursor // what was asked
	Horizon Cursor // the oldest cursor from which every event is held
}

// Error names the oldest index held.
func (e *TooOldError) Error() string {
	return fmt.Sprintf("events from index %d are not held by this server: the oldest index it holds is %d "+
		"(older events were compacted into a snapshot or pushed out of its buffer of recent events)",
		e.From.Index, e.Horizon.Index)
}

// Log is one server's ring of recent events.
type Log struct {
	capacity int
	maxLag   uint64

	mu   sync.Mutex
	ring []*pb.Event // ring[seq % capacity] for seq in [head-n, head)
	head uint64      // sequence number of the next event appended
	n    int         // events held
	// horizon is the oldest cursor from which every event is held or yet
	// to come; unknown after Reset until the next Append or a hint.
	horizon      Cursor
	horizonKnown bool
	last         uint64        // index of the last entry appended (0: none since start or Reset)
	notify       chan struct{} // closed and replaced at every Append
	subs         map[*Sub]struct{}
	closed       bool
}

// New returns an empty log that holds everything from the start.
func New(o Options) *Log {
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	if o.MaxLag <= 0 {
		o.MaxLag = DefaultMaxLag
	}
	o.MaxLag = max(min(o.MaxLag, o.Capacity/2), 1)
	return &Log{capacity: o.Capacity, maxLag: uint64(o.MaxLag), ring: make([]*pb.Event, o.Capacity),
		horizonKnown: true, notify: make(chan struct{}), subs: map[*Sub]struct{}{}}
}

// Capacity is how many events the log holds at most.
func (l *Log) Capacity() int { return l.capacity }

// Append adds the changes of the entry at index (in position order; they
// may be none) and wakes the subscribers. It sets each event's Index; the
// events must not change afterwards. Entries are appended in log order.
//
// evs may be the entry's last events only, as many as the log holds at
// most (state.State.KeepChanges): the first one's Position says how many
// came before. Then nothing older is held, the horizon is that first
// event, and every subscriber is dropped (ErrSlow), as each would be when
// the whole entry pushed its own first events out; they resume from the
// stored log (TooOldError).
func (l *Log) Append(index uint64, evs []*pb.Event) {
	l.mu.Lock()
	if !l.horizonKnown {
		l.horizon, l.horizonKnown = Cursor{Index: index}, true
	}
	l.last = index
	if len(evs) > 0 && evs[0].Position > 0 {
		clear(l.ring)
		l.n = 0
		l.horizon = Cursor{Index: index, Position: evs[0].Position}
		for s := range l.subs {
			l.dropLocked(s, fmt.Errorf("%w: entry %d made more events than the %d held", ErrSlow, index, l.capacity))
		}
	}
	before := l.head
	for _, ev := range evs {
		ev.Index = index
		if l.n == l.capacity {
			old := l.ring[(l.head-uint64(l.n))%uint64(l.capacity)]
			l.horizon = CursorOf(old).After()
			l.n--
		}
		l.ring[l.head%uint64(l.capacity)] = ev
		l.head++
		l.n++
	}
	// A subscriber is measured before this entry's events: one entry may
	// hold many (a large submission), and a reader that kept up must not
	// be dropped for it. One whose next event was pushed out is dropped
	// too (it cannot resume then, and will hear so).
	tail := l.head - uint64(l.n)
	for s := range l.subs {
		if before-s.next > l.maxLag || s.next < tail {
			l.dropLocked(s, fmt.Errorf("%w: more than %d events behind the newest (index %d)", ErrSlow, l.maxLag, index))
		}
	}
	ch := l.notify
	l.notify = make(chan struct{})
	l.mu.Unlock()
	close(ch)
}

// Reset empties the log after the state was replaced by a snapshot of the
// entries up to snapshotIndex (0: not known): it holds the events applied
// from then on. Subscribers are dropped (ErrReset); they may resume, and
// hear a TooOldError if what they need is gone.
func (l *Log) Reset(snapshotIndex uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.ring)
	l.n, l.last, l.horizonKnown = 0, 0, false
	if snapshotIndex > 0 {
		l.horizon, l.horizonKnown = Cursor{Index: snapshotIndex + 1}, true
	}
	for s := range l.subs {
		l.dropLocked(s, ErrReset)
	}
}

// Close drops every subscriber (ErrClosed) and refuses new ones.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for s := range l.subs {
		l.dropLocked(s, ErrClosed)
	}
}

// Horizon returns the oldest cursor from which the log holds every event,
// and whether it is known (it is not between a Reset and the next Append).
func (l *Log) Horizon() (Cursor, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.horizon, l.horizonKnown
}

// Last returns the index of the last entry appended (0 if none since the
// start or the last Reset).
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// dropLocked ends a subscriber with err (under l.mu).
func (l *Log) dropLocked(s *Sub, err error) {
	delete(l.subs, s)
	s.err = err
	close(s.dropped)
}

// Subscribe starts a subscription at from: the first event it returns is
// the first held at or after from. (0, 0) is the start of the log. applied tells, after a Reset and
// before the next Append, the index the restored snapshot holds (the
// horizon is then the entry after it); it may be nil. A cursor before the
// horizon is refused with a *TooOldError.
func (l *Log) Subscribe(from Cursor, applied func() uint64) (*Sub, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if !l.horizonKnown && applied != nil {
		l.horizon, l.horizonKnown = Cursor{Index: applied() + 1}, true
	}
	if !l.horizonKnown {
		return nil, &TooOldError{From: from, Horizon: Cursor{Index: l.last + 1}}
	}
	if from.Before(l.horizon) {
		return nil, &TooOldError{From: from, Horizon: l.horizon}
	}
	s := &Sub{l: l, from: from, next: l.seekLocked(from), dropped: make(chan struct{})}
	l.subs[s] = struct{}{}
	return s, nil
}

// SubscribeNewest starts a subscription after the newest event: it
// returns only events appended from now on.
func (l *Log) SubscribeNewest() (*Sub, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	s := &Sub{l: l, next: l.head, dropped: make(chan struct{})}
	l.subs[s] = struct{}{}
	return s, nil
}

// seekLocked returns the sequence number of the first held event at or
// after c (head if none).
func (l *Log) seekLocked(c Cursor) uint64 {
	lo, hi := l.head-uint64(l.n), l.head
	for lo < hi {
		mid := lo + (hi-lo)/2
		if CursorOf(l.ring[mid%uint64(l.capacity)]).Before(c) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Sub is one subscription. Its methods are for one goroutine.
type Sub struct {
	l       *Log
	from    Cursor
	next    uint64        // sequence number of the next event to return (under l.mu)
	err     error         // why it was dropped (under l.mu)
	dropped chan struct{} // closed when dropped
}

// Batch is what one Next returns.
type Batch struct {
	// Events are the next events, in order; never changed by anyone.
	Events []*pb.Event
	// CaughtUp is set when the batch reaches the newest event: every
	// event of entries up to LastIndex has now been returned.
	CaughtUp  bool
	LastIndex uint64
}

// Next returns up to max events after those already returned, waiting
// for some while there are none. It fails when ctx ends or the
// subscription is dropped (ErrSlow, ErrReset, ErrClosed). When the
// subscriber is caught up and wait is false, it returns an empty batch at
// once instead of waiting.
func (s *Sub) Next(ctx context.Context, max int, wait bool) (Batch, error) {
	for {
		s.l.mu.Lock()
		if s.err != nil {
			err := s.err
			s.l.mu.Unlock()
			return Batch{}, err
		}
		var b Batch
		for s.next < s.l.head && len(b.Events) < max {
			ev := s.l.ring[s.next%uint64(s.l.capacity)]
			s.next++
			if !CursorOf(ev).Before(s.from) {
				b.Events = append(b.Events, ev)
			}
		}
		if s.next == s.l.head {
			b.CaughtUp, b.LastIndex = true, s.l.last
		}
		notify := s.l.notify
		s.l.mu.Unlock()
		if len(b.Events) > 0 || !wait {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return Batch{}, fmt.Errorf("event subscription: %w", context.Cause(ctx))
		case <-s.dropped:
		case <-notify:
		}
	}
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if _, ok := s.l.subs[s]; ok {
		delete(s.l.subs, s)
	}
}
