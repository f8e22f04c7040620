package server

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// ErrDiskFull refuses a write while the data dir is (nearly) full.
var ErrDiskFull = errors.New("data dir is full")

// diskGuard keeps writes off a data dir that is running out of space.
// Raft steps a leader down when it cannot write its log, and the same
// server wins the next election and fails again: leadership flaps and every
// client sees "no leader". Refusing proposals before the disk is full keeps
// the leader a leader (reads go on) and makes writes fail with what is
// wrong; a leader with peers hands leadership to one of them.
type diskGuard struct {
	dir     string
	reserve uint64

	mu        sync.Mutex
	free      func(dir string) (free, total uint64, err error) // statfsFree; tests swap it
	now       func() time.Time                                 // time.Now; tests swap it
	low       bool                                             // the latest measurement
	freeBytes uint64
	measured  time.Time // when (zero: never)
	reported  bool      // low as of the last check (watchDisk logs changes)

	// filled has a value when a measurement found the disk newly full,
	// so that watchDisk acts at once, not at its next look.
	filled chan struct{}
}

// diskFreshness is how old a measurement err may use. watchDisk measures
// twice a second, but a disk can fill between two looks (a copy, another
// tenant's logs), and a leader whose log write fails then steps down with
// no hand-over: its peers wait out raft's heartbeat timeout (0.75-1.5 s)
// before one stands. Measured again when older than this, the guard
// refuses the write and the leader hands over at once. statfs costs
// microseconds; at this age it runs at most 20 times a second.
const diskFreshness = 50 * time.Millisecond

func newDiskGuard(dir string, reserve uint64) *diskGuard {
	return &diskGuard{dir: dir, reserve: reserve, free: statfsFree, now: time.Now, filled: make(chan struct{}, 1)}
}

// statfsFree returns the space available to this process and the size of
// the file system holding dir.
func statfsFree(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// measure measures the free space and returns whether it is under the
// reserve.
func (g *diskGuard) measure() (low bool, err error) {
	g.mu.Lock()
	measure, now := g.free, g.now
	g.mu.Unlock()
	free, _, err := measure(g.dir)
	if err != nil {
		return false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if free < g.reserve && !g.low {
		select {
		case g.filled <- struct{}{}:
		default:
		}
	}
	g.low, g.freeBytes, g.measured = free < g.reserve, free, now()
	return g.low, nil
}

// check measures the free space; changed reports whether the guard went
// from open to closed or back since the last check.
func (g *diskGuard) check() (low, changed bool, err error) {
	if low, err = g.measure(); err != nil {
		return false, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	changed = low != g.reported
	g.reported = low
	return low, changed, nil
}

// err is non-nil while the guard refuses writes. A measurement older than
// diskFreshness is taken again first (if that fails, the last one holds).
func (g *diskGuard) err() error {
	g.mu.Lock()
	stale := g.now().Sub(g.measured) > diskFreshness
	g.mu.Unlock()
	if stale {
		_, _ = g.measure()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.low {
		return nil
	}
	return fmt.Errorf("%w: %s has %s free, under the %s kept in reserve; writes are refused until space is freed (reads go on)",
		ErrDiskFull, g.dir, bytesIEC(g.freeBytes), bytesIEC(g.reserve))
}

// fullDiskStandBack is how many times raft's usual timeout a follower
// whose data dir is full waits without a leader before it stands for
// election. Raft draws each wait from [timeout, 2×timeout), so at three
// times every peer with room has stood before it. Not more: where the
// full server holds the only complete log (its peers lost entries to a
// full disk of their own, or are new), no peer can win, and it stands
// after all, 2.25 to 4.5 s after the leader went silent.
const fullDiskStandBack = 3

// watchDisk checks the data dir twice a second until the server stops and
// logs each change. While the data dir is full, a server with peers keeps
// out of their way: as leader it hands leadership to a peer (at most every
// 5 s), and as follower it stands back in elections (standBack).
//
// A leader cannot write from a full disk, so a full server that wins an
// election only hands leadership on again, and writes stall meanwhile.
// Raft lets any voter stand; what decides who stands first is the timeout
// (and, for a leader whose process is gone, standForElection, which a full
// server declines).
func (s *Server) watchDisk() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var lastTransfer time.Time
	standingBack := false
	for {
		low, changed, err := s.disk.check()
		if err != nil {
			s.log.Warn("cannot measure the data dir's free space", "err", err)
		} else {
			if changed && low {
				s.log.Error("data dir is full; refusing writes", "err", s.disk.err())
			} else if changed {
				s.log.Info("data dir has space again; taking writes")
			}
			leader := s.IsLeader()
			full := low && s.voters() > 1 // full, with peers to make way for
			standingBack = s.standBack(full && !leader, standingBack)
			if full && leader && time.Since(lastTransfer) > 5*time.Second {
				lastTransfer = time.Now()
				if err := s.raft.LeadershipTransfer().Error(); err != nil {
					s.log.Warn("could not hand leadership to a peer", "err", err)
				} else {
					s.log.Warn("handed leadership to a peer: this server's data dir is full")
				}
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.disk.filled: // a write found the disk full: hand over now
		}
	}
}

// standBack sets raft's heartbeat and election timeouts to
// fullDiskStandBack times raftTimeout when want is true, and back to
// raftTimeout when it is false, if that differs from was; it returns what
// is now in effect. A leader's heartbeats go every tenth of its heartbeat
// timeout, so the caller wants it only while this server follows.
func (s *Server) standBack(want, was bool) bool {
	if want == was {
		return was
	}
	rc := s.raft.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = raftTimeout, raftTimeout
	if want {
		rc.HeartbeatTimeout, rc.ElectionTimeout = fullDiskStandBack*raftTimeout, fullDiskStandBack*raftTimeout
	}
	if err := s.raft.ReloadConfig(rc); err != nil {
		s.log.Warn("could not change raft's election timeouts for the data dir's space", "err", err)
		return was
	}
	if want {
		s.log.Warn("standing back in elections while the data dir is full", "timeout", rc.HeartbeatTimeout)
	} else {
		s.log.Info("standing in elections as usual", "timeout", rc.HeartbeatTimeout)
	}
	return want
}

// voters counts the voters in the raft configuration.
func (s *Server) voters() int {
	voters, err := s.raftVoters()
	if err != nil {
		return 0
	}
	return len(voters)
}

// bytesIEC formats n bytes as KiB/MiB/GiB.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
