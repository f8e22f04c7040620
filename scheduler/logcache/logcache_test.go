package logcache

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// disk is an in-memory log store that counts reads and can fail writes.
type disk struct {
	*raft.InmemStore
	reads    atomic.Int64
	failNext atomic.Bool
}

func newDisk() *disk { return &disk{InmemStore: raft.NewInmemStore()} }

func (d *disk) GetLog(idx uint64, l *raft.Log) error {
	d.reads.Add(1)
	return d.InmemStore.GetLog(idx, l)
}

func (d *disk) StoreLogs(logs []*raft.Log) error {
	if d.failNext.Swap(false) {
		return errors.New("no space left on device")
	}
	copies := make([]*raft.Log, len(logs)) // as a store on disk keeps none of the caller's
	for i, l := range logs {
		c := *l
		copies[i] = &c
	}
	return d.InmemStore.StoreLogs(copies)
}

// entries makes entries from..to (inclusive) in term, each with size
// bytes of data that name its index and term.
func entries(from, to, term uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		data := bytes.Repeat([]byte{'.'}, size)
		copy(data, fmt.Sprintf("%d/%d", i, term))
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: data})
	}
	return out
}

// read gets idx and says whether it came from the disk, failing the test
// when the entry is not the one written at idx in term.
func read(t *testing.T, s *Store, d *disk, idx, term uint64) (fromDisk bool) {
	t.Helper()
	before := d.reads.Load()
	var l raft.Log
	if err := s.GetLog(idx, &l); err != nil {
		t.Fatalf("GetLog(%d): %v", idx, err)
	}
	want := fmt.Sprintf("%d/%d", idx, term)
	if l.Index != idx || l.Term != term || !bytes.HasPrefix(l.Data, []byte(want)) {
		t.Fatalf("GetLog(%d) = index %d term %d data %.10q, want %s", idx, l.Index, l.Term, l.Data, want)
	}
	return d.reads.Load() > before
}

// cached lists which of from..to are answered from memory.
func cached(t *testing.T, s *Store, d *disk, from, to, term uint64) []uint64 {
	t.Helper()
	var out []uint64
	for i := from; i <= to; i++ {
		if !read(t, s, d, i, term) {
			out = append(out, i)
		}
	}
	return out
}

func mustNew(t *testing.T, d *disk, n, maxBytes int) *Store {
	t.Helper()
	s, err := New(d, n, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mustMiss fails the test unless idx is found neither in memory nor on
// disk.
func mustMiss(t *testing.T, s *Store, idx uint64, what string) {
	t.Helper()
	var l raft.Log
	if err := s.GetLog(idx, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(%d), %s: %+v, %v; want ErrLogNotFound", idx, what, l, err)
	}
}

func mustStore(t *testing.T, s *Store, logs []*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

func TestCacheKeepsTheNewestEntriesWithinBothBounds(t *testing.T) {
	for _, tc := range []struct {
		name        string
		n, maxBytes int
		count, size int    // entries 1..count, of size bytes of data each
		batch       int    // entries per StoreLogs call
		wantFrom    uint64 // the oldest entry still cached
	}{
		{name: "all fit", n: 16, maxBytes: 1 << 20, count: 10, size: 100, batch: 3, wantFrom: 1},
		{name: "count bound", n: 4, maxBytes: 1 << 20, count: 10, size: 100, batch: 1, wantFrom: 7},
		{name: "count bound, one batch", n: 4, maxBytes: 1 << 20, count: 10, size: 100, batch: 10, wantFrom: 7},
		// 1000 bytes hold three entries of 200+128 bytes (984), not four.
		{name: "byte bound", n: 100, maxBytes: 1000, count: 10, size: 200, batch: 2, wantFrom: 8},
		{name: "both", n: 2, maxBytes: 1000, count: 10, size: 200, batch: 5, wantFrom: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDisk()
			s := mustNew(t, d, tc.n, tc.maxBytes)
			all := entries(1, uint64(tc.count), 1, tc.size)
			for i := 0; i < len(all); i += tc.batch {
				mustStore(t, s, all[i:min(i+tc.batch, len(all))])
			}
			got := cached(t, s, d, 1, uint64(tc.count), 1)
			var want []uint64
			for i := tc.wantFrom; i <= uint64(tc.count); i++ {
				want = append(want, i)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("cached %v, want %v", got, want)
			}
			if s.bytes > tc.maxBytes || s.bytes != len(want)*(tc.size+entryOverhead) {
				t.Fatalf("holds %d bytes for %d entries, bound %d", s.bytes, len(want), tc.maxBytes)
			}
		})
	}
}

func TestEntryLargerThanTheBoundIsNotKept(t *testing.T) {
	d := newDisk()
	s := mustNew(t, d, 16, 1000)
	mustStore(t, s, entries(1, 3, 1, 10))
	mustStore(t, s, entries(4, 4, 1, 5000))
	mustStore(t, s, entries(5, 6, 1, 10))
	if got := cached(t, s, d, 1, 6, 1); fmt.Sprint(got) != "[5 6]" {
		t.Fatalf("cached %v, want [5 6]: the large entry is read from disk and the run starts again after it", got)
	}
	if s.bytes != 2*(10+entryOverhead) {
		t.Fatalf("holds %d bytes", s.bytes)
	}
}

func TestGapStartsTheCacheAgain(t *testing.T) {
	d := newDisk()
	s := mustNew(t, d, 16, 1<<20)
	mustStore(t, s, entries(1, 3, 1, 10))
	// After a snapshot restore raft may go on from a later index.
	mustStore(t, s, entries(100, 102, 2, 10))
	mustMiss(t, s, 50, "in the gap")
	if got := cached(t, s, d, 100, 102, 2); fmt.Sprint(got) != "[100 101 102]" {
		t.Fatalf("cached %v after the gap", got)
	}
	if got := cached(t, s, d, 1, 3, 1); got != nil {
		t.Fatalf("entries before the gap still cached: %v", got)
	}
}

// A follower drops a conflicting suffix and stores the new leader's
// entries in its place: no dropped entry may be served from memory.
func TestDeleteRangeDropsWhatItTouches(t *testing.T) {
	d := newDisk()
	s := mustNew(t, d, 16, 1<<20)
	mustStore(t, s, entries(1, 10, 1, 10))
	if err := s.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, s, 8, "deleted")
	mustStore(t, s, entries(6, 8, 2, 10))
	if got := cached(t, s, d, 6, 8, 2); fmt.Sprint(got) != "[6 7 8]" {
		t.Fatalf("cached %v, want the new term's 6..8", got)
	}
	read(t, s, d, 5, 1)

	// Compacting a prefix below the cached run keeps it.
	if err := s.DeleteRange(1, 5); err != nil {
		t.Fatal(err)
	}
	if got := cached(t, s, d, 6, 8, 2); fmt.Sprint(got) != "[6 7 8]" {
		t.Fatalf("cached %v after compacting below it", got)
	}
	if first, _ := s.FirstIndex(); first != 6 {
		t.Fatalf("first index %d, want 6", first)
	}
	if last, _ := s.LastIndex(); last != 8 {
		t.Fatalf("last index %d, want 8", last)
	}
}

func TestFailedWriteIsNotCached(t *testing.T) {
	d := newDisk()
	s := mustNew(t, d, 16, 1<<20)
	mustStore(t, s, entries(1, 3, 1, 10))
	d.failNext.Store(true)
	if err := s.StoreLogs(entries(4, 5, 1, 10)); err == nil || err.Error() != "no space left on device" {
		t.Fatalf("StoreLogs on a failing disk: %v, want the disk's error", err)
	}
	mustMiss(t, s, 4, "refused by the disk")
	// Raft writes them again; they are cached from there.
	mustStore(t, s, entries(4, 5, 1, 10))
	if got := cached(t, s, d, 4, 5, 1); fmt.Sprint(got) != "[4 5]" {
		t.Fatalf("cached %v", got)
	}
}

// The leader's entries are fields of their proposals' futures, which hold
// the FSM's answer (a submit's job records): the cache must keep neither.
func TestCacheKeepsNoCallersStruct(t *testing.T) {
	type future struct {
		log      raft.Log
		response []byte
	}
	s := mustNew(t, newDisk(), 16, 1<<20)
	f := &future{log: *entries(1, 1, 1, 10)[0], response: make([]byte, 1<<20)}
	collected := make(chan struct{})
	runtime.SetFinalizer(f, func(*future) { close(collected) })
	mustStore(t, s, []*raft.Log{&f.log})
	f = nil
	deadline := time.After(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-collected:
			var l raft.Log
			if err := s.GetLog(1, &l); err != nil || l.Index != 1 {
				t.Fatalf("GetLog(1) = %+v, %v", l, err)
			}
			return
		case <-deadline:
			t.Fatal("the future of a cached entry was never collected: the cache holds it")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestNewRefusesEmptyBounds(t *testing.T) {
	for _, b := range [][2]int{{0, 10}, {10, 0}, {-1, 10}} {
		if _, err := New(newDisk(), b[0], b[1]); err == nil {
			t.Errorf("New(%d entries, %d bytes): no error", b[0], b[1])
		}
	}
}

// Raft reads (replication, apply) while it writes and compacts; run with
// -race.
func TestConcurrentReadsAndWrites(t *testing.T) {
	d := newDisk()
	s := mustNew(t, d, 8, 4000)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var last, compacted atomic.Uint64 // newest written; newest deleted
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := last.Load()
				if n == 0 {
					continue
				}
				var l raft.Log
				err := s.GetLog(n, &l)
				if errors.Is(err, raft.ErrLogNotFound) && n <= compacted.Load() {
					continue // compacted while this reader was away
				}
				if err != nil {
					t.Errorf("GetLog(%d): %v", n, err)
					return
				}
				if l.Index != n {
					t.Errorf("GetLog(%d) returned %d", n, l.Index)
					return
				}
			}
		}()
	}
	for i := uint64(1); i <= 2000; i += 4 {
		if err := s.StoreLogs(entries(i, i+3, 1, 100)); err != nil {
			t.Error(err)
			break
		}
		last.Store(i + 3)
		if i%400 == 1 && i > 100 {
			compacted.Store(i - 50)
			if err := s.DeleteRange(1, i-50); err != nil {
				t.Error(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}
