package server

import (
	"errors"
	"io"
	"testing"

	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
)

// A replay starts from the newest snapshot before the cursor whose
// following entries are still stored, or from the empty state while the
// log starts at 1; otherwise the cursor is refused with the oldest index
// that could be served.
func TestBackfillBase(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  uint64   // the stored log's first index
		snaps  []uint64 // snapshots, oldest first
		from   uint64
		until  uint64
		base   uint64
		oldest uint64 // 0: served
	}{
		{name: "whole log, no snapshot", first: 1, from: 0, until: 50, base: 0},
		{name: "whole log, snapshots after the cursor", first: 1, snaps: []uint64{20, 40}, from: 5, until: 50, base: 0},
		{name: "from a snapshot", first: 1, snaps: []uint64{20, 40}, from: 30, until: 50, base: 20},
		{name: "just after the newest snapshot", first: 1, snaps: []uint64{20, 40}, from: 41, until: 50, base: 40},
		{name: "compacted log", first: 15, snaps: []uint64{20, 40}, from: 5, until: 50, oldest: 21},
		{name: "compacted past the older snapshot", first: 30, snaps: []uint64{20, 40}, from: 25, until: 50, oldest: 41},
		{name: "compacted, after the older snapshot", first: 15, snaps: []uint64{20, 40}, from: 21, until: 50, base: 20},
		{name: "compacted, no snapshot reaches", first: 45, snaps: []uint64{20}, from: 5, until: 50, oldest: 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := raft.NewInmemStore()
			for i := tc.first; i < tc.until+5; i++ {
				if err := logs.StoreLog(&raft.Log{Index: i, Type: raft.LogNoop}); err != nil {
					t.Fatal(err)
				}
			}
			snaps, err := raft.NewFileSnapshotStore(t.TempDir(), 2, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for _, idx := range tc.snaps {
				sink, err := snaps.Create(raft.SnapshotVersionMax, idx, 1, raft.Configuration{}, 1, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := sink.Close(); err != nil {
					t.Fatal(err)
				}
			}
			b := newBackfill(logs, snaps, state.DefaultDefaults)
			bs, err := b.base(events.Cursor{Index: tc.from}, events.Cursor{Index: tc.until})
			var old *events.TooOldError
			switch {
			case tc.oldest != 0:
				if !errors.As(err, &old) || old.Horizon.Index != tc.oldest {
					t.Fatalf("base %v, %v; want refused, oldest %d", bs.index, err, tc.oldest)
				}
			case err != nil || bs.index != tc.base:
				t.Fatalf("base %v, %v; want %d", bs.index, err, tc.base)
			}
		})
	}
}
