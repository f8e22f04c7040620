package server

import (
	"errors"
	"strings"
	"testing"
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
