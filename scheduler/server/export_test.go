package server

import (
	"time"

	"github.com/hashicorp/raft"
)

// RaftHeartbeatTimeout is the heartbeat timeout raft uses now: raised
// while the server stands back for a full data dir.
func (s *Server) RaftHeartbeatTimeout() time.Duration {
	return s.raft.ReloadableConfig().HeartbeatTimeout
}

// SetDiskReserve changes the free space the data dir must keep; the guard
// acts on it at its next check.
func (s *Server) SetDiskReserve(n uint64) {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	s.disk.reserve = n
}

// RaftTerm is raft's current term.
func (s *Server) RaftTerm() uint64 { return s.raft.CurrentTerm() }

// TransferLeadershipTo hands this leader's leadership to to.
func (s *Server) TransferLeadershipTo(to *Server) error {
	return s.raft.LeadershipTransferToServer(raft.ServerID(to.cfg.NodeID), raft.ServerAddress(to.addr)).Error()
}

// Config is the server's configuration, as it started with.
func (s *Server) Config() Config { return s.cfg }
