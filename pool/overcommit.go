package pool

import (
	"fmt"
	"strings"
)

// EffectiveGuarantee is what a pool guarantees its subtree: its own
// guarantee, or, for a pool that guarantees nothing at all, the sum of its
// children's effective guarantees (Put lets such a pool group children
// that have guarantees without bounding them). An unknown pool has none.
func (t *Tree) EffectiveGuarantee(path string) Resources {
	return effectiveGuarantee(t, t.childIndex(), path)
}

func effectiveGuarantee(t *Tree, children map[string][]string, path string) Resources {
	q := t.pools[path]
	if !q.Guaranteed.IsZero() {
		return q.Guaranteed
	}
	var sum Resources
	for _, c := range children[path] {
		sum = sum.Add(effectiveGuarantee(t, children, c))
	}
	return sum
}

// childIndex maps each pool ("" for the root) to its sorted children.
func (t *Tree) childIndex() map[string][]string {
	out := map[string][]string{}
	for _, p := range t.Paths() {
		out[Parent(p)] = append(out[Parent(p)], p)
	}
	return out
}

// OverCommit returns one line per resource on which the top-level pools'
// effective guarantees (see EffectiveGuarantee) add up to more than the
// cluster has, naming each contributing pool; nil when the guarantees fit.
// Over-committed guarantees cannot all be honoured at once: preemption
// takes capacity back only from work above its pool's guarantee.
func (t *Tree) OverCommit(cluster Resources) []string {
	children := t.childIndex()
	top := children[""]
	effs := make([]Resources, len(top))
	var sum Resources
	for i, p := range top {
		effs[i] = effectiveGuarantee(t, children, p)
		sum = sum.Add(effs[i])
	}
	var out []string
	sv, cv := sum.values(), cluster.values()
	for i, name := range ResourceNames {
		if sv[i] <= cv[i] {
			continue
		}
		var parts []string
		for j, p := range top {
			if v := effs[j].values()[i]; v > 0 {
				parts = append(parts, p+" "+FormatQuantity(name, v))
			}
		}
		out = append(out, fmt.Sprintf("top-level pools guarantee %s %s in all (%s), more than the cluster's %s",
			name, FormatQuantity(name, sv[i]), strings.Join(parts, ", "), FormatQuantity(name, cv[i])))
	}
	return out
}
