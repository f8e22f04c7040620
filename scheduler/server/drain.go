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

// maxDrainDeadline bounds a drain's deadline (a week).
const maxDrainDeadline = 7 * 24 * time.Hour

// DrainAgent starts, changes or (with cancel) ends an agent's drain.
func (a *agentService) DrainAgent(ctx context.Context, req *pb.DrainAgentRequest) (*pb.Agent, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "drain: no agent id given")
	}
	if req.DeadlineMs < 0 || time.Duration(req.DeadlineMs)*time.Millisecond > maxDrainDeadline {
		return nil, status.Errorf(codes.InvalidArgument, "drain: deadline %d ms is outside 0..%s", req.DeadlineMs, maxDrainDeadline)
	}
	cmd := &fsmpb.AgentScheduling{AgentId: req.Id}
	if !req.Cancel {
		who := "operator"
		if _, name := callerFrom(ctx).accessor(); name != "" {
			who = name
		}
		d := &pb.AgentDrain{KeepOpportunistic: req.KeepOpportunistic, By: who}
		if req.DeadlineMs > 0 {
			d.DeadlineUnixMs = a.s.cfg.Clock().Add(time.Duration(req.DeadlineMs) * time.Millisecond).UnixMilli()
		}
		cmd.Ineligible, cmd.Drain = true, d
	}
	return a.s.applyScheduling(cmd)
}

// SetEligibility cordons or uncordons an agent; uncordoning ends a drain.
func (a *agentService) SetEligibility(ctx context.Context, req *pb.EligibilityRequest) (*pb.Agent, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "eligibility: no agent id given")
	}
	cmd := &fsmpb.AgentScheduling{AgentId: req.Id, Ineligible: !req.Eligible}
	if !req.Eligible {
		// A cordon leaves a drain in place.
		a.s.fsm.Read(func(st *state.State) {
			if ag, ok := st.Agent(req.Id); ok {
				cmd.Drain = ag.PB.GetDrain()
			}
		})
	}
	return a.s.applyScheduling(cmd)
}

// applyScheduling commits an agent's scheduling change and returns the
// agent as it is then.
func (s *Server) applyScheduling(cmd *fsmpb.AgentScheduling) (*pb.Agent, error) {
	if _, err := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentScheduling{AgentScheduling: cmd}}); err != nil {
		return nil, err
	}
	var out *pb.Agent
	s.fsm.Read(func(st *state.State) { out = st.AgentView(cmd.AgentId) })
	s.log.Info("agent scheduling changed", "agent", cmd.AgentId, "ineligible", cmd.Ineligible, "draining", cmd.Drain != nil)
	return out, nil
}

// drainSelf commits the drain an agent asks for on SIGTERM: no new work,
// and what it still runs after grace is stopped and requeued.
func (l *leaderLoop) drainSelf(agentID string, graceMs int64) error {
	graceMs = min(max(graceMs, 0), maxDrainDeadline.Milliseconds())
	d := &pb.AgentDrain{By: state.AgentSelfDrain, DeadlineUnixMs: l.s.cfg.Clock().Add(time.Duration(graceMs) * time.Millisecond).UnixMilli()}
	_, err := l.s.applyScheduling(&fsmpb.AgentScheduling{AgentId: agentID, Ineligible: true, Drain: d})
	return err
}

// stopDueDrains commits the drain deadlines that have passed.
func (l *leaderLoop) stopDueDrains(now time.Time) {
	var due []string
	l.s.fsm.Read(func(st *state.State) { due = st.DrainsDue(now.UnixMilli()) })
	for _, id := range due {
		l.s.log.Info("drain deadline passed: stopping and requeueing what the agent still runs", "agent", id)
		if _, err := l.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDrainDeadline{
			AgentDrainDeadline: &fsmpb.AgentDrainDeadline{AgentId: id}}}); err != nil {
			l.s.log.Warn("commit drain deadline failed", "agent", id, "err", err)
		}
	}
}
