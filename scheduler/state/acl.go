package state

import (
	"errors"
	"fmt"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// Sentinel errors of the ACL commands.
var (
	ErrACLBootstrapped  = errors.New("ACL system already bootstrapped: use the bootstrap token, or a management token, to create more")
	ErrACLPolicyMissing = errors.New("ACL policy not found")
	ErrACLTokenMissing  = errors.New("ACL token not found")
	ErrACLInvalidToken  = errors.New("invalid ACL token")
)

// aclState holds policies and tokens. Tokens are stored with the SHA-256 of
// their secret, never the secret.
type aclState struct {
	bootstrapped bool
	policies     map[string]*pb.ACLPolicy
	parsed       map[string]*acl.Policy
	tokens       map[string]*fsmpb.ACLTokenRecord // by accessor id
	byHash       map[string]string                // secret hash -> accessor id
}

func newACLState() *aclState {
	return &aclState{policies: map[string]*pb.ACLPolicy{}, parsed: map[string]*acl.Policy{},
		tokens: map[string]*fsmpb.ACLTokenRecord{}, byHash: map[string]string{}}
}

// ACLBootstrapped reports whether the ACL system has been bootstrapped.
func (s *State) ACLBootstrapped() bool { return s.acl.bootstrapped }

// ACLResolve finds the token whose secret has this SHA-256; the token is a
// copy without secret.
func (s *State) ACLResolve(secretHash []byte) (*pb.ACLToken, bool) {
	id, ok := s.acl.byHash[string(secretHash)]
	if !ok {
		return nil, false
	}
	return clone(s.acl.tokens[id].Token), true
}

// ACLPolicies returns the parsed policies by name, for acl.Allow. The map is
// shared: callers must not change it and must not keep it past the read.
func (s *State) ACLPolicies() map[string]*acl.Policy { return s.acl.parsed }

// ACLPolicy returns a copy of one policy.
func (s *State) ACLPolicy(name string) (*pb.ACLPolicy, bool) {
	p, ok := s.acl.policies[name]
	if !ok {
		return nil, false
	}
	return clone(p), true
}

// ACLPolicyList returns copies of every policy, by name.
func (s *State) ACLPolicyList() []*pb.ACLPolicy {
	out := make([]*pb.ACLPolicy, 0, len(s.acl.policies))
	for _, n := range acl.SortedNames(s.acl.parsed) {
		out = append(out, clone(s.acl.policies[n]))
	}
	return out
}

// ACLTokenList returns copies of every token (never a secret), by name then
// accessor.
func (s *State) ACLTokenList() []*pb.ACLToken {
	out := make([]*pb.ACLToken, 0, len(s.acl.tokens))
	for _, r := range s.acl.tokens {
		out = append(out, clone(r.Token))
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Name != out[b].Name {
			return out[a].Name < out[b].Name
		}
		return out[a].AccessorId < out[b].AccessorId
	})
	return out
}

func (s *State) applyACLBootstrap(now int64, c *fsmpb.ACLBootstrap, r *Result) {
	if s.acl.bootstrapped {
		r.Err = ErrACLBootstrapped
		return
	}
	if c.GetToken().GetToken() == nil || !c.Token.Token.Management {
		r.Err = fmt.Errorf("%w: the bootstrap token must be a management token", ErrACLInvalidToken)
		return
	}
	if r.Err = s.addToken(now, c.Token); r.Err == nil {
		s.acl.bootstrapped = true
	}
}

func (s *State) applyACLPolicyPut(now int64, c *fsmpb.ACLPolicyPut, r *Result) {
	p, err := acl.FromPB(c.Policy)
	if err != nil {
		r.Err = err
		return
	}
	stored := p.PB()
	stored.ModifyUnixMs = now
	s.acl.policies[p.Name] = stored
	s.acl.parsed[p.Name] = p
}

func (s *State) applyACLPolicyDelete(c *fsmpb.ACLPolicyDelete, r *Result) {
	if _, ok := s.acl.policies[c.Name]; !ok {
		r.Err = fmt.Errorf("%w: %q", ErrACLPolicyMissing, c.Name)
		return
	}
	// Tokens that name it keep the name; it grants them nothing.
	delete(s.acl.policies, c.Name)
	delete(s.acl.parsed, c.Name)
}

func (s *State) applyACLTokenCreate(now int64, c *fsmpb.ACLTokenCreate, r *Result) {
	r.Err = s.addToken(now, c.Token)
}

func (s *State) applyACLTokenRevoke(c *fsmpb.ACLTokenRevoke, r *Result) {
	rec, ok := s.acl.tokens[c.AccessorId]
	if !ok {
		r.Err = fmt.Errorf("%w: accessor %q", ErrACLTokenMissing, c.AccessorId)
		return
	}
	delete(s.acl.byHash, string(rec.SecretHash))
	delete(s.acl.tokens, c.AccessorId)
}

// addToken checks and stores a token record; it never stores a secret.
func (s *State) addToken(now int64, rec *fsmpb.ACLTokenRecord) error {
	if err := validateTokenRecord(rec, s.acl.policies); err != nil {
		return err
	}
	if _, ok := s.acl.tokens[rec.Token.AccessorId]; ok {
		return fmt.Errorf("%w: accessor %q exists", ErrACLInvalidToken, rec.Token.AccessorId)
	}
	if _, ok := s.acl.byHash[string(rec.SecretHash)]; ok {
		return fmt.Errorf("%w: secret already in use", ErrACLInvalidToken)
	}
	stored := clone(rec)
	stored.Token.Secret = ""
	if stored.Token.CreateUnixMs == 0 {
		stored.Token.CreateUnixMs = now
	}
	s.acl.tokens[stored.Token.AccessorId] = stored
	s.acl.byHash[string(stored.SecretHash)] = stored.Token.AccessorId
	return nil
}

func validateTokenRecord(rec *fsmpb.ACLTokenRecord, policies map[string]*pb.ACLPolicy) error {
	t := rec.GetToken()
	switch {
	case t == nil:
		return fmt.Errorf("%w: no token", ErrACLInvalidToken)
	case t.AccessorId == "":
		return fmt.Errorf("%w: no accessor id", ErrACLInvalidToken)
	case len(rec.SecretHash) != 32:
		return fmt.Errorf("%w: secret hash has %d bytes, want 32 (SHA-256)", ErrACLInvalidToken, len(rec.SecretHash))
	case t.Management && len(t.Policies) > 0:
		return fmt.Errorf("%w: a management token takes no policies", ErrACLInvalidToken)
	case !t.Management && len(t.Policies) == 0:
		return fmt.Errorf("%w: token %q names no policy (give --policy, or make it a management token)", ErrACLInvalidToken, t.Name)
	}
	if err := acl.ValidateName(t.Name); err != nil {
		return fmt.Errorf("%w: token name: %w", ErrACLInvalidToken, err)
	}
	for _, p := range t.Policies {
		if _, ok := policies[p]; !ok {
			return fmt.Errorf("%w: token %q: %w: %q", ErrACLInvalidToken, t.Name, ErrACLPolicyMissing, p)
		}
	}
	return nil
}

// writeACL appends the ACL records to a snapshot: meta, policies, tokens.
func (s *State) writeACL(write func(*fsmpb.SnapshotRecord) error) error {
	if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_AclMeta{
		AclMeta: &fsmpb.ACLMeta{Bootstrapped: s.acl.bootstrapped}}}); err != nil {
		return fmt.Errorf("write acl meta: %w", err)
	}
	for _, n := range acl.SortedNames(s.acl.parsed) {
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_AclPolicy{AclPolicy: s.acl.policies[n]}}); err != nil {
			return fmt.Errorf("write acl policy %s: %w", n, err)
		}
	}
	ids := make([]string, 0, len(s.acl.tokens))
	for id := range s.acl.tokens {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_AclToken{AclToken: s.acl.tokens[id]}}); err != nil {
			return fmt.Errorf("write acl token %s: %w", id, err)
		}
	}
	return nil
}

// readACLRecord restores one ACL snapshot record; ok is false for records
// that are not ACL records. Policies come before tokens in a snapshot.
func (s *State) readACLRecord(rec *fsmpb.SnapshotRecord) (ok bool, err error) {
	switch x := rec.Rec.(type) {
	case *fsmpb.SnapshotRecord_AclMeta:
		s.acl.bootstrapped = x.AclMeta.Bootstrapped
	case *fsmpb.SnapshotRecord_AclPolicy:
		p, err := acl.FromPB(x.AclPolicy)
		if err != nil {
			return true, fmt.Errorf("snapshot acl policy: %w", err)
		}
		s.acl.policies[p.Name] = x.AclPolicy
		s.acl.parsed[p.Name] = p
	case *fsmpb.SnapshotRecord_AclToken:
		t := x.AclToken.GetToken()
		if t == nil || len(x.AclToken.SecretHash) != 32 {
			return true, fmt.Errorf("snapshot acl token: %w: malformed record", ErrACLInvalidToken)
		}
		s.acl.tokens[t.AccessorId] = x.AclToken
		s.acl.byHash[string(x.AclToken.SecretHash)] = t.AccessorId
	default:
		return false, nil
	}
	return true, nil
}
