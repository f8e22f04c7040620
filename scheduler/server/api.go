package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/buildinfo"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func registerServices(g *grpc.Server, s *Server) {
	pb.RegisterJobServiceServer(g, &jobService{s: s})
	pb.RegisterPoolServiceServer(g, &poolService{s: s})
	pb.RegisterAgentServiceServer(g, &agentService{s: s})
	pb.RegisterClusterServiceServer(g, &clusterService{s: s})
	pb.RegisterACLServiceServer(g, &aclService{s: s})
	pb.RegisterOperatorServiceServer(g, &operatorService{s: s})
	pb.RegisterEventServiceServer(g, &eventService{s: s})
	pb.RegisterLogsServiceServer(g, &logsService{s: s})
}

// statusOf maps an error to a gRPC status that keeps its message.
func statusOf(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrDiskFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, state.ErrInvalidJob), errors.Is(err, pool.ErrInvalidPath), errors.Is(err, pool.ErrBadQuota),
		errors.Is(err, pool.ErrOverGuarantee), errors.Is(err, pool.ErrNoParent):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, state.ErrJobNotFound), errors.Is(err, pool.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, pool.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, state.ErrPoolBusy), errors.Is(err, pool.ErrHasChildren):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// apply commits a command and returns its result, with both commit errors
// and Apply's own decision mapped to gRPC statuses.
func (s *Server) apply(cmd *fsmpb.Command) (*state.Result, error) {
	r, err := s.propose(cmd)
	if err != nil {
		return nil, statusOf(err)
	}
	if r.Err != nil {
		return nil, statusOf(r.Err)
	}
	s.afterApply(r)
	return r, nil
}

// afterApply has the leader act on what a command did (assignments to
// send, cancels, removed jobs), when this server leads.
func (s *Server) afterApply(r *state.Result) {
	if l := s.currentLeader(); l != nil {
		l.afterApply(r)
	}
}

type jobService struct {
	pb.UnimplementedJobServiceServer
	s *Server
}

// validateSubmission normalizes and checks jobs as Apply will, so that a
// bad job costs no raft entry, and reports the first job at fault, as
// Apply would. Only the pool checks hold the state's read lock: the rest
// expands arrays (tens of milliseconds for 100,000 tasks) and must not
// hold up applies meanwhile.
func (s *Server) validateSubmission(jobs []*pb.JobSpec) error {
	var defaults state.Defaults
	s.fsm.Read(func(st *state.State) { defaults = st.Defaults() })
	bad, err := len(jobs), error(nil)
	for i, spec := range jobs {
		state.NormalizeJob(spec, defaults)
		if err = state.CheckJob(spec); err != nil {
			bad = i
			break
		}
	}
	s.fsm.Read(func(st *state.State) {
		for _, spec := range jobs[:bad] {
			if perr := state.ValidatePool(spec, st.Pools()); perr != nil {
				err = perr
				return
			}
		}
	})
	return err
}

// SubmitJobs validates the batch against the current state before
// committing it (so a bad job costs no raft entry); Apply validates again.
func (j *jobService) SubmitJobs(ctx context.Context, req *pb.SubmitJobsRequest) (*pb.SubmitJobsResponse, error) {
	if len(req.Jobs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no jobs in request")
	}
	if err := state.CheckSubmission(req.Jobs); err != nil {
		return nil, statusOf(err)
	}
	if err := j.s.validateSubmission(req.Jobs); err != nil {
		return nil, statusOf(err)
	}
	traceID, spanID, err := jobTraceIDs(ctx)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	sub := &fsmpb.SubmitJobs{Jobs: req.Jobs, Submitter: callerFrom(ctx).submitter()}
	for range req.Jobs {
		sub.TraceIds, sub.TraceSpanIds = append(sub.TraceIds, traceID), append(sub.TraceSpanIds, spanID)
	}
	_, span := j.s.tracer().Start(ctx, tracing.SpanCommit, trace.WithAttributes(attribute.Int("banyan.jobs", len(req.Jobs))))
	// Calls that arrive together share a raft entry (submitbatch.go).
	jobs, existing, err := j.s.submits.submit(ctx, sub)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		span.End()
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, err
	}
	span.End()
	ids := make([]string, 0, min(len(jobs), 16)) // ids of the first 16, to keep the line short
	for _, jb := range jobs[:cap(ids)] {
		ids = append(ids, jb.Id)
	}
	// Debug: every submission's audit line (auth.go) already names its
	// jobs at info, and at thousands of calls a second a second line each
	// was the leader's largest cost after raft's own.
	j.s.log.Debug("jobs submitted", "jobs", len(jobs), "job", ids)
	// The jobs as applied, without blocked reasons (Apply does no per-agent
	// work on the replicas); GetJob explains them.
	return &pb.SubmitJobsResponse{Jobs: jobs, Existing: existing}, nil
}

// jobTraceIDs are the trace ids a submitted job records: the trace of the
// call and the span the job's spans hang under (the call's span on this
// server, or the caller's when this server does not trace), or, for a call
// without trace context on a server that does not trace, a new random
// trace id and no parent span. Made here, before the entry is proposed, so
// that Apply stays deterministic.
func jobTraceIDs(ctx context.Context) (traceID, spanID string, err error) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String(), sc.SpanID().String(), nil
	}
	traceID, err = jobtrace.NewTraceID(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("job trace id: %w", err)
	}
	return traceID, "", nil
}

func (j *jobService) GetJob(ctx context.Context, req *pb.GetJobRequest) (*pb.Job, error) {
	var job *pb.Job
	j.s.fsm.Read(func(st *state.State) { job = st.JobView(req.Id, req.WithTasks) })
	if job == nil && j.s.waitCaughtUp(ctx) {
		j.s.fsm.Read(func(st *state.State) { job = st.JobView(req.Id, req.WithTasks) })
	}
	if job == nil {
		return nil, status.Errorf(codes.NotFound, "job %q not found", req.Id)
	}
	return job, nil
}

// taskPage is the most tasks one ListTasks answer holds.
const taskPage = 10_000

// ListTasks answers a page of a job's tasks, from the local state like
// GetJob, within half a message however large the tasks' views are.
func (j *jobService) ListTasks(ctx context.Context, req *pb.ListTasksRequest) (*pb.ListTasksResponse, error) {
	if req.Offset < 0 || req.Limit < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "offset %d, limit %d: want 0 or more", req.Offset, req.Limit)
	}
	limit := int(req.Limit)
	if limit == 0 || limit > taskPage {
		limit = taskPage
	}
	budget := limits.Budget{MessageSize: j.s.cfg.MaxMessageSize}.BatchBytes()
	var out *pb.ListTasksResponse
	read := func(st *state.State) {
		if tasks, total, pool, ok := st.TaskViews(req.JobId, int(req.Offset), limit, budget); ok {
			out = &pb.ListTasksResponse{Tasks: tasks, Total: int32(total), Pool: pool}
		}
	}
	j.s.fsm.Read(read)
	if out == nil && j.s.waitCaughtUp(ctx) {
		j.s.fsm.Read(read)
	}
	if out == nil {
		return nil, status.Errorf(codes.NotFound, "job %q not found", req.JobId)
	}
	return out, nil
}

func (j *jobService) ListJobs(ctx context.Context, req *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	out := &pb.ListJobsResponse{}
	j.s.fsm.Read(func(st *state.State) {
		ids := st.JobIDs()
		for i := len(ids) - 1; i >= 0; i-- { // newest first
			job, _ := st.Job(ids[i])
			if req.Pool != "" && job.PB.Pool != req.Pool {
				continue
			}
			if req.State != pb.JobState_JOB_STATE_UNSPECIFIED && job.PB.State != req.State {
				continue
			}
			out.Jobs = append(out.Jobs, st.JobView(ids[i], false))
			if req.Limit > 0 && len(out.Jobs) >= int(req.Limit) {
				return
			}
		}
	})
	return out, nil
}

func (j *jobService) CancelJob(ctx context.Context, req *pb.CancelJobRequest) (*pb.Job, error) {
	r, err := j.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: req.Id}}})
	if err != nil {
		return nil, err
	}
	return r.Jobs[0], nil
}

// WatchJob is served from the local state of whichever server receives it:
// followers apply the same log, a moment later.
func (j *jobService) WatchJob(req *pb.WatchJobRequest, stream pb.JobService_WatchJobServer) error {
	var last *pb.Job
	for {
		changed := j.s.fsm.Changed()
		var job *pb.Job
		j.s.fsm.Read(func(st *state.State) { job = st.JobView(req.Id, false) })
		if job == nil && last == nil && j.s.waitCaughtUp(stream.Context()) {
			continue // read again, now caught up
		}
		if job == nil {
			return status.Errorf(codes.NotFound, "job %q not found", req.Id)
		}
		if last == nil || !proto.Equal(last, job) {
			if err := stream.Send(job); err != nil {
				return err
			}
			last = job
		}
		if state.IsJobFinal(job.State) {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-j.s.ctx.Done():
			return status.Error(codes.Unavailable, "server shutting down")
		case <-changed:
		}
	}
}

type poolService struct {
	pb.UnimplementedPoolServiceServer
	s *Server
}

func (p *poolService) put(req *pb.PoolRequest, create bool) (*pb.Pool, error) {
	if req.Pool == nil {
		return nil, status.Error(codes.InvalidArgument, "no pool in request")
	}
	r, err := p.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: req.Pool, Create: create}}})
	if err != nil {
		return nil, err
	}
	return r.Pool, nil
}

func (p *poolService) CreatePool(ctx context.Context, req *pb.PoolRequest) (*pb.Pool, error) {
	return p.put(req, true)
}

func (p *poolService) UpdatePool(ctx context.Context, req *pb.PoolRequest) (*pb.Pool, error) {
	return p.put(req, false)
}

func (p *poolService) DeletePool(ctx context.Context, req *pb.DeletePoolRequest) (*pb.Pool, error) {
	r, err := p.s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: req.Path}}})
	if err != nil {
		return nil, err
	}
	return r.Pool, nil
}

func (p *poolService) ListPools(ctx context.Context, req *pb.ListPoolsRequest) (*pb.ListPoolsResponse, error) {
	out := &pb.ListPoolsResponse{}
	p.s.fsm.Read(func(st *state.State) {
		for _, path := range st.Pools().Paths() {
			out.Pools = append(out.Pools, st.PoolView(path))
		}
		cluster := st.Cluster()
		out.Cluster = pb.FromVector(cluster)
		out.Warnings = st.Pools().OverCommit(cluster)
	})
	return out, nil
}

func (p *poolService) GetPoolUsage(ctx context.Context, req *pb.PoolUsageRequest) (*pb.PoolUsageResponse, error) {
	out := &pb.PoolUsageResponse{}
	var missing bool
	p.s.fsm.Read(func(st *state.State) {
		paths := []string{req.Path}
		if req.Path == "" {
			paths = st.Pools().Paths()
		} else if _, ok := st.Pools().Get(req.Path); !ok {
			missing = true
			return
		}
		for _, path := range paths {
			out.Pools = append(out.Pools, &pb.PoolUsage{Path: path, Cost: st.PoolCost(path, req.SinceUnixMs)})
		}
	})
	if missing {
		return nil, status.Errorf(codes.NotFound, "pool %q not found", req.Path)
	}
	return out, nil
}

type agentService struct {
	pb.UnimplementedAgentServiceServer
	s *Server
}

func (a *agentService) ListAgents(ctx context.Context, req *pb.ListAgentsRequest) (*pb.ListAgentsResponse, error) {
	out := &pb.ListAgentsResponse{}
	a.s.fsm.Read(func(st *state.State) {
		for _, id := range st.AgentIDs() {
			out.Agents = append(out.Agents, st.AgentView(id))
		}
	})
	if l := a.s.currentLeader(); l != nil {
		for _, ag := range out.Agents {
			if t := l.lastSeen(ag.Id); !t.IsZero() {
				ag.LastSeenUnixMs = t.UnixMilli()
			}
		}
	}
	return out, nil
}

// Session serves an agent's session on the leader; a follower refuses it
// with the leader's address so the agent reconnects there.
func (a *agentService) Session(stream pb.AgentService_SessionServer) error {
	l := a.s.currentLeader()
	if l == nil || !l.isReady() {
		return status.Errorf(codes.FailedPrecondition, "not the leader; leader=%s", a.s.LeaderAddr())
	}
	return l.serveSession(stream)
}

type clusterService struct {
	pb.UnimplementedClusterServiceServer
	s *Server
}

func (c *clusterService) Members(ctx context.Context, req *pb.MembersRequest) (*pb.MembersResponse, error) {
	f := c.s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "read raft configuration: %v", err)
	}
	leaderAddr, leaderID := c.s.raft.LeaderWithID()
	out := &pb.MembersResponse{LeaderId: string(leaderID), LeaderAddress: string(leaderAddr),
		CommitIndex: c.s.raft.CommitIndex()}
	for _, srv := range f.Configuration().Servers {
		suffrage := "voter"
		if srv.Suffrage != raft.Voter {
			suffrage = "nonvoter"
		}
		out.Members = append(out.Members, &pb.Member{Id: string(srv.ID), Address: string(srv.Address),
			Suffrage: suffrage, Leader: srv.ID == leaderID})
	}
	c.s.memberVersions(ctx, out.Members)
	return out, nil
}

// Version is this server's build and state format.
func (c *clusterService) Version(ctx context.Context, req *pb.VersionRequest) (*pb.VersionResponse, error) {
	return &pb.VersionResponse{Version: buildinfo.Get().String(), StateFormat: state.SnapshotFormat,
		Features: slices.Clone(taskarray.Features)}, nil
}

// memberVersions asks every member for its version (at most a second
// each, in parallel); one that does not answer is left blank.
func (s *Server) memberVersions(ctx context.Context, members []*pb.Member) {
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Id == s.cfg.NodeID {
			m.Version, m.StateFormat = buildinfo.Get().String(), state.SnapshotFormat
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := s.fwd.conn(m.Address)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			v, err := pb.NewClusterServiceClient(conn).Version(forwardToken(ctx, cctx), &pb.VersionRequest{})
			if err == nil {
				m.Version, m.StateFormat = v.Version, v.StateFormat
			}
		}()
	}
	wg.Wait()
}

func (c *clusterService) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	if req.Id == "" || req.Address == "" {
		return nil, status.Error(codes.InvalidArgument, "join needs an id and an address")
	}
	f := c.s.raft.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.Address), 0, 10_000_000_000)
	if err := f.Error(); err != nil {
		return nil, statusOf(fmt.Errorf("add voter %s: %w", req.Id, err))
	}
	c.s.log.Info("server joined", "id", req.Id, "addr", req.Address)
	return &pb.JoinResponse{}, nil
}

func (c *clusterService) Remove(ctx context.Context, req *pb.RemoveRequest) (*pb.RemoveResponse, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "remove server: no server id given")
	}
	members := c.s.configServers()
	found := false
	for _, m := range members {
		if id, _, _ := strings.Cut(m, "="); id == req.Id {
			found = true
		}
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "remove server: no server %q in the cluster (members: %s)", req.Id,
			strings.Join(members, ", "))
	}
	if err := c.s.raft.RemoveServer(raft.ServerID(req.Id), 0, 0).Error(); err != nil {
		return nil, statusOf(fmt.Errorf("remove server %s: %w", req.Id, err))
	}
	return &pb.RemoveResponse{}, nil
}

// waitCaughtUp waits (at most 5 s) while this server is not ready: a
// server starting up, or one that just lost contact, may not have applied
// what the cluster committed yet, and "not found" would be wrong. It
// reports whether it waited, so that the caller reads again.
func (s *Server) waitCaughtUp(ctx context.Context) bool {
	if s.Ready() == nil {
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Ready() != nil && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}
