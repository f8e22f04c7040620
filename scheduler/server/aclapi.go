package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// aclService manages ACL policies and tokens. Who may call what is decided
// by the interceptor (auth.go); this service only validates and commits.
type aclService struct {
	pb.UnimplementedACLServiceServer
	s *Server
}

// enabled refuses ACL calls on a server that does not enforce ACLs, so
// that nobody bootstraps a cluster whose operators have not turned ACLs on.
func (a *aclService) enabled() error {
	if !a.s.cfg.ACL {
		return status.Error(codes.FailedPrecondition, errACLOff.Error())
	}
	return nil
}

// applyACL commits an ACL command, mapping the state's ACL errors.
func (a *aclService) applyACL(cmd *fsmpb.Command) error {
	r, err := a.s.propose(cmd)
	if err != nil {
		return statusOf(err)
	}
	if r.Err != nil {
		if st := aclStatus(r.Err); st != nil {
			return st
		}
		return statusOf(r.Err)
	}
	return nil
}

// newSecretToken makes a token with a random accessor id and secret; the
// record keeps only the secret's SHA-256.
func newSecretToken(name string, policies []string, management bool) (*pb.ACLToken, *fsmpb.ACLTokenRecord, error) {
	var b [48]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, nil, fmt.Errorf("generate token: %w", err)
	}
	u := b[:16]
	u[6] = u[6]&0x0f | 0x40 // UUID version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	accessor := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	secret := hex.EncodeToString(b[16:])
	tok := &pb.ACLToken{AccessorId: accessor, Name: name, Policies: policies, Management: management}
	rec := &fsmpb.ACLTokenRecord{Token: tok, SecretHash: acl.HashSecret(secret)}
	shown := &pb.ACLToken{AccessorId: accessor, Secret: secret, Name: name, Policies: policies, Management: management}
	return shown, rec, nil
}

func (a *aclService) Bootstrap(ctx context.Context, req *pb.ACLBootstrapRequest) (*pb.ACLToken, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	shown, rec, err := newSecretToken("bootstrap", nil, true)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := a.applyACL(&fsmpb.Command{Cmd: &fsmpb.Command_AclBootstrap{AclBootstrap: &fsmpb.ACLBootstrap{Token: rec}}}); err != nil {
		return nil, err
	}
	return a.withCreateTime(shown), nil
}

// withCreateTime fills the create time the state recorded.
func (a *aclService) withCreateTime(t *pb.ACLToken) *pb.ACLToken {
	a.s.fsm.Read(func(st *state.State) {
		for _, stored := range st.ACLTokenList() {
			if stored.AccessorId == t.AccessorId {
				t.CreateUnixMs = stored.CreateUnixMs
			}
		}
	})
	return t
}

func (a *aclService) UpsertPolicy(ctx context.Context, req *pb.UpsertPolicyRequest) (*pb.ACLPolicy, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	p, err := acl.FromPB(req.Policy)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := a.applyACL(&fsmpb.Command{Cmd: &fsmpb.Command_AclPolicyPut{AclPolicyPut: &fsmpb.ACLPolicyPut{Policy: p.PB()}}}); err != nil {
		return nil, err
	}
	var out *pb.ACLPolicy
	a.s.fsm.Read(func(st *state.State) { out, _ = st.ACLPolicy(p.Name) })
	if out == nil {
		return nil, status.Errorf(codes.Unavailable, "policy %q committed but not yet visible; list policies to check", p.Name)
	}
	return out, nil
}

func (a *aclService) DeletePolicy(ctx context.Context, req *pb.DeletePolicyRequest) (*pb.DeletePolicyResponse, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	cmd := &fsmpb.Command{Cmd: &fsmpb.Command_AclPolicyDelete{AclPolicyDelete: &fsmpb.ACLPolicyDelete{Name: req.Name}}}
	if err := a.applyACL(cmd); err != nil {
		return nil, err
	}
	return &pb.DeletePolicyResponse{}, nil
}

func (a *aclService) ListPolicies(ctx context.Context, req *pb.ListPoliciesRequest) (*pb.ListPoliciesResponse, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	out := &pb.ListPoliciesResponse{}
	a.s.fsm.Read(func(st *state.State) { out.Policies = st.ACLPolicyList() })
	return out, nil
}

func (a *aclService) CreateToken(ctx context.Context, req *pb.CreateTokenRequest) (*pb.ACLToken, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	shown, rec, err := newSecretToken(req.Name, req.Policies, req.Management)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	cmd := &fsmpb.Command{Cmd: &fsmpb.Command_AclTokenCreate{AclTokenCreate: &fsmpb.ACLTokenCreate{Token: rec}}}
	if err := a.applyACL(cmd); err != nil {
		return nil, err
	}
	return a.withCreateTime(shown), nil
}

func (a *aclService) RevokeToken(ctx context.Context, req *pb.RevokeTokenRequest) (*pb.RevokeTokenResponse, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	cmd := &fsmpb.Command{Cmd: &fsmpb.Command_AclTokenRevoke{AclTokenRevoke: &fsmpb.ACLTokenRevoke{AccessorId: req.AccessorId}}}
	if err := a.applyACL(cmd); err != nil {
		return nil, err
	}
	return &pb.RevokeTokenResponse{}, nil
}

func (a *aclService) ListTokens(ctx context.Context, req *pb.ListTokensRequest) (*pb.ListTokensResponse, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	out := &pb.ListTokensResponse{}
	a.s.fsm.Read(func(st *state.State) { out.Tokens = st.ACLTokenList() })
	return out, nil
}

func (a *aclService) WhoAmI(ctx context.Context, req *pb.WhoAmIRequest) (*pb.ACLToken, error) {
	if err := a.enabled(); err != nil {
		return nil, err
	}
	c := callerFrom(ctx)
	if c.tok == nil {
		return nil, status.Error(codes.Unauthenticated, "no ACL token: pass --token or set SCHED_TOKEN")
	}
	return c.tok, nil
}

// LocalAgentToken makes a token for agents running in this process (`sched
// dev --acl`): a policy "local-agents" granting agent = "write" and a fresh
// token "local-agents" that replaces any earlier one. It waits for this
// server to lead, up to ctx's end, and returns the token's secret.
func (s *Server) LocalAgentToken(ctx context.Context) (string, error) {
	const name = "local-agents"
	for !s.IsLeader() {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("local agent token: no leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	policy := &fsmpb.Command{Cmd: &fsmpb.Command_AclPolicyPut{AclPolicyPut: &fsmpb.ACLPolicyPut{
		Policy: &pb.ACLPolicy{Name: name, Description: "agents of sched dev", Agent: "write"}}}}
	cmds := []*fsmpb.Command{policy}
	s.fsm.Read(func(st *state.State) {
		for _, t := range st.ACLTokenList() {
			if t.Name == name {
				cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_AclTokenRevoke{
					AclTokenRevoke: &fsmpb.ACLTokenRevoke{AccessorId: t.AccessorId}}})
			}
		}
	})
	shown, rec, err := newSecretToken(name, []string{name}, false)
	if err != nil {
		return "", err
	}
	cmds = append(cmds, &fsmpb.Command{Cmd: &fsmpb.Command_AclTokenCreate{AclTokenCreate: &fsmpb.ACLTokenCreate{Token: rec}}})
	for _, cmd := range cmds {
		r, err := s.propose(cmd)
		if err == nil {
			err = r.Err
		}
		if err != nil {
			return "", fmt.Errorf("local agent token: %w", err)
		}
	}
	return shown.Secret, nil
}
