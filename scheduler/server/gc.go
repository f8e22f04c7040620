package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
)

// gcInterval is how often the leader removes the finished jobs retention
// no longer keeps.
const gcInterval = 30 * time.Second

// retention is the server's retention, with the defaults filled in.
func (s *Server) retention() state.Retention {
	r := s.cfg.Retention
	if r == (state.Retention{}) {
		return state.DefaultRetention
	}
	return r
}

// gcLoop runs retention every gcInterval while this server leads.
func (l *leaderLoop) gcLoop() {
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if n, err := l.s.collectGarbage(l.s.retention()); err != nil {
			l.s.log.Warn("removing finished jobs failed", "err", err)
		} else if n > 0 {
			l.s.log.Info("removed finished jobs past retention", "jobs", n)
		}
	}
}

// collectGarbage commits the removal of every finished job r no longer
// keeps, GCBatch jobs per raft entry, and returns how many went.
func (s *Server) collectGarbage(r state.Retention) (int, error) {
	removed := 0
	for {
		var due []string
		s.fsm.Read(func(st *state.State) { due = st.GCCandidates(s.cfg.Clock().UnixMilli(), r, state.GCBatch) })
		if len(due) == 0 {
			return removed, nil
		}
		res, err := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_GcJobs{GcJobs: &fsmpb.GCJobs{JobIds: due}}})
		if err != nil {
			return removed, err
		}
		removed += len(res.Removed)
		if len(res.Removed) == 0 {
			return removed, nil // nothing removable after all: do not spin
		}
	}
}

// GCJobs runs retention now, with the server's settings or tighter ones.
func (o *operatorService) GCJobs(ctx context.Context, req *pb.GCJobsRequest) (*pb.GCJobsResponse, error) {
	if req.MaxAgeMs < 0 || req.MaxJobs < 0 {
		return nil, status.Error(codes.InvalidArgument, "job gc: max age and max jobs must not be negative")
	}
	r := o.s.retention()
	if req.MaxAgeMs > 0 {
		r.MaxAgeMs = req.MaxAgeMs
	}
	if req.MaxJobs > 0 || req.All {
		r.MaxJobs = int(req.MaxJobs)
	}
	if req.All {
		r = state.Retention{MaxAgeMs: 1}
	}
	n, err := o.s.collectGarbage(r)
	if err != nil {
		return nil, err
	}
	o.s.log.Info("job gc by an operator", "jobs", n)
	return &pb.GCJobsResponse{Removed: int64(n)}, nil
}
