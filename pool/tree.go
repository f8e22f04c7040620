package pool

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Quota is a pool's share of the cluster: what it is guaranteed and its
// ceiling. A resource whose MaxSet entry is false has no ceiling (unlimited),
// which is different from a ceiling of zero.
type Quota struct {
	Guaranteed Resources `json:"guaranteed"`
	Max        Resources `json:"max"`
	// MaxSet marks which Max fields are set, in ResourceNames order.
	MaxSet [5]bool `json:"max_set"`
}

// Unlimited is the quota with no guarantee and no ceiling.
var Unlimited = Quota{}

// MaxOf returns the ceiling of the named resource and whether it is set.
func (q Quota) MaxOf(i int) (int64, bool) { return q.Max.values()[i], q.MaxSet[i] }

// ExceedsMax returns the names of the resources where r is above a set max.
func (q Quota) ExceedsMax(r Resources) []string {
	var out []string
	rv, mv := r.values(), q.Max.values()
	for i := range rv {
		if q.MaxSet[i] && rv[i] > mv[i] {
			out = append(out, ResourceNames[i])
		}
	}
	return out
}

// SetMax sets the named ceilings from r, for the names given.
func (q *Quota) SetMax(r Resources, names []string) error {
	fields := q.Max.fields()
	rv := r.values()
	for _, n := range names {
		idx := indexOf(n)
		if idx < 0 {
			return fmt.Errorf("unknown resource %q", n)
		}
		*fields[idx] = rv[idx]
		q.MaxSet[idx] = true
	}
	return nil
}

// MaxNames returns the names of the set ceilings.
func (q Quota) MaxNames() []string {
	var out []string
	for i, set := range q.MaxSet {
		if set {
			out = append(out, ResourceNames[i])
		}
	}
	return out
}

// MaxString formats the ceilings, "unlimited" for unset ones left out.
func (q Quota) MaxString() string {
	var parts []string
	for i, v := range q.Max.values() {
		if q.MaxSet[i] {
			parts = append(parts, ResourceNames[i]+"="+FormatQuantity(ResourceNames[i], v))
		}
	}
	if len(parts) == 0 {
		return "unlimited"
	}
	return strings.Join(parts, ",")
}

func indexOf(name string) int {
	for i, n := range ResourceNames {
		if n == name {
			return i
		}
	}
	return -1
}

// Sentinel errors of pool tree changes.
var (
	ErrInvalidPath   = errors.New("invalid pool path")
	ErrNoParent      = errors.New("parent pool does not exist")
	ErrExists        = errors.New("pool already exists")
	ErrNotFound      = errors.New("pool not found")
	ErrHasChildren   = errors.New("pool has child pools")
	ErrOverGuarantee = errors.New("children's guarantees exceed the parent's")
	ErrBadQuota      = errors.New("invalid quota")
)

// validSegment reports whether seg is one segment of a pool path: 1 to 63
// of lowercase letters, digits, '-' and '_', starting with a letter or a
// digit (the regular expression ^[a-z0-9][a-z0-9_-]{0,62}$, checked by hand
// so that no process pays for compiling it at start-up).
func validSegment(seg string) bool {
	if len(seg) == 0 || len(seg) > 63 {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidatePath checks a pool path such as "studio/ingest".
func ValidatePath(path string) error {
	if path == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPath)
	}
	for _, seg := range strings.Split(path, "/") {
		if !validSegment(seg) {
			return fmt.Errorf("%w %q: segment %q must be lowercase letters, digits, '-' or '_' (at most 63)", ErrInvalidPath, path, seg)
		}
	}
	return nil
}

// Parent returns the parent path of a pool, "" for a top-level pool.
func Parent(path string) string {
	if i := strings.LastIndex(path, "/"); i >= 0 {
		return path[:i]
	}
	return ""
}

// Tree is the pool tree: a value owned by the FSM. Methods that change it
// validate first and change nothing on error.
type Tree struct {
	pools map[string]Quota
}

// NewTree returns a tree holding the given pools (no validation).
func NewTree() *Tree { return &Tree{pools: map[string]Quota{}} }

// Get returns a pool's quota.
func (t *Tree) Get(path string) (Quota, bool) {
	q, ok := t.pools[path]
	return q, ok
}

// Paths returns every pool path, sorted.
func (t *Tree) Paths() []string {
	out := make([]string, 0, len(t.pools))
	for p := range t.pools {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Len is the number of pools.
func (t *Tree) Len() int { return len(t.pools) }

// Children returns the direct children of path ("" for top-level pools).
func (t *Tree) Children(path string) []string {
	var out []string
	for p := range t.pools {
		if Parent(p) == path {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// IsLeaf reports whether the pool exists and has no children.
func (t *Tree) IsLeaf(path string) bool {
	if _, ok := t.pools[path]; !ok {
		return false
	}
	return len(t.Children(path)) == 0
}

// Ancestors returns path and its ancestors, innermost first.
func Ancestors(path string) []string {
	var out []string
	for p := path; p != ""; p = Parent(p) {
		out = append(out, p)
	}
	return out
}

// Put creates (create=true) or updates a pool after validating the quota
// against the parent and the children.
func (t *Tree) Put(path string, q Quota, create bool) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	if n := q.Guaranteed.Negative(); n != "" {
		return fmt.Errorf("%w: pool %s: guaranteed %s is negative", ErrBadQuota, path, n)
	}
	if n := q.Max.Negative(); n != "" {
		return fmt.Errorf("%w: pool %s: max %s is negative", ErrBadQuota, path, n)
	}
	if n := q.Guaranteed.TooLarge(); n != "" {
		return fmt.Errorf("%w: pool %s: guaranteed %s is larger than %d", ErrBadQuota, path, n, int64(MaxQuantity))
	}
	if n := q.Max.TooLarge(); n != "" {
		return fmt.Errorf("%w: pool %s: max %s is larger than %d", ErrBadQuota, path, n, int64(MaxQuantity))
	}
	if over := q.ExceedsMax(q.Guaranteed); len(over) > 0 {
		return fmt.Errorf("%w: pool %s: guaranteed %s above its max", ErrBadQuota, path, strings.Join(over, ","))
	}
	_, exists := t.pools[path]
	switch {
	case create && exists:
		return fmt.Errorf("%w: %s", ErrExists, path)
	case !create && !exists:
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	parent := Parent(path)
	if parent != "" {
		pq, ok := t.pools[parent]
		if !ok {
			return fmt.Errorf("%w: %s (create %s first)", ErrNoParent, path, parent)
		}
		sum := q.Guaranteed
		for _, sib := range t.Children(parent) {
			if sib != path {
				sum = sum.Add(t.pools[sib].Guaranteed)
			}
		}
		if over := sum.Exceeds(pq.Guaranteed); len(over) > 0 && !pq.Guaranteed.IsZero() {
			return fmt.Errorf("%w: pool %s: %s guarantees of %s's children would be %s, parent guarantees %s",
				ErrOverGuarantee, path, strings.Join(over, ","), parent, sum, pq.Guaranteed)
		}
	}
	var childSum Resources
	for _, c := range t.Children(path) {
		childSum = childSum.Add(t.pools[c].Guaranteed)
	}
	if over := childSum.Exceeds(q.Guaranteed); len(over) > 0 && !q.Guaranteed.IsZero() {
		return fmt.Errorf("%w: pool %s: its children guarantee %s, more than %s", ErrOverGuarantee, path, childSum, q.Guaranteed)
	}
	t.pools[path] = q
	return nil
}

// Delete removes a pool without children.
func (t *Tree) Delete(path string) error {
	if _, ok := t.pools[path]; !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if c := t.Children(path); len(c) > 0 {
		return fmt.Errorf("%w: %s has %s", ErrHasChildren, path, strings.Join(c, ", "))
	}
	delete(t.pools, path)
	return nil
}

// CheckAsk returns an error naming the pool and resources when one task's
// ask is above the max of path or any ancestor: such a task could never run.
func (t *Tree) CheckAsk(path string, ask Resources) error {
	for _, p := range Ancestors(path) {
		q := t.pools[p]
		if over := q.ExceedsMax(ask); len(over) > 0 {
			parts := make([]string, len(over))
			for i, n := range over {
				a, _ := ask.Get(n)
				m, _ := q.Max.Get(n)
				parts[i] = fmt.Sprintf("%s %s > max %s", n, FormatQuantity(n, a), FormatQuantity(n, m))
			}
			return fmt.Errorf("ask above pool %s's max: %s", p, strings.Join(parts, ", "))
		}
	}
	return nil
}

// Admits reports whether adding ask to the usage of path keeps path and
// every ancestor within their max. usage holds each pool's own usage rolled
// up (a parent's entry includes its children's).
func (t *Tree) Admits(path string, usage map[string]Resources, ask Resources) bool {
	for _, p := range Ancestors(path) {
		q := t.pools[p]
		if len(q.ExceedsMax(usage[p].Add(ask))) > 0 {
			return false
		}
	}
	return true
}

// Clone returns a deep copy.
func (t *Tree) Clone() *Tree {
	c := NewTree()
	for p, q := range t.pools {
		c.pools[p] = q
	}
	return c
}
