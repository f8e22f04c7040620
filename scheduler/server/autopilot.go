package server

import (
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Dead-server cleanup ("autopilot", after Consul's and Nomad's, written
// for Banyan): the leader watches raft's own heartbeats to its followers.
// A voter whose heartbeats have failed for Config.DeadServerTimeout is
// removed from the configuration, one at a time, and only when the voters
// still answering are a majority of the configuration without it, so a
// removal never costs the quorum. A removed server that comes back must
// join again.

// DefaultDeadServerTimeout is how long a server may fail heartbeats before
// the leader removes it (Config.DeadServerTimeout; negative disables).
const DefaultDeadServerTimeout = 15 * time.Minute

// deadServers returns the voter to remove now (at most one), or nil. It is
// pure: voters are the configuration's voters, failingSince when each
// failing one stopped answering the leader (self never fails).
func deadServers(now time.Time, voters []string, self string, failingSince map[string]time.Time, timeout time.Duration) []string {
	if timeout <= 0 || len(voters) <= 1 {
		return nil
	}
	healthy := 0
	var dead []string
	for _, v := range voters {
		since, failing := failingSince[v]
		switch {
		case v == self || !failing:
			healthy++
		case now.Sub(since) >= timeout:
			dead = append(dead, v)
		}
	}
	if len(dead) == 0 {
		return nil
	}
	// Longest dead first; ties by id.
	sort.Slice(dead, func(a, b int) bool {
		if sa, sb := failingSince[dead[a]], failingSince[dead[b]]; !sa.Equal(sb) {
			return sa.Before(sb)
		}
		return dead[a] < dead[b]
	})
	after := len(voters) - 1
	if healthy < after/2+1 {
		return nil // removing it would leave the answering voters short of a quorum
	}
	return dead[:1]
}

// autopilot removes dead servers while this server leads.
func (l *leaderLoop) autopilot() {
	timeout := l.s.cfg.DeadServerTimeout
	if timeout == 0 {
		timeout = DefaultDeadServerTimeout
	}
	if timeout < 0 {
		return
	}
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	l.s.raft.RegisterObserver(obs)
	defer l.s.raft.DeregisterObserver(obs)
	failingSince := map[string]time.Time{}
	tick := time.NewTicker(min(time.Second, timeout/4+time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case o := <-ch:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := failingSince[string(d.PeerID)]; !ok {
					since := d.LastContact
					if since.IsZero() {
						since = l.s.cfg.Clock()
					}
					failingSince[string(d.PeerID)] = since
				}
			case raft.ResumedHeartbeatObservation:
				delete(failingSince, string(d.PeerID))
			}
		case <-tick.C:
			servers, err := l.s.raftVoters()
			if err != nil {
				continue
			}
			voters := make([]string, len(servers))
			for i, srv := range servers {
				voters[i] = string(srv.ID)
			}
			for id := range failingSince {
				if !slices.Contains(voters, id) {
					delete(failingSince, id) // removed meanwhile
				}
			}
			for _, id := range deadServers(l.s.cfg.Clock(), voters, l.s.cfg.NodeID, failingSince, timeout) {
				l.s.log.Warn("removing a dead server: its heartbeats have failed past the timeout", "server", id,
					"since", failingSince[id], "timeout", timeout)
				if err := l.s.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
					l.s.log.Warn("remove dead server failed", "server", id, "err", err)
					continue
				}
				delete(failingSince, id)
			}
		}
	}
}
