// Package logcache keeps the newest raft log entries in memory, in front
// of the log store on disk, bounded by a number of entries and by bytes.
//
// Raft reads back what it has just written: the leader reads each new
// entry to send it to the followers, and a follower reads each entry it
// has just stored to apply it. From raft-boltdb every such read is a bolt
// transaction and a msgpack decode that copies the entry's data: profiles
// of the placement benchmark put those copies at 15% of the leader's
// allocations. Served from memory, the entry is the one already written.
//
// hashicorp/raft has such a cache (raft.NewLogCache), bounded only by a
// number of entries. Banyan's entries are batches: one can carry megabytes
// of jobs (up to the server's message size, 16 MiB by default), and a
// count-bounded cache would pin its whole capacity of them long after they
// were applied. This one also bounds the bytes it holds, and does not keep
// an entry larger than that bound at all.
package logcache

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// entryOverhead is what one cached entry costs besides its data: the Log
// struct and its slot.
const entryOverhead = 128

// Store is a raft.LogStore that answers reads of recent entries from
// memory and passes everything else to the store on disk. The cached
// entries are always a contiguous run of indexes, the newest written.
type Store struct {
	disk     raft.LogStore
	maxBytes int

	mu    sync.RWMutex
	ring  []*raft.Log // entry i in slot i % len(ring)
	lo    uint64      // the oldest cached index, when n > 0
	n     int         // cached entries: lo .. lo+n-1
	bytes int         // their size by entrySize
}

var _ raft.LogStore = (*Store)(nil)
var _ raft.MonotonicLogStore = (*Store)(nil)

// New returns a cache of at most entries entries and maxBytes bytes in
// front of disk.
func New(disk raft.LogStore, entries, maxBytes int) (*Store, error) {
	if entries < 1 || maxBytes < 1 {
		return nil, fmt.Errorf("raft log cache of %d entries and %d bytes: want at least one of each", entries, maxBytes)
	}
	return &Store{disk: disk, maxBytes: maxBytes, ring: make([]*raft.Log, entries)}, nil
}

// entrySize is what an entry counts against the byte bound.
func entrySize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + entryOverhead }

// GetLog returns the entry at idx, from memory when it is cached.
func (s *Store) GetLog(idx uint64, log *raft.Log) error {
	s.mu.RLock()
	if s.n > 0 && idx >= s.lo && idx-s.lo < uint64(s.n) {
		*log = *s.ring[idx%uint64(len(s.ring))]
		s.mu.RUnlock()
		return nil
	}
	s.mu.RUnlock()
	return s.disk.GetLog(idx, log)
}

// StoreLog writes one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs writes the entries to disk and, once they are there, keeps
// copies of them in memory. A copy, because the leader's entry lives
// inside the future of its proposal, and the future holds what the FSM
// returned: keeping the entry itself would keep that too. The data is
// shared: raft neither changes an entry's data after storing it nor reuses
// it.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if err := s.disk.StoreLogs(logs); err != nil {
		return err // the cached run, older than these, is still on disk
	}
	s.mu.Lock()
	for _, l := range logs {
		s.add(l)
	}
	s.mu.Unlock()
	return nil
}

// add caches l as the newest entry. Entries that do not follow the newest
// cached one (raft may leave a gap after restoring a snapshot) start the
// cache again; one larger than the byte bound empties it.
func (s *Store) add(l *raft.Log) {
	if s.n > 0 && l.Index != s.lo+uint64(s.n) {
		s.clear()
	}
	size := entrySize(l)
	if size > s.maxBytes {
		s.clear()
		return
	}
	if s.n == len(s.ring) {
		s.evictOldest()
	}
	if s.n == 0 {
		s.lo = l.Index
	}
	c := *l
	s.ring[l.Index%uint64(len(s.ring))] = &c
	s.n++
	s.bytes += size
	for s.bytes > s.maxBytes {
		s.evictOldest()
	}
}

func (s *Store) evictOldest() {
	slot := s.lo % uint64(len(s.ring))
	s.bytes -= entrySize(s.ring[slot])
	s.ring[slot] = nil
	s.lo++
	s.n--
}

func (s *Store) clear() {
	for s.n > 0 {
		s.evictOldest()
	}
}

// DeleteRange deletes entries min through max, inclusive. The cache is
// emptied first when the range touches it (a follower drops a conflicting
// suffix this way), so that no deleted entry is served from memory.
func (s *Store) DeleteRange(min, max uint64) error {
	s.mu.Lock()
	if s.n > 0 && min < s.lo+uint64(s.n) && max >= s.lo {
		s.clear()
	}
	s.mu.Unlock()
	return s.disk.DeleteRange(min, max)
}

// FirstIndex is the disk store's first index.
func (s *Store) FirstIndex() (uint64, error) { return s.disk.FirstIndex() }

// LastIndex is the disk store's last index.
func (s *Store) LastIndex() (uint64, error) { return s.disk.LastIndex() }

// IsMonotonic says what the disk store says: raft asks it to choose how it
// drops the log after restoring a snapshot.
func (s *Store) IsMonotonic() bool {
	m, ok := s.disk.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
