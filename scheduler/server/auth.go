package server

// The ACL layer of the trust boundary: one unary and one stream
// interceptor that the services do not see. Each resolves the caller's
// token (metadata "authorization: Bearer <secret>" or "x-banyan-token")
// against the replicated state, checks the call with the pure package acl,
// filters and redacts what the answer shows, and writes one audit line per
// change. The interceptors run where a call is served: after the forwarder,
// so a follower forwards a call with its token and the leader checks it
// against the latest state.

import (
	"context"
	"errors"
	"sort"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Redacted replaces the values of task environments shown to callers who
// may not submit to the job's pool.
const Redacted = "<redacted>"

// caller is who makes a call, as the interceptor resolved it. With ACLs
// off it enforces nothing.
type caller struct {
	enforce bool
	tok     *pb.ACLToken // nil while ACLs are off or before a token resolved
	token   acl.Token
	// policies holds the token's own policies (values are never changed
	// once stored, so they may be read outside the state's lock).
	policies map[string]*acl.Policy
}

type callerKey struct{}

// callerFrom returns the caller the interceptor put in ctx; a caller that
// enforces nothing when there is none.
func callerFrom(ctx context.Context) *caller {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c
	}
	return &caller{}
}

func (c *caller) allow(act acl.Action, pool string) error {
	if !c.enforce {
		return nil
	}
	return acl.Allow(c.token, c.policies, act, pool)
}

// submitter is what a job submitted by this caller records.
func (c *caller) submitter() *pb.Submitter {
	if c == nil || c.tok == nil {
		return nil
	}
	return &pb.Submitter{AccessorId: c.tok.AccessorId, Name: c.tok.Name}
}

func (c *caller) accessor() (id, name string) {
	switch {
	case c == nil:
		return "unknown", ""
	case c.tok != nil:
		return c.tok.AccessorId, c.tok.Name
	case !c.enforce:
		return "anonymous", ""
	}
	return "none", ""
}

// resolveCaller reads the token from the call's metadata and resolves it.
// With ACLs on, a call without a valid token is refused (Unauthenticated),
// except Bootstrap, which needs none.
func (s *Server) resolveCaller(ctx context.Context, method string) (*caller, error) {
	if !s.cfg.ACL {
		return &caller{}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	secret := pb.TokenFromMetadata(md.Get(pb.AuthorizationHeader), md.Get(pb.TokenHeader))
	c := &caller{enforce: true}
	var bootstrapped bool
	s.fsm.Read(func(st *state.State) {
		bootstrapped = st.ACLBootstrapped()
		if secret == "" {
			return
		}
		tok, ok := st.ACLResolve(acl.HashSecret(secret))
		if !ok {
			return
		}
		c.tok, c.token, c.policies = tok, acl.TokenFromPB(tok), map[string]*acl.Policy{}
		all := st.ACLPolicies()
		for _, n := range tok.Policies {
			if p := all[n]; p != nil {
				c.policies[n] = p
			}
		}
	})
	switch {
	case method == pb.ACLService_Bootstrap_FullMethodName || c.tok != nil:
		return c, nil
	case !bootstrapped:
		return c, status.Error(codes.Unauthenticated,
			"ACLs are enforced and not bootstrapped yet: run `sched acl bootstrap` first")
	case secret == "":
		return c, status.Error(codes.Unauthenticated, "no ACL token: pass --token or set SCHED_TOKEN")
	}
	return c, status.Error(codes.Unauthenticated, "ACL token not found: it is unknown or was revoked")
}

// methodCheck decides one call under the state's read lock; req is nil for
// a stream checked before its first message (agent sessions).
type methodCheck func(c *caller, st *state.State, req any) error

func needCluster(act acl.Action) methodCheck {
	return func(c *caller, _ *state.State, _ any) error { return c.allow(act, "") }
}

func allowAll(*caller, *state.State, any) error { return nil }

// typed adapts a check of one request type; another type is a bad request,
// never a crash.
func typed[T any](f func(c *caller, st *state.State, req T) error) methodCheck {
	return func(c *caller, st *state.State, req any) error {
		r, ok := req.(T)
		if !ok {
			return status.Errorf(codes.InvalidArgument, "malformed request %T", req)
		}
		return f(c, st, r)
	}
}

// jobCheck checks act on the pool of the job a request names; an unknown
// job is left to the handler (NotFound).
func jobCheck[T any](act acl.Action, id func(req T) string) methodCheck {
	return typed(func(c *caller, st *state.State, req T) error {
		j, ok := st.Job(id(req))
		if !ok {
			return nil
		}
		return c.allow(act, j.PB.Pool)
	})
}

func poolCheck[T any](act acl.Action, path func(req T) string) methodCheck {
	return typed(func(c *caller, _ *state.State, req T) error { return c.allow(act, path(req)) })
}

func checkSubmit(c *caller, _ *state.State, req *pb.SubmitJobsRequest) error {
	for _, spec := range req.Jobs {
		p := spec.GetPool()
		if p == "" {
			p = state.DefaultPool
		}
		if err := c.allow(acl.PoolSubmit, p); err != nil {
			return err
		}
	}
	return nil
}

// checkCancel lets a job's submitter (same accessor) or an admin of its
// pool cancel it.
func checkCancel(c *caller, st *state.State, req *pb.CancelJobRequest) error {
	j, ok := st.Job(req.Id)
	if !ok || !c.enforce {
		return nil
	}
	if sub := j.PB.GetSubmitter(); sub != nil && c.tok != nil && sub.AccessorId == c.tok.AccessorId {
		return nil
	}
	if c.allow(acl.PoolAdmin, j.PB.Pool) == nil {
		return nil
	}
	return status.Errorf(codes.PermissionDenied,
		"token %q (accessor %s) may not cancel %s: only its submitter or a token with \"admin\" on pool %q may",
		c.tok.Name, c.tok.AccessorId, j.PB.Id, j.PB.Pool)
}

func usageCheck(c *caller, _ *state.State, req *pb.PoolUsageRequest) error {
	if p := req.Path; p != "" {
		return c.allow(acl.PoolAdmin, p)
	}
	return nil // filtered to the pools the caller administers
}

// methodChecks holds the rule of every RPC; a method missing here is
// refused while ACLs are on.
var methodChecks = map[string]methodCheck{
	pb.JobService_SubmitJobs_FullMethodName: typed(checkSubmit),
	pb.JobService_GetJob_FullMethodName: jobCheck(acl.PoolRead, func(r *pb.GetJobRequest) string {
		return r.Id
	}),
	pb.JobService_ListTasks_FullMethodName: jobCheck(acl.PoolRead, func(r *pb.ListTasksRequest) string {
		return r.JobId
	}),
	pb.JobService_ListJobs_FullMethodName:  allowAll, // filtered to readable pools
	pb.JobService_CancelJob_FullMethodName: typed(checkCancel),
	pb.JobService_WatchJob_FullMethodName: jobCheck(acl.PoolRead, func(r *pb.WatchJobRequest) string {
		return r.Id
	}),
	// Task output may hold secrets, as task environments may: reading it
	// needs what seeing those does.
	pb.LogsService_Stream_FullMethodName: jobCheck(acl.PoolSubmit, func(r *pb.LogsRequest) string {
		return r.JobId
	}),
	pb.PoolService_CreatePool_FullMethodName: poolCheck(acl.PoolAdmin, func(r *pb.PoolRequest) string {
		return r.GetPool().GetPath()
	}),
	pb.PoolService_UpdatePool_FullMethodName: poolCheck(acl.PoolAdmin, func(r *pb.PoolRequest) string {
		return r.GetPool().GetPath()
	}),
	pb.PoolService_DeletePool_FullMethodName: poolCheck(acl.PoolAdmin, func(r *pb.DeletePoolRequest) string {
		return r.Path
	}),
	pb.PoolService_ListPools_FullMethodName:           allowAll, // filtered to readable pools
	pb.PoolService_GetPoolUsage_FullMethodName:        typed(usageCheck),
	pb.AgentService_Session_FullMethodName:            needCluster(acl.AgentWrite),
	pb.AgentService_ListAgents_FullMethodName:         needCluster(acl.ClusterRead),
	pb.AgentService_DrainAgent_FullMethodName:         needCluster(acl.ClusterOperator),
	pb.AgentService_SetEligibility_FullMethodName:     needCluster(acl.ClusterOperator),
	pb.ClusterService_Members_FullMethodName:          needCluster(acl.ClusterRead),
	pb.ClusterService_Join_FullMethodName:             needCluster(acl.ClusterOperator),
	pb.ClusterService_Remove_FullMethodName:           needCluster(acl.ClusterOperator),
	pb.ClusterService_Version_FullMethodName:          allowAll,
	pb.OperatorService_SnapshotSave_FullMethodName:    needCluster(acl.ClusterOperator),
	pb.OperatorService_SnapshotRestore_FullMethodName: needCluster(acl.ClusterOperator),
	pb.OperatorService_GCJobs_FullMethodName:          needCluster(acl.ClusterOperator),
	pb.ACLService_Bootstrap_FullMethodName:            allowAll,
	pb.ACLService_WhoAmI_FullMethodName:               allowAll,
	pb.ACLService_UpsertPolicy_FullMethodName:         needCluster(acl.ManageACL),
	pb.ACLService_DeletePolicy_FullMethodName:         needCluster(acl.ManageACL),
	pb.ACLService_ListPolicies_FullMethodName:         needCluster(acl.ManageACL),
	pb.ACLService_CreateToken_FullMethodName:          needCluster(acl.ManageACL),
	pb.ACLService_RevokeToken_FullMethodName:          needCluster(acl.ManageACL),
	pb.ACLService_ListTokens_FullMethodName:           needCluster(acl.ManageACL),
	// Health and reflection (health.go): any caller with a valid token.
	methodHealthCheck:                     allowAll,
	methodHealthWatch:                     allowAll,
	methodHealthList:                      allowAll,
	methodReflection:                      allowAll,
	methodReflectionAlpha1:                allowAll,
	pb.EventService_Stream_FullMethodName: typed(checkEvents), // filtered to readable pools
}

// checkCall applies the method's rule; a denial becomes PermissionDenied
// naming the missing capability and pool.
func (s *Server) checkCall(c *caller, method string, req any) error {
	if !c.enforce {
		return nil
	}
	check, ok := methodChecks[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "no ACL rule for method %s", method)
	}
	var err error
	s.fsm.Read(func(st *state.State) { err = check(c, st, req) })
	var d *acl.Denied
	if errors.As(err, &d) {
		return status.Error(codes.PermissionDenied, d.Error())
	}
	return err
}

// authUnary is the unary interceptor.
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, err := s.resolveCaller(ctx, info.FullMethod)
	if err == nil {
		err = s.checkCall(c, info.FullMethod, req)
	}
	if err != nil {
		s.audit(info.FullMethod, c, req, nil, err)
		return nil, err
	}
	limit := int32(0)
	if lj, ok := req.(*pb.ListJobsRequest); ok && c.enforce && lj.Limit > 0 {
		// Filter first, then apply the limit (on a copy: the forwarder may
		// serve the same request again).
		limit = lj.Limit
		lj = proto.Clone(lj).(*pb.ListJobsRequest)
		lj.Limit = 0
		req = lj
	}
	resp, err := handler(context.WithValue(ctx, callerKey{}, c), req)
	if err == nil && c.enforce {
		resp = c.filter(resp, limit)
	}
	s.audit(info.FullMethod, c, req, resp, err)
	return resp, err
}

// authStream is the stream interceptor: agent sessions are checked at
// once, WatchJob at its request; sent jobs are redacted.
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, err := s.resolveCaller(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	w := &authedStream{ServerStream: ss, s: s, c: c, method: info.FullMethod,
		ctx: context.WithValue(ss.Context(), callerKey{}, c)}
	if info.IsClientStream {
		if err := s.checkCall(c, info.FullMethod, nil); err != nil {
			return err
		}
		w.checked = true
	}
	return handler(srv, w)
}

type authedStream struct {
	grpc.ServerStream
	s       *Server
	c       *caller
	method  string
	ctx     context.Context
	checked bool
}

func (w *authedStream) Context() context.Context { return w.ctx }

func (w *authedStream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !w.checked {
		w.checked = true
		return w.s.checkCall(w.c, w.method, m)
	}
	return nil
}

func (w *authedStream) SendMsg(m any) error {
	if j, ok := m.(*pb.Job); ok {
		m = w.c.redactJob(j)
	}
	return w.ServerStream.SendMsg(m)
}

// filter drops from an answer what the caller may not see and redacts the
// task environments of pools it may not submit to.
func (c *caller) filter(resp any, limit int32) any {
	switch r := resp.(type) {
	case *pb.Job:
		return c.redactJob(r)
	case *pb.ListTasksResponse:
		// The page's tasks, redacted as their job's would be.
		out := &pb.ListTasksResponse{Total: r.Total, Pool: r.Pool}
		out.Tasks = c.redactJob(&pb.Job{Pool: r.Pool, Tasks: r.Tasks}).Tasks
		return out
	case *pb.ListJobsResponse:
		out := &pb.ListJobsResponse{}
		for _, j := range r.Jobs {
			if c.allow(acl.PoolRead, j.Pool) != nil {
				continue
			}
			out.Jobs = append(out.Jobs, c.redactJob(j))
			if limit > 0 && len(out.Jobs) >= int(limit) {
				break
			}
		}
		return out
	case *pb.ListPoolsResponse:
		pools := r.Pools[:0:0]
		for _, p := range r.Pools {
			if c.allow(acl.PoolRead, p.Path) == nil {
				pools = append(pools, p)
			}
		}
		r.Pools = pools
	case *pb.PoolUsageResponse:
		pools := r.Pools[:0:0]
		for _, p := range r.Pools {
			if c.allow(acl.PoolAdmin, p.Path) == nil {
				pools = append(pools, p)
			}
		}
		r.Pools = pools
	}
	return resp
}

// redactJob returns the job with its tasks' environment values replaced by
// Redacted (a copy) unless the caller may submit to its pool.
func (c *caller) redactJob(j *pb.Job) *pb.Job {
	if !c.enforce || c.allow(acl.PoolSubmit, j.Pool) == nil || !hasEnv(j) {
		return j
	}
	out := proto.Clone(j).(*pb.Job)
	for _, t := range out.Tasks {
		for spec := t.Spec; spec != nil; spec = spec.Fallback {
			for k := range spec.Env {
				spec.Env[k] = Redacted
			}
		}
	}
	return out
}

func hasEnv(j *pb.Job) bool {
	for _, t := range j.Tasks {
		for spec := t.Spec; spec != nil; spec = spec.Fallback {
			if len(spec.Env) > 0 {
				return true
			}
		}
	}
	return false
}

// forwardToken copies the caller's token from an incoming call's metadata
// to the outgoing context of the call that forwards it to the leader.
func forwardToken(in, out context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(in)
	if secret := pb.TokenFromMetadata(md.Get(pb.AuthorizationHeader), md.Get(pb.TokenHeader)); secret != "" {
		return metadata.AppendToOutgoingContext(out, pb.AuthorizationHeader, "Bearer "+secret)
	}
	return out
}

// auditActions names the calls that write an audit line.
var auditActions = map[string]string{
	pb.JobService_SubmitJobs_FullMethodName:   "job.submit",
	pb.JobService_CancelJob_FullMethodName:    "job.cancel",
	pb.PoolService_CreatePool_FullMethodName:  "pool.create",
	pb.PoolService_UpdatePool_FullMethodName:  "pool.update",
	pb.PoolService_DeletePool_FullMethodName:  "pool.delete",
	pb.ClusterService_Join_FullMethodName:     "cluster.join",
	pb.ClusterService_Remove_FullMethodName:   "cluster.remove",
	pb.ACLService_Bootstrap_FullMethodName:    "acl.bootstrap",
	pb.ACLService_UpsertPolicy_FullMethodName: "acl.policy.upsert",
	pb.ACLService_DeletePolicy_FullMethodName: "acl.policy.delete",
	pb.ACLService_CreateToken_FullMethodName:  "acl.token.create",
	pb.ACLService_RevokeToken_FullMethodName:  "acl.token.revoke",
}

// audit writes one structured line (msg=audit) for a call that changes
// the cluster: action, target, the caller's accessor (never a secret) and
// the result.
func (s *Server) audit(method string, c *caller, req, resp any, err error) {
	action, ok := auditActions[method]
	if !ok {
		return
	}
	id, name := c.accessor()
	attrs := []any{"action", action}
	attrs = append(attrs, s.auditTarget(req, resp)...)
	attrs = append(attrs, "accessor", id)
	if name != "" {
		attrs = append(attrs, "token_name", name)
	}
	switch code := status.Code(err); code {
	case codes.OK:
		attrs = append(attrs, "result", "ok")
	case codes.PermissionDenied:
		attrs = append(attrs, "result", "denied", "reason", status.Convert(err).Message())
	case codes.Unauthenticated:
		attrs = append(attrs, "result", "unauthenticated", "reason", status.Convert(err).Message())
	default:
		attrs = append(attrs, "result", "error", "reason", status.Convert(err).Message())
	}
	s.log.Info("audit", attrs...)
}

// auditTarget names what a call acted on; it never reads a secret.
func (s *Server) auditTarget(req, resp any) []any {
	switch r := req.(type) {
	case *pb.SubmitJobsRequest:
		pools := map[string]bool{}
		for _, j := range r.Jobs {
			pools[j.GetPool()] = true
		}
		var ids []string
		if sr, ok := resp.(*pb.SubmitJobsResponse); ok { // may be a typed nil after an error
			for _, j := range sr.GetJobs() {
				ids = append(ids, j.Id)
			}
		}
		return []any{"pool", joinKeys(pools), "job", strings.Join(ids, ",")}
	case *pb.CancelJobRequest:
		var p string
		s.fsm.Read(func(st *state.State) {
			if j, ok := st.Job(r.Id); ok {
				p = j.PB.Pool
			}
		})
		return []any{"pool", p, "job", r.Id}
	case *pb.PoolRequest:
		return []any{"pool", r.GetPool().GetPath()}
	case *pb.DeletePoolRequest:
		return []any{"pool", r.Path}
	case *pb.JoinRequest:
		return []any{"server", r.Id, "address", r.Address}
	case *pb.RemoveRequest:
		return []any{"server", r.Id}
	case *pb.UpsertPolicyRequest:
		return []any{"policy", r.GetPolicy().GetName()}
	case *pb.DeletePolicyRequest:
		return []any{"policy", r.Name}
	case *pb.CreateTokenRequest:
		t, _ := resp.(*pb.ACLToken)
		return []any{"token", r.Name, "target_accessor", t.GetAccessorId()}
	case *pb.RevokeTokenRequest:
		return []any{"target_accessor", r.AccessorId}
	case *pb.ACLBootstrapRequest:
		t, _ := resp.(*pb.ACLToken)
		return []any{"target_accessor", t.GetAccessorId()}
	}
	return nil
}

func joinKeys(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// aclStatus maps the ACL state's errors to gRPC codes (nil for others).
func aclStatus(err error) error {
	switch {
	case errors.Is(err, state.ErrACLBootstrapped):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, state.ErrACLInvalidToken), errors.Is(err, acl.ErrInvalidPolicy):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, state.ErrACLPolicyMissing), errors.Is(err, state.ErrACLTokenMissing):
		return status.Error(codes.NotFound, err.Error())
	}
	return nil
}

var errACLOff = errors.New("ACLs are not enabled on this server: start the servers with --acl (config acl: true)")
