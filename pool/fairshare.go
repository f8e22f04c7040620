package pool

import (
	"math"
	"slices"
	"strings"
)

// MinWeight is the weight of a pool that guarantees nothing, and the least
// weight any pool has: the dominant share of a guarantee of 1% of the
// cluster. Without a floor a pool with no guarantee would have weight 0 and
// an infinite share once it ran anything.
const MinWeight = 0.01

// Weight is a pool's fair-share weight: the dominant share of the cluster
// that its effective guarantee makes up (see Tree.EffectiveGuarantee), and
// at least MinWeight.
func (v *View) Weight(path string) float64 {
	return max(dominant(v.eff[path], v.cluster), MinWeight)
}

// Share is a pool's weighted dominant share: the largest fraction of the
// cluster it uses of any one resource (Rolled_r / cluster_r, over the
// resources the cluster has), divided by its Weight. A pool using exactly
// its guarantee's dominant share has Share 1 (when that is above
// MinWeight).
func (v *View) Share(path string) float64 {
	return dominant(v.rolled[path], v.cluster) / v.Weight(path)
}

// guaranteeRatio is how much of its guarantee a pool uses: the largest
// Rolled_r / guarantee_r over the resources it has a guarantee of; +Inf
// for a pool that guarantees nothing. Below 1 the pool is below its
// guarantee.
func (v *View) guaranteeRatio(path string) float64 {
	g, u := v.eff[path].values(), v.rolled[path].values()
	ratio, any := 0.0, false
	for i := range g {
		if g[i] > 0 {
			ratio, any = max(ratio, float64(u[i])/float64(g[i])), true
		}
	}
	if !any {
		return math.Inf(1)
	}
	return ratio
}

// orderKey is how Order ranks one pool against its siblings.
type orderKey struct {
	path  string
	below bool    // below its guarantee
	ratio float64 // guaranteeRatio
	share float64 // Share
}

func (v *View) orderKey(path string) orderKey {
	r := v.guaranteeRatio(path)
	return orderKey{path: path, below: r < 1, ratio: r, share: v.Share(path)}
}

// compareKeys ranks two sibling pools: those below their guarantee first,
// the furthest below (lowest guaranteeRatio) first; then ascending Share;
// then path.
func compareKeys(a, b orderKey) int {
	switch {
	case a.below != b.below:
		if a.below {
			return -1
		}
		return 1
	case a.below && a.ratio != b.ratio:
		if a.ratio < b.ratio {
			return -1
		}
		return 1
	case a.share != b.share:
		if a.share < b.share {
			return -1
		}
		return 1
	}
	return strings.Compare(a.path, b.path)
}

// Order returns the pools with pending work in the order the scheduler
// should serve them: the first is the pool to take the next task from.
//
// The rule is hierarchical dominant-resource fairness weighted by
// guarantee. Two pools are ranked by the first pair of sibling pools where
// their lines in the tree part (two top-level pools, or two children of
// a common ancestor); siblings are ranked by:
//  1. below their guarantee first (Rolled under the effective guarantee on
//     every guaranteed resource), furthest below first: lowest largest
//     Rolled_r / guarantee_r;
//  2. then ascending Share (weighted dominant share);
//  3. then path.
//
// For a flat tree this is: pools below their guarantee by how far below,
// then ascending Share, ties by path. The scheduler takes one task at a
// time from the pool first in Order and calls Add for it, which raises that
// pool's share; so pools that all want more than their guarantee take idle
// capacity in proportion to their guarantees, rather than the first to
// submit taking it all. Order is deterministic; it returns a new slice that
// is a permutation of pending, which it does not change.
func (v *View) Order(pending []string) []string {
	type entry struct {
		path  string
		chain []orderKey // top-level pool first, path last
	}
	entries := make([]entry, len(pending))
	for i, p := range pending {
		anc := Ancestors(p)
		chain := make([]orderKey, len(anc))
		for j, a := range anc {
			chain[len(anc)-1-j] = v.orderKey(a)
		}
		entries[i] = entry{path: p, chain: chain}
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		for k := 0; k < len(a.chain) && k < len(b.chain); k++ {
			if a.chain[k].path != b.chain[k].path {
				return compareKeys(a.chain[k], b.chain[k])
			}
		}
		return strings.Compare(a.path, b.path)
	})
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.path
	}
	return out
}
