package acl

import (
	"fmt"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"sigs.k8s.io/yaml"
)

// FromPB reads a wire policy into a Policy, checking every capability name
// and the policy itself.
func FromPB(p *pb.ACLPolicy) (*Policy, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no policy", ErrInvalidPolicy)
	}
	out := &Policy{Name: p.Name, Description: p.Description}
	for _, r := range p.Pools {
		l, err := ParseLevel("pool", r.Capability)
		if err != nil {
			return nil, fmt.Errorf("policy %q: pool %q: %w", p.Name, r.Pattern, err)
		}
		out.Pools = append(out.Pools, PoolRule{Pattern: r.Pattern, Level: l})
	}
	var err error
	if out.Cluster, err = ParseLevel("cluster", p.Cluster); err != nil {
		return nil, fmt.Errorf("policy %q: %w", p.Name, err)
	}
	if out.Agent, err = ParseLevel("agent", p.Agent); err != nil {
		return nil, fmt.Errorf("policy %q: %w", p.Name, err)
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// PB returns the wire form of a policy.
func (p *Policy) PB() *pb.ACLPolicy {
	out := &pb.ACLPolicy{Name: p.Name, Description: p.Description, Cluster: levelOrEmpty(p.Cluster),
		Agent: levelOrEmpty(p.Agent)}
	for _, r := range p.Pools {
		out.Pools = append(out.Pools, &pb.ACLPoolRule{Pattern: r.Pattern, Capability: r.Level.String()})
	}
	return out
}

func levelOrEmpty(l Level) string {
	if l == None {
		return ""
	}
	return l.String()
}

// TokenFromPB returns the authorizer's view of a wire token.
func TokenFromPB(t *pb.ACLToken) Token {
	return Token{AccessorID: t.GetAccessorId(), Name: t.GetName(), Policies: t.GetPolicies(),
		Management: t.GetManagement()}
}

// policyFile is the YAML form of a policy:
//
//	description: ingest pipeline
//	pools:
//	  studio/ingest: submit
//	  "studio/*": read
//	cluster: read
//	agent: write
type policyFile struct {
	Description string            `json:"description,omitempty"`
	Pools       map[string]string `json:"pools,omitempty"`
	Cluster     string            `json:"cluster,omitempty"`
	Agent       string            `json:"agent,omitempty"`
}

// ParseYAML reads a policy file (see policyFile) into the wire form, named
// name, with its rules sorted by pattern. Unknown keys and bad capabilities
// are errors.
func ParseYAML(name string, data []byte) (*pb.ACLPolicy, error) {
	var f policyFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%w: policy %q: %w", ErrInvalidPolicy, name, err)
	}
	out := &pb.ACLPolicy{Name: name, Description: f.Description, Cluster: f.Cluster, Agent: f.Agent}
	patterns := make([]string, 0, len(f.Pools))
	for p := range f.Pools {
		patterns = append(patterns, p)
	}
	sort.Strings(patterns)
	for _, p := range patterns {
		out.Pools = append(out.Pools, &pb.ACLPoolRule{Pattern: p, Capability: f.Pools[p]})
	}
	if _, err := FromPB(out); err != nil {
		return nil, err
	}
	return out, nil
}
