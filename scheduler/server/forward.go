package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// forwardedKey marks a call a follower forwarded, so it is never forwarded
// twice (no loops while leadership moves).
const forwardedKey = "x-banyan-forwarded"

// localMethods are served by whichever server receives them.
var localMethods = map[string]bool{
	"/banyan.v1.ClusterService/Members": true,
	"/banyan.v1.ClusterService/Version": true,
	// Health says how this server is (health.go), not how the leader is.
	methodHealthCheck: true,
	methodHealthList:  true,
}

// forwarder sends calls that reached a follower on to the leader, so that
// any server accepts any client call.
type forwarder struct {
	s     *Server
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newForwarder(s *Server) *forwarder {
	return &forwarder{s: s, conns: map[string]*grpc.ClientConn{}}
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = map[string]*grpc.ClientConn{}
}

func (f *forwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if f.s.cfg.TLS != nil {
		creds = f.s.cfg.TLS.Credentials()
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(f.s.cfg.MaxMessageSize), grpc.MaxCallSendMsgSize(f.s.cfg.MaxMessageSize)),
		grpc.WithStatsHandler(tracing.ClientHandler(f.s.cfg.TracerProvider)), wirecodec.DialOption())
	if err != nil {
		return nil, fmt.Errorf("connect to leader %s: %w", addr, err)
	}
	f.conns[addr] = c
	return c, nil
}

// waitLeader returns the leader's address, waiting up to the context's
// deadline (at most 5 s) while an election runs.
func (f *forwarder) waitLeader(ctx context.Context) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if f.s.IsLeader() {
			if l := f.s.currentLeader(); l != nil && l.isReady() {
				return f.s.addr, nil
			}
		} else if addr := f.s.LeaderAddr(); addr != "" && addr != f.s.addr {
			return addr, nil
		}
		if time.Now().After(deadline) {
			return "", status.Error(codes.Unavailable, "no leader elected: is a quorum of servers up?")
		}
		select {
		case <-ctx.Done():
			return "", status.FromContextError(ctx.Err()).Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// unary serves a call on the leader and forwards it from a follower.
func (f *forwarder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if localMethods[info.FullMethod] {
		return handler(ctx, req)
	}
	keyWrites(ctx, req)
	for attempt := 0; ; attempt++ {
		leader, err := f.waitLeader(ctx)
		if err != nil {
			return nil, err
		}
		if leader == f.s.addr {
			resp, err := handler(ctx, req)
			if status.Code(err) == codes.Unavailable && attempt < 3 && !f.s.IsLeader() {
				continue // leadership moved under the call: follow it
			}
			return resp, err
		}
		md, _ := metadata.FromIncomingContext(ctx)
		if len(md.Get(forwardedKey)) > 0 {
			return nil, status.Errorf(codes.Unavailable, "not the leader; leader is %s", leader)
		}
		if err := prepareForward(req, func() []string { return f.leaderFeatures(ctx, leader) }); err != nil {
			return nil, statusOf(err)
		}
		resp, err := f.forward(ctx, leader, info.FullMethod, req)
		if errors.Is(err, errLeaderMoved) && attempt < 5 {
			continue // the leader hung or lost its place: follow the new one
		}
		return resp, err
	}
}

// prepareForward readies a request for the leader. A submission holding
// arrays is checked against the bounds the leader would check, then sent
// as it is when the leader lists every feature it needs (leaderFeatures:
// asked only then), or expanded here for a leader that may be older (a
// rolling upgrade replaces the leader last) and would take each array as
// one task, or refuse an after list that names one.
func prepareForward(req any, leaderFeatures func() []string) error {
	sub, ok := req.(*pb.SubmitJobsRequest)
	if !ok {
		return nil
	}
	if !taskarray.InJobs(sub.Jobs) {
		return nil
	}
	if err := state.CheckSubmission(sub.Jobs); err != nil {
		return err
	}
	for _, j := range sub.Jobs {
		if err := state.CheckArrays(j.GetTasks()); err != nil {
			return fmt.Errorf("job %s: %w", j.GetName(), err)
		}
	}
	if !taskarray.Serves(leaderFeatures(), taskarray.Needs(sub.Jobs)) {
		taskarray.ExpandJobs(sub.Jobs)
	}
	return nil
}

// leaderFeatures asks the leader at addr what it understands beyond the
// first release (VersionResponse.features); one that does not answer is
// taken to understand nothing more. Asked for each forwarded submission
// that holds an array, never cached: the leader's binary may change under
// its address.
func (f *forwarder) leaderFeatures(ctx context.Context, addr string) []string {
	c, err := f.conn(addr)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // Version takes no token
	defer cancel()
	v, err := pb.NewClusterServiceClient(c).Version(ctx, &pb.VersionRequest{})
	if err != nil {
		return nil
	}
	return v.Features
}

// autoKeyPrefix starts the idempotency keys a server gives submissions
// that came without one.
const autoKeyPrefix = "auto:"

// keyWrites gives every job of a submission that reached this server
// directly from a client, and carries no idempotency key, a key of its own:
// a submission resent inside the cluster (a forward retried after its
// leader hung or lost leadership while the entry may still commit) then
// finds the job it made instead of making a second.
func keyWrites(ctx context.Context, req any) {
	sub, ok := req.(*pb.SubmitJobsRequest)
	if !ok {
		return
	}
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(forwardedKey)) > 0 {
		return // the first server keyed it
	}
	for _, j := range sub.Jobs {
		if j != nil && j.IdempotencyKey == "" {
			j.IdempotencyKey = autoKeyPrefix + rand.Text()
		}
	}
}

// errLeaderMoved ends a forwarded call whose leader changed under it.
var errLeaderMoved = errors.New("leader changed during the call")

func (f *forwarder) forward(ctx context.Context, leader, method string, req any) (any, error) {
	resp, err := newResponse(method)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	c, err := f.conn(leader)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := forwardToken(ctx, metadata.AppendToOutgoingContext(ctx, forwardedKey, f.s.cfg.NodeID))
	// Watch the leadership while the call runs: a hung leader never
	// answers, and once the others elect a new one the call goes there.
	out, cancel := context.WithCancelCause(out)
	defer cancel(nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if now := f.s.LeaderAddr(); now != "" && now != leader {
					cancel(errLeaderMoved)
					return
				}
			}
		}
	}()
	if err := c.Invoke(out, method, req, resp); err != nil {
		if context.Cause(out) == errLeaderMoved && ctx.Err() == nil {
			return nil, errLeaderMoved
		}
		return nil, err
	}
	return resp, nil
}

// newResponse makes an empty response message for a gRPC method name such
// as "/banyan.v1.JobService/SubmitJobs", from the registered descriptors.
func newResponse(method string) (proto.Message, error) {
	name := strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("method %s: %w", method, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a method", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("method %s output: %w", method, err)
	}
	return mt.New().Interface(), nil
}

// join asks the server at addr (which forwards to its leader) to add us.
func (f *forwarder) join(ctx context.Context, addr string, req *pb.JoinRequest) error {
	c, err := f.conn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if f.s.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, pb.AuthorizationHeader, "Bearer "+f.s.cfg.Token)
	}
	_, err = pb.NewClusterServiceClient(c).Join(ctx, req)
	return err
}
