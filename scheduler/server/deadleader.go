package server

import (
	"fmt"
	"time"

	"github.com/banyan-sched/banyan/scheduler/deadleader"
	"github.com/hashicorp/raft"
)

// watchForDeadLeader starts the watcher that makes this server stand for
// election as soon as the leader's port refuses connections, instead of
// after raft's heartbeat timeout (scheduler/deadleader says why that is
// safe).
func (s *Server) watchForDeadLeader() {
	w := deadleader.New(s.raft, deadleader.Config{
		Self: raft.ServerID(s.cfg.NodeID),
		Voters: func() ([]raft.ServerID, error) {
			voters, err := s.raftVoters()
			ids := make([]raft.ServerID, len(voters))
			for i, v := range voters {
				ids[i] = v.ID
			}
			return ids, err
		},
		Elect: s.standForElection,
		Log:   s.log.With("part", "dead-leader"),
	})
	s.deadLeader = w
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		w.Run(s.ctx)
	}()
}

// DeadLeaderElections is how many elections this server stood for because
// its leader's port refused connections (scheduler/deadleader).
func (s *Server) DeadLeaderElections() uint64 { return s.deadLeader.Elections() }

// standForElection makes this server's raft stand for election at once:
// it sends raft's leadership-transfer call, TimeoutNow, to itself. Raft
// then asks for votes flagged as a transfer, which the other followers
// grant even while they still count the silent leader as theirs.
func (s *Server) standForElection() error {
	// The watcher looked a moment ago; raft acts on TimeoutNow in any
	// state, so look again (a gap of microseconds remains).
	if err := s.disk.err(); err != nil {
		// It could not write as leader; the next in line stands instead.
		return fmt.Errorf("leaving it to a peer: %w", err)
	}
	if st := s.raft.State(); st != raft.Follower {
		return fmt.Errorf("not a follower any more (%s)", st)
	}
	if since := time.Since(s.raft.LastContact()); since < deadleader.DefaultQuiet {
		return fmt.Errorf("heard from a leader %v ago", since.Round(time.Millisecond))
	}
	voters, err := s.raftVoters()
	if err != nil {
		return err
	}
	self := raft.ServerID(s.cfg.NodeID)
	for _, v := range voters {
		if v.ID != self {
			continue
		}
		req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax,
			ID: []byte(self), Addr: []byte(v.Address)}}
		if err := s.trans.TimeoutNow(self, v.Address, req, &raft.TimeoutNowResponse{}); err != nil {
			return fmt.Errorf("send TimeoutNow to this server (%s): %w", v.Address, err)
		}
		return nil
	}
	return fmt.Errorf("this server (%s) is not a voter", self)
}

// raftVoters returns the voters of the latest raft configuration.
func (s *Server) raftVoters() ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	var voters []raft.Server
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, srv)
		}
	}
	return voters, nil
}
