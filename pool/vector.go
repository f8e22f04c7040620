package pool

import "strings"

// numResources is the length of a Resources vector.
const numResources = 5

// fromValues builds a vector from values in ResourceNames order.
func fromValues(v [numResources]int64) Resources {
	return Resources{CPUMillis: v[0], MemoryBytes: v[1], GPUs: v[2], GPUMemoryBytes: v[3], NVENC: v[4]}
}

// minVec returns the per-resource minimum of a and b.
func minVec(a, b Resources) Resources {
	av, bv := a.values(), b.values()
	for i := range av {
		av[i] = min(av[i], bv[i])
	}
	return fromValues(av)
}

// used reports which resources r asks for (a positive amount).
func used(r Resources) [numResources]bool {
	var out [numResources]bool
	for i, v := range r.values() {
		out[i] = v > 0
	}
	return out
}

// fitsOn reports whether r <= c on the resources marked in on.
func fitsOn(r, c Resources, on [numResources]bool) bool {
	rv, cv := r.values(), c.values()
	for i := range rv {
		if on[i] && rv[i] > cv[i] {
			return false
		}
	}
	return true
}

// dominant is the largest fraction r_i/c_i over resources where c has
// some; resources the cluster has none of are left out.
func dominant(r, c Resources) float64 {
	rv, cv := r.values(), c.values()
	d := 0.0
	for i := range rv {
		if cv[i] > 0 {
			d = max(d, float64(rv[i])/float64(cv[i]))
		}
	}
	return d
}

// formatSome formats the named resources of r as "cpu=16,gpu=2".
func formatSome(r Resources, names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		v, _ := r.Get(n)
		parts[i] = n + "=" + FormatQuantity(n, v)
	}
	return strings.Join(parts, ",")
}
