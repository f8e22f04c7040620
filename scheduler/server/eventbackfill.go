package server

// Serving events older than the event log's ring: the raft log still on
// disk holds the entries, and the snapshot store a state to replay them
// from. Replaying them through a scratch state gives the very events the
// servers recorded (Apply is deterministic), so a stream can start before
// the ring's horizon as long as the entries are kept. Nothing here touches
// the live state.

import (
	"context"
	"errors"
	"fmt"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
)

// backfill replays stored raft entries to regenerate their events.
type backfill struct {
	logs     raft.LogStore
	snaps    raft.SnapshotStore
	defaults state.Defaults
	// sem lets one replay run at a time: each holds a copy of the state.
	sem chan struct{}
}

func newBackfill(logs raft.LogStore, snaps raft.SnapshotStore, d state.Defaults) *backfill {
	return &backfill{logs: logs, snaps: snaps, defaults: d, sem: make(chan struct{}, 1)}
}

// replayBase is where a replay starts: a snapshot, or the empty state
// before index 1 (meta nil).
type replayBase struct {
	index uint64
	meta  *raft.SnapshotMeta
}

// base picks the newest base from which the stored log reaches from; with
// none it returns a *events.TooOldError naming the oldest index it could
// serve (until when it can serve nothing older than the ring).
func (b *backfill) base(from, until events.Cursor) (replayBase, error) {
	first, err := b.logs.FirstIndex()
	if err != nil {
		return replayBase{}, fmt.Errorf("read the raft log's first index: %w", err)
	}
	metas, err := b.snaps.List()
	if err != nil {
		return replayBase{}, fmt.Errorf("list snapshots: %w", err)
	}
	bases := make([]replayBase, 0, len(metas)+1)
	for _, m := range metas { // newest first
		bases = append(bases, replayBase{index: m.Index, meta: m})
	}
	bases = append(bases, replayBase{})
	last := lastIndexBefore(until)
	oldest := until
	for _, bs := range bases {
		if covered := first != 0 && first <= bs.index+1 || bs.index+1 > last; !covered {
			continue // the entries after it are gone
		}
		if bs.index < max(from.Index, 1) {
			return bs, nil
		}
		oldest = events.Cursor{Index: bs.index + 1}
	}
	return replayBase{}, &events.TooOldError{From: from, Horizon: oldest}
}

// replay sends through emit, in order, the events of the stored entries
// with cursors in [from, until), and tells done each entry it finished.
func (b *backfill) replay(ctx context.Context, from, until events.Cursor, emit func(*pb.Event) error,
	done func(index uint64) error) error {
	select {
	case b.sem <- struct{}{}:
		defer func() { <-b.sem }()
	case <-ctx.Done():
		return fmt.Errorf("wait to replay the raft log: %w", context.Cause(ctx))
	}
	bs, err := b.base(from, until)
	if err != nil {
		return err
	}
	st, err := b.load(bs)
	if err != nil {
		return err
	}
	st.RecordChanges(true)
	for i, last := bs.index+1, lastIndexBefore(until); i <= last; i++ {
		if i%256 == 0 && ctx.Err() != nil {
			return fmt.Errorf("replay the raft log: %w", context.Cause(ctx))
		}
		changes, err := b.apply(st, i)
		if err != nil {
			return err
		}
		for _, ev := range changes {
			ev.Index = i
			c := events.CursorOf(ev)
			if c.Before(from) || !c.Before(until) {
				continue
			}
			if err := emit(ev); err != nil {
				return err
			}
		}
		if err := done(i); err != nil {
			return err
		}
	}
	return nil
}

// lastIndexBefore is the last entry holding events before c.
func lastIndexBefore(c events.Cursor) uint64 {
	if c.Position == 0 {
		return c.Index - min(c.Index, 1)
	}
	return c.Index
}

// load returns the state a replay starts from.
func (b *backfill) load(bs replayBase) (*state.State, error) {
	if bs.meta == nil {
		return state.New(b.defaults), nil
	}
	_, rc, err := b.snaps.Open(bs.meta.ID)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %w", bs.meta.ID, err)
	}
	defer rc.Close()
	st, err := state.ReadSnapshot(rc, b.defaults)
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", bs.meta.ID, err)
	}
	return st, nil
}

// errReplay wraps an entry a replay cannot apply (as the FSM would halt).
var errReplay = errors.New("cannot replay the raft log")

// apply applies the stored entry at index to st, as the FSM did, and
// returns its changes.
func (b *backfill) apply(st *state.State, index uint64) ([]*pb.Event, error) {
	var l raft.Log
	if err := b.logs.GetLog(index, &l); err != nil {
		return nil, fmt.Errorf("%w: read entry %d: %w", errReplay, index, err)
	}
	if l.Type != raft.LogCommand {
		return nil, nil
	}
	cmd := &fsmpb.Command{}
	if err := wirecodec.Unmarshal(l.Data, cmd); err != nil {
		return nil, fmt.Errorf("%w: entry %d: %w", errReplay, index, err)
	}
	if cmd.Cmd == nil || len(cmd.ProtoReflect().GetUnknown()) > 0 {
		return nil, fmt.Errorf("%w: entry %d: %w", errReplay, index, state.ErrUnknownCommand)
	}
	r := st.Apply(cmd)
	if errors.Is(r.Err, state.ErrUnknownCommand) {
		return nil, fmt.Errorf("%w: entry %d: %w", errReplay, index, r.Err)
	}
	return r.Changes, nil
}
