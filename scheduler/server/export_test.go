package server

import "time"

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
