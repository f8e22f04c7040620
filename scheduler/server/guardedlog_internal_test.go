package server

import (
	"errors"
	"testing"

	"github.com/banyan-sched/banyan/scheduler/logcache"
	"github.com/hashicorp/raft"
)

func TestGuardedLogKeepsTheSuffixOnAFullDisk(t *testing.T) {
	cache, err := logcache.New(raft.NewInmemStore(), 8, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		if err := cache.StoreLog(&raft.Log{Index: i, Term: 1, Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	free := uint64(0)
	g := newDiskGuard(t.TempDir(), 32<<20)
	g.free = func(string) (uint64, uint64, error) { return free, 1 << 30, nil }
	if _, _, err := g.check(); err != nil {
		t.Fatal(err)
	}
	l := guardedLog{Store: cache, disk: g}

	if err := l.DeleteRange(8, 10); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("suffix delete on a full disk: %v; want it refused with ErrDiskFull", err)
	}
	var e raft.Log
	if last, _ := l.LastIndex(); last != 10 || l.GetLog(8, &e) != nil {
		t.Fatalf("after a refused delete: last index %d, entry 8 %v; want all 10 entries", last, l.GetLog(8, &e))
	}
	if err := l.DeleteRange(1, 3); err != nil {
		t.Fatalf("compaction (the oldest entries) on a full disk: %v; want it done", err)
	}
	if first, _ := l.FirstIndex(); first != 4 {
		t.Fatalf("first index %d after compacting 1-3, want 4", first)
	}

	free = 1 << 30
	if _, _, err := g.check(); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(8, 10); err != nil {
		t.Fatalf("suffix delete with space: %v", err)
	}
	if last, _ := l.LastIndex(); last != 7 {
		t.Fatalf("last index %d after deleting 8-10, want 7", last)
	}
	if _, ok := any(l).(raft.MonotonicLogStore); !ok {
		t.Error("the guarded log lost the cache's MonotonicLogStore")
	}
}
