// Package pool holds Banyan's resource arithmetic and the pool tree: quotas,
// usage, admission and borrowing (View.Admit), fair order between pools
// (View.Order), the choice of preemption victims (View.Victims) and cost
// accounting. It is pure logic: no I/O, no clock, no goroutines; time comes
// in as unix milliseconds. It is given state and returns decisions, so
// every rule can be tested as data (see testdata/).
package pool

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Resources is a vector of the resources Banyan schedules. A zero field means
// "none of it". Quotas that need to tell "unlimited" apart use Limit.
type Resources struct {
	// CPUMillis is CPU in millicores (1000 = one core).
	CPUMillis int64 `json:"cpu_millis,omitempty"`
	// MemoryBytes is main memory in bytes.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// GPUs is a count of whole GPU devices.
	GPUs int64 `json:"gpus,omitempty"`
	// GPUMemoryBytes is GPU memory in bytes, summed over the GPUs used.
	GPUMemoryBytes int64 `json:"gpu_memory_bytes,omitempty"`
	// NVENC is a count of hardware encoder sessions.
	NVENC int64 `json:"nvenc,omitempty"`
}

// ResourceNames lists the resource names in display order, as used by
// ParseResources and String.
var ResourceNames = []string{"cpu", "memory", "gpu", "gpu_memory", "nvenc"}

// fields returns pointers to the fields in ResourceNames order.
func (r *Resources) fields() [5]*int64 {
	return [5]*int64{&r.CPUMillis, &r.MemoryBytes, &r.GPUs, &r.GPUMemoryBytes, &r.NVENC}
}

// values returns the fields in ResourceNames order.
func (r Resources) values() [5]int64 {
	return [5]int64{r.CPUMillis, r.MemoryBytes, r.GPUs, r.GPUMemoryBytes, r.NVENC}
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.CPUMillis + o.CPUMillis, r.MemoryBytes + o.MemoryBytes, r.GPUs + o.GPUs,
		r.GPUMemoryBytes + o.GPUMemoryBytes, r.NVENC + o.NVENC}
}

// Sub returns r - o; fields may go negative.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.CPUMillis - o.CPUMillis, r.MemoryBytes - o.MemoryBytes, r.GPUs - o.GPUs,
		r.GPUMemoryBytes - o.GPUMemoryBytes, r.NVENC - o.NVENC}
}

// Fits reports whether r fits inside capacity c on every resource.
func (r Resources) Fits(c Resources) bool {
	rv, cv := r.values(), c.values()
	for i := range rv {
		if rv[i] > cv[i] {
			return false
		}
	}
	return true
}

// IsZero reports whether every field is zero.
func (r Resources) IsZero() bool { return r == Resources{} }

// Negative returns the name of the first negative field, or "".
func (r Resources) Negative() string {
	for i, v := range r.values() {
		if v < 0 {
			return ResourceNames[i]
		}
	}
	return ""
}

// MaxQuantity is the largest amount of any one resource in an ask, a
// capacity or a quota (about 10^15: a petabyte of memory, a trillion cores
// in millicores). Sums of up to 8192 such amounts stay within int64, so
// usage arithmetic cannot overflow.
const MaxQuantity = 1 << 50

// DefaultAsk is what a task that names no resources asks for. It is the
// one rule for the CLI and the server: a submission or fan-out result whose
// task leaves its resources out (or all zero) gets this ask.
var DefaultAsk = Resources{CPUMillis: 100, MemoryBytes: 64 << 20}

// TooLarge returns the name of the first field above MaxQuantity, or "".
func (r Resources) TooLarge() string {
	for i, v := range r.values() {
		if v > MaxQuantity {
			return ResourceNames[i]
		}
	}
	return ""
}

// Exceeds returns the names of the resources where r is above c.
func (r Resources) Exceeds(c Resources) []string {
	var out []string
	rv, cv := r.values(), c.values()
	for i := range rv {
		if rv[i] > cv[i] {
			out = append(out, ResourceNames[i])
		}
	}
	return out
}

// Get returns the value of the named resource.
func (r Resources) Get(name string) (int64, bool) {
	for i, n := range ResourceNames {
		if n == name {
			return r.values()[i], true
		}
	}
	return 0, false
}

// String formats r as "cpu=2000m,memory=1Gi,..." leaving out zero fields.
func (r Resources) String() string {
	var parts []string
	for i, v := range r.values() {
		if v == 0 {
			continue
		}
		parts = append(parts, ResourceNames[i]+"="+FormatQuantity(ResourceNames[i], v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// FormatQuantity renders one resource amount for people: cpu in cores or
// millicores, memory in binary units, counts as plain numbers.
func FormatQuantity(name string, v int64) string {
	switch name {
	case "cpu":
		if v%1000 == 0 {
			return strconv.FormatInt(v/1000, 10)
		}
		return strconv.FormatInt(v, 10) + "m"
	case "memory", "gpu_memory":
		return FormatBytes(v)
	default:
		return strconv.FormatInt(v, 10)
	}
}

// FormatBytes renders a byte count in the largest binary unit it reaches:
// exact when that unit divides it ("16Gi"), else with one decimal ("23.5Gi").
func FormatBytes(v int64) string {
	units := []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if v >= u.size {
			if v%u.size == 0 {
				return strconv.FormatInt(v/u.size, 10) + u.suffix
			}
			return strconv.FormatFloat(float64(v)/float64(u.size), 'f', 1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

// ParseResources parses "cpu=4,memory=8Gi,gpu=1,gpu_memory=16Gi,nvenc=2".
// cpu takes cores ("2", "0.5") or millicores ("500m"); memory takes bytes or
// binary/decimal suffixes (Ki, Mi, Gi, Ti, K, M, G, T). An empty string is
// the zero vector.
func ParseResources(s string) (Resources, error) {
	r, _, err := ParseResourcesNamed(s)
	return r, err
}

// ParseResourcesNamed is ParseResources that also returns the canonical
// names of the resources the string gave, so that "cpu=0" (a ceiling of
// zero) stays apart from a resource not named at all (unlimited).
func ParseResourcesNamed(s string) (Resources, []string, error) {
	var r Resources
	var names []string
	s = strings.TrimSpace(s)
	if s == "" {
		return r, nil, nil
	}
	fields := r.fields()
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Resources{}, nil, fmt.Errorf("resource %q: want name=value", part)
		}
		name = normalizeName(name)
		idx := -1
		for i, n := range ResourceNames {
			if n == name {
				idx = i
			}
		}
		if idx < 0 {
			return Resources{}, nil, fmt.Errorf("unknown resource %q (known: %s)", name, strings.Join(ResourceNames, ", "))
		}
		for _, seen := range names {
			if seen == name {
				return Resources{}, nil, fmt.Errorf("resource %q given twice in %q: give each resource once", name, s)
			}
		}
		v, err := ParseQuantity(name, val)
		if err != nil {
			return Resources{}, nil, err
		}
		*fields[idx] = v
		names = append(names, name)
	}
	return r, names, nil
}

func normalizeName(n string) string {
	n = strings.ToLower(strings.TrimSpace(n))
	switch n {
	case "mem":
		return "memory"
	case "gpus":
		return "gpu"
	case "gpu-memory", "gpumem", "gpu_mem":
		return "gpu_memory"
	}
	return n
}

// ParseQuantity parses one amount of the named resource (see ParseResources).
func ParseQuantity(name, val string) (int64, error) {
	val = strings.TrimSpace(val)
	if val == "" {
		return 0, fmt.Errorf("resource %s: empty value", name)
	}
	if strings.HasPrefix(val, "-") {
		return 0, fmt.Errorf("resource %s: negative value %q", name, val)
	}
	var v int64
	var err error
	switch name {
	case "cpu":
		if m, ok := strings.CutSuffix(val, "m"); ok {
			if v, err = strconv.ParseInt(m, 10, 64); err != nil {
				return 0, fmt.Errorf("resource cpu: bad millicores %q", val)
			}
			break
		}
		v, err = floatQuantity(name, val, 1000, "core count")
	case "memory", "gpu_memory":
		v, err = parseBytes(name, val)
	default:
		if v, err = strconv.ParseInt(val, 10, 64); err != nil {
			return 0, fmt.Errorf("resource %s: bad count %q", name, val)
		}
	}
	if err != nil {
		return 0, err
	}
	if v < 0 || v > MaxQuantity {
		return 0, fmt.Errorf("resource %s: %q is outside [0, %d]", name, val, int64(MaxQuantity))
	}
	return v, nil
}

// floatQuantity parses a decimal amount times mult, rounded, refusing NaN,
// infinities and amounts above MaxQuantity (which int64 could not hold
// either).
func floatQuantity(name, val string, mult float64, what string) (int64, error) {
	f, err := strconv.ParseFloat(val, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("resource %s: bad %s %q", name, what, val)
	}
	switch {
	case math.IsNaN(f):
		return 0, fmt.Errorf("resource %s: %q is not a number", name, val)
	case math.IsInf(f, 0) || f*mult > MaxQuantity:
		return 0, fmt.Errorf("resource %s: %q is larger than %d", name, val, int64(MaxQuantity))
	case f < 0:
		return 0, fmt.Errorf("resource %s: negative value %q", name, val)
	}
	return int64(f*mult + 0.5), nil
}

func parseBytes(name, val string) (int64, error) {
	mult := int64(1)
	for _, s := range []struct {
		suffix string
		m      int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}} {
		if num, ok := strings.CutSuffix(val, s.suffix); ok {
			val, mult = num, s.m
			break
		}
	}
	return floatQuantity(name, val, float64(mult), "size")
}
