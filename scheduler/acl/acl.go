// Package acl decides who may do what: policies grant capabilities on pools
// and on the cluster, tokens name policies, and Allow checks one action of
// one token against them. It is pure: no I/O, no clock, no goroutines.
//
// Rules only grant, and grants add up: a token's capability on a pool is
// the highest any rule of any of its policies gives that pool. A rule names
// a pool either exactly, and then covers the pool's whole subtree (admin of
// "studio" administers "studio/ingest" too), or as a prefix ending in "*"
// ("studio/*" covers every pool whose path starts with "studio/"; "*"
// covers every pool). Pool capabilities are ordered read < submit < admin,
// cluster capabilities read < operator. A management token may do
// everything, including managing ACLs.
package acl

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Level is a capability level; each includes the ones below it.
type Level int

// Capability levels. Pool rules use Read, Submit and Admin; the cluster rule
// Read and Operator; the agent rule Write.
const (
	None Level = iota
	Read
	Submit
	Admin
	Operator
	Write
)

var levelNames = map[Level]string{None: "none", Read: "read", Submit: "submit", Admin: "admin",
	Operator: "operator", Write: "write"}

// String names a level as policy files spell it.
func (l Level) String() string {
	if n, ok := levelNames[l]; ok {
		return n
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// Sentinel errors. A *Denied unwraps to ErrDenied; bad policies wrap
// ErrInvalidPolicy.
var (
	ErrDenied        = errors.New("permission denied")
	ErrInvalidPolicy = errors.New("invalid policy")
)

// PoolRule grants Level on the pools Pattern names.
type PoolRule struct {
	Pattern string
	Level   Level
}

// Policy is a named set of rules.
type Policy struct {
	Name        string
	Description string
	Pools       []PoolRule
	// Cluster is None, Read or Operator.
	Cluster Level
	// Agent is None or Write: Write lets a token open agent sessions.
	Agent Level
}

// Token is a resolved token: who it is and which policies it names. The
// secret is not part of it.
type Token struct {
	AccessorID string
	Name       string
	Policies   []string
	Management bool
}

// Action is what a call wants to do.
type Action int

// Actions. Pool actions need a pool; the others ignore it.
const (
	PoolRead Action = iota + 1
	PoolSubmit
	PoolAdmin
	ClusterRead
	ClusterOperator
	AgentWrite
	ManageACL
)

var actionNames = map[Action]string{PoolRead: "read", PoolSubmit: "submit", PoolAdmin: "admin",
	ClusterRead: "cluster read", ClusterOperator: "cluster operator", AgentWrite: "agent write",
	ManageACL: "management"}

// String names the capability an action needs.
func (a Action) String() string {
	if n, ok := actionNames[a]; ok {
		return n
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Denied says why a token may not do an action.
type Denied struct {
	Accessor string
	Name     string
	Action   Action
	Pool     string
}

// Error names the token, the missing capability and the pool.
func (d *Denied) Error() string {
	who := fmt.Sprintf("token %q (accessor %s)", d.Name, d.Accessor)
	switch d.Action {
	case PoolRead, PoolSubmit, PoolAdmin:
		return fmt.Sprintf("%s lacks %q on pool %q", who, d.Action.String(), d.Pool)
	case ManageACL:
		return who + " is not a management token"
	}
	return fmt.Sprintf("%s lacks %q", who, d.Action.String())
}

// Unwrap makes a Denied match ErrDenied.
func (d *Denied) Unwrap() error { return ErrDenied }

// Allow decides whether tok may do act (on pool, for pool actions), given
// the policies by name. Policies a token names that no longer exist grant
// nothing. It returns nil or a *Denied.
func Allow(tok Token, policies map[string]*Policy, act Action, pool string) error {
	if tok.Management {
		return nil
	}
	if have(tok, policies, act, pool) {
		return nil
	}
	return &Denied{Accessor: tok.AccessorID, Name: tok.Name, Action: act, Pool: pool}
}

// poolNeeds is the level each pool action needs.
var poolNeeds = map[Action]Level{PoolRead: Read, PoolSubmit: Submit, PoolAdmin: Admin}

func have(tok Token, policies map[string]*Policy, act Action, pool string) bool {
	switch act {
	case PoolRead, PoolSubmit, PoolAdmin:
		return PoolLevel(tok, policies, pool) >= poolNeeds[act]
	case ClusterRead:
		return clusterLevel(tok, policies) >= Read
	case ClusterOperator:
		return clusterLevel(tok, policies) >= Operator
	case AgentWrite:
		for _, name := range tok.Policies {
			if p := policies[name]; p != nil && p.Agent >= Write {
				return true
			}
		}
	}
	return false
}

// PoolLevel is the highest level tok's policies grant on pool.
func PoolLevel(tok Token, policies map[string]*Policy, pool string) Level {
	if tok.Management {
		return Admin
	}
	best := None
	for _, name := range tok.Policies {
		p := policies[name]
		if p == nil {
			continue
		}
		for _, r := range p.Pools {
			if r.Level > best && Matches(r.Pattern, pool) {
				best = r.Level
			}
		}
	}
	return best
}

func clusterLevel(tok Token, policies map[string]*Policy) Level {
	best := None
	for _, name := range tok.Policies {
		if p := policies[name]; p != nil && p.Cluster > best {
			best = p.Cluster
		}
	}
	return best
}

// Matches reports whether a rule pattern covers a pool: a prefix ending in
// "*" covers the paths that start with it; an exact path covers itself and
// its subtree.
func Matches(pattern, pool string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(pool, prefix)
	}
	return pool == pattern || strings.HasPrefix(pool, pattern+"/")
}

// HashSecret is what the state stores for a token's secret.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ParseLevel reads a capability as policy files spell it; kind says which
// rule it is for ("pool", "cluster" or "agent"), which decides the levels
// allowed.
func ParseLevel(kind, s string) (Level, error) {
	allowed := map[string][]Level{"pool": {Read, Submit, Admin}, "cluster": {Read, Operator}, "agent": {Write}}[kind]
	if s == "" || s == "none" {
		return None, nil
	}
	var names []string
	for _, l := range allowed {
		if l.String() == s {
			return l, nil
		}
		names = append(names, l.String())
	}
	return None, fmt.Errorf("%w: %s capability %q: want one of %s", ErrInvalidPolicy, kind, s,
		strings.Join(names, ", "))
}

// Validate checks a policy's name and rules.
func (p *Policy) Validate() error {
	if err := ValidateName(p.Name); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range p.Pools {
		if err := validatePattern(r.Pattern); err != nil {
			return fmt.Errorf("policy %q: %w", p.Name, err)
		}
		if seen[r.Pattern] {
			return fmt.Errorf("%w: policy %q: pool %q has two rules", ErrInvalidPolicy, p.Name, r.Pattern)
		}
		seen[r.Pattern] = true
		if r.Level < Read || r.Level > Admin {
			return fmt.Errorf("%w: policy %q: pool %q: capability %s is not a pool capability",
				ErrInvalidPolicy, p.Name, r.Pattern, r.Level)
		}
	}
	if p.Cluster != None && p.Cluster != Read && p.Cluster != Operator {
		return fmt.Errorf("%w: policy %q: cluster capability %s: want read or operator", ErrInvalidPolicy, p.Name, p.Cluster)
	}
	if p.Agent != None && p.Agent != Write {
		return fmt.Errorf("%w: policy %q: agent capability %s: want write", ErrInvalidPolicy, p.Name, p.Agent)
	}
	return nil
}

// ValidateName checks a policy or token name: 1 to 128 letters, digits,
// '-', '_' or '.'.
func ValidateName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("%w: name %q must have 1 to 128 characters", ErrInvalidPolicy, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%w: name %q: character %q not allowed (letters, digits, - _ .)", ErrInvalidPolicy, name, r)
		}
	}
	return nil
}

func validatePattern(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty pool pattern", ErrInvalidPolicy)
	}
	body := strings.TrimSuffix(p, "*")
	if strings.Contains(body, "*") {
		return fmt.Errorf("%w: pool pattern %q: '*' only at the end", ErrInvalidPolicy, p)
	}
	if strings.HasPrefix(p, "/") || strings.Contains(body, "//") || (body != "" && !strings.HasSuffix(p, "*") && strings.HasSuffix(body, "/")) {
		return fmt.Errorf("%w: pool pattern %q is not a pool path", ErrInvalidPolicy, p)
	}
	return nil
}

// SortedNames returns a policy map's names in order.
func SortedNames(policies map[string]*Policy) []string {
	names := make([]string, 0, len(policies))
	for n := range policies {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
