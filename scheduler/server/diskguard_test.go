package server

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDiskGuard closes below the reserve, says why in the error, and opens
// again when space returns.
func TestDiskGuard(t *testing.T) {
	free := uint64(100 << 20)
	g := newDiskGuard("data", 32<<20)
	g.free = func(string) (uint64, uint64, error) { return free, 1 << 30, nil }
	steps := []struct {
		free         uint64
		low, changed bool
	}{
		{100 << 20, false, false},
		{40 << 20, false, false},
		{31 << 20, true, true},
		{0, true, false},
		{64 << 20, false, true},
	}
	for i, s := range steps {
		free = s.free
		low, changed, err := g.check()
		if err != nil || low != s.low || changed != s.changed {
			t.Fatalf("step %d (%d free): low %v changed %v err %v, want %v %v", i, s.free, low, changed, err, s.low, s.changed)
		}
		err = g.err()
		if s.low != (err != nil) {
			t.Fatalf("step %d: err %v", i, err)
		}
		if err != nil && (!errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "under the 32.0 MiB kept in reserve")) {
			t.Fatalf("step %d: %v", i, err)
		}
	}
}

// TestDiskGuardMeasuresAgainWhenStale: between the watcher's looks, a
// write asks the guard with a measurement older than diskFreshness; the
// guard measures again, refuses the write if the disk filled meanwhile,
// and wakes the watcher so that a leader hands over at once.
func TestDiskGuardMeasuresAgainWhenStale(t *testing.T) {
	free := uint64(100 << 20)
	now := time.Unix(1000, 0)
	g := newDiskGuard("data", 32<<20)
	g.free = func(string) (uint64, uint64, error) { return free, 1 << 30, nil }
	g.now = func() time.Time { return now }
	if low, _, err := g.check(); low || err != nil {
		t.Fatalf("100 MiB free: low %v, %v", low, err)
	}
	free = 1 << 20
	now = now.Add(diskFreshness)
	if err := g.err(); err != nil {
		t.Fatalf("a measurement %v old is used as it is; got %v", diskFreshness, err)
	}
	now = now.Add(time.Millisecond)
	if err := g.err(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a measurement older than %v: got %v, want the disk full", diskFreshness, err)
	}
	select {
	case <-g.filled:
	default:
		t.Fatal("the watcher was not woken when a write found the disk newly full")
	}
	// The watcher's next look still reports the change, once.
	if low, changed, err := g.check(); !low || !changed || err != nil {
		t.Fatalf("the watcher's look: low %v changed %v %v, want true true", low, changed, err)
	}
	if _, changed, _ := g.check(); changed {
		t.Fatal("the same state reported as a change twice")
	}
}
