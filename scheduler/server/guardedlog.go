package server

import (
	"fmt"

	"github.com/banyan-sched/banyan/scheduler/logcache"
)

// guardedLog is the raft log store (logcache in front of raft-boltdb) with
// one rule of the disk guard's: while the data dir is short of space, it
// refuses to delete the newest entries.
//
// A follower whose log conflicts with a new leader's deletes its log's
// suffix, then stores the leader's entries in its place. On a full disk the
// delete can succeed (bolt reuses the pages it frees) and the store then
// fail, and hashicorp/raft (v1.7.3, appendEntries: "leaving
// r.getLastLog() in the wrong state if there was a truncation above") goes
// on counting the deleted entries as its own: it fails to read them for
// every entry the leader sends, and the follower never catches up until it
// restarts. The chaos harness with only full disks and leader kills
// (bench/chaos, -faults disk-full,leader-kill) wedged a follower so in one
// of three runs, and the cluster with it once the leader was killed.
// Refused, the delete changes nothing; the leader sends the entries again,
// and they go in once there is space (the leader backs off between tries,
// up to about 10 s).
//
// Deletes of the oldest entries (log compaction after a snapshot) go on:
// they stop short of the newest while raft keeps trailing logs (its
// default 10,240, which Banyan keeps) and the store is not monotonic
// (raft-boltdb is not; raft would otherwise delete up to the newest after
// a snapshot restore, and that delete would be refused here). A delete and
// a failed store between two of the guard's checks (every 500 ms) can still
// wedge a follower; the reserve is what keeps that window closed.
type guardedLog struct {
	*logcache.Store
	disk *diskGuard
}

// DeleteRange deletes entries min through max, unless max is the newest
// entry and the data dir is short of space.
func (l guardedLog) DeleteRange(min, max uint64) error {
	if err := l.disk.err(); err != nil {
		if last, lerr := l.LastIndex(); lerr != nil || max >= last {
			return fmt.Errorf("delete raft log entries %d-%d: %w", min, max, err)
		}
	}
	return l.Store.DeleteRange(min, max)
}
