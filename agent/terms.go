package agent

import (
	"sync/atomic"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// sessionTerms is what the leader last told a session in a Welcome: how
// often to heartbeat and how long a silence the lease allows. The leader
// sends a Welcome again mid-session when its fleet grows past the
// heartbeats it takes (longer terms); the receive loop stores it and the
// send loop moves its ticker.
type sessionTerms struct {
	heartbeat, lease atomic.Int64 // nanoseconds
	changed          chan struct{}
}

func newSessionTerms(w *pb.Welcome) *sessionTerms {
	t := &sessionTerms{changed: make(chan struct{}, 1)}
	t.store(w)
	return t
}

func (t *sessionTerms) store(w *pb.Welcome) {
	t.heartbeat.Store(int64(time.Duration(w.GetHeartbeatMs()) * time.Millisecond))
	t.lease.Store(int64(time.Duration(w.GetLeaseMs()) * time.Millisecond))
}

// update stores new terms and tells the send loop.
func (t *sessionTerms) update(w *pb.Welcome) {
	t.store(w)
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// every is the heartbeat interval (a second if the leader named none).
func (t *sessionTerms) every() time.Duration {
	if d := time.Duration(t.heartbeat.Load()); d > 0 {
		return d
	}
	return time.Second
}

// leaseLength is the lease (0: none named).
func (t *sessionTerms) leaseLength() time.Duration { return time.Duration(t.lease.Load()) }
