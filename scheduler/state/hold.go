package state

import "github.com/banyan-sched/banyan/pool"

// Holding capacity a guaranteed pool gives back.
//
// A pool within its guarantee that runs a stream of short tasks gives
// capacity back each time one ends. Lent at once to a pool that borrows
// (one with a backlog of long work), that capacity comes back only by
// preemption when the next short task arrives a moment later: a borrowed
// task is stopped for nothing, and the preemption rate limiter, not the
// cluster, sets how fast the guaranteed pool's work starts. So the leader
// holds what such a pool gave back for a short window (PlanLimits.Held):
// borrowers may not take it, the pool's own next tasks (and those of any
// pool within its guarantee) may. After the window the capacity is lent
// as before.

// UsagePeaks remembers, for each pool with a guarantee, the most it used
// lately (within a window of the clock the caller passes in). The leader
// keeps one and feeds it once per pass (State.HeldBack); it reads no clock
// and is not safe for concurrent use.
type UsagePeaks struct {
	windowMs int64
	peaks    map[string]usagePeak
}

// usagePeak is the most a pool used, and the last time it used that much
// (or more on some resource).
type usagePeak struct {
	r  pool.Resources
	at int64
}

// NewUsagePeaks returns peaks that hold capacity for windowMs after a pool
// last used it; 0 or less holds nothing.
func NewUsagePeaks(windowMs int64) *UsagePeaks {
	return &UsagePeaks{windowMs: windowMs, peaks: map[string]usagePeak{}}
}

// observe records that a pool uses cur at now and returns what to hold for
// it: the part of its peak within the window, up to its guarantee g, that
// it does not use now. Peaks count only up to the guarantee, so a pool
// above it keeps its whole guarantee's worth fresh.
func (u *UsagePeaks) observe(path string, cur, g pool.Resources, now int64) pool.Resources {
	c := minRes(cur, g)
	pk, ok := u.peaks[path]
	switch {
	case !ok || now-pk.at >= u.windowMs || pk.r.Fits(c):
		pk = usagePeak{r: c, at: now} // expired, or as much used again
	case !c.Fits(pk.r):
		pk = usagePeak{r: maxRes(pk.r, c), at: now} // more on some resource
	}
	if pk.r.IsZero() {
		delete(u.peaks, path)
		return pool.Resources{}
	}
	u.peaks[path] = pk
	return positive(pk.r.Sub(cur))
}

// HeldBack updates peaks with each pool's usage at now and returns, per
// pool, the capacity to hold for it in this pass (see PlanLimits.Held):
// what a pool with a guarantee used within the window, up to that
// guarantee, and does not use now. Pools that hold nothing are left out;
// the result is nil when none holds any. Usage is each job pool's own
// (work is submitted to leaf pools); ancestors' guarantees hold nothing.
func (s *State) HeldBack(peaks *UsagePeaks, now int64) map[string]pool.Resources {
	if peaks == nil || peaks.windowMs <= 0 {
		return nil
	}
	var out map[string]pool.Resources
	note := func(path string, cur pool.Resources) {
		q, ok := s.pools.Get(path)
		if !ok || q.Guaranteed.IsZero() {
			delete(peaks.peaks, path)
			return
		}
		if h := peaks.observe(path, cur, q.Guaranteed, now); !h.IsZero() {
			if out == nil {
				out = map[string]pool.Resources{}
			}
			out[path] = h
		}
	}
	for path, cur := range s.poolUsage {
		note(path, cur)
	}
	for path := range peaks.peaks {
		if _, ok := s.poolUsage[path]; !ok {
			note(path, pool.Resources{}) // it uses nothing now
		}
	}
	return out
}

func maxRes(a, b pool.Resources) pool.Resources {
	return pool.Resources{CPUMillis: max(a.CPUMillis, b.CPUMillis), MemoryBytes: max(a.MemoryBytes, b.MemoryBytes),
		GPUs: max(a.GPUs, b.GPUs), GPUMemoryBytes: max(a.GPUMemoryBytes, b.GPUMemoryBytes), NVENC: max(a.NVENC, b.NVENC)}
}

func minRes(a, b pool.Resources) pool.Resources {
	return pool.Resources{CPUMillis: min(a.CPUMillis, b.CPUMillis), MemoryBytes: min(a.MemoryBytes, b.MemoryBytes),
		GPUs: min(a.GPUs, b.GPUs), GPUMemoryBytes: min(a.GPUMemoryBytes, b.GPUMemoryBytes), NVENC: min(a.NVENC, b.NVENC)}
}

// positive returns r with its negative fields set to zero.
func positive(r pool.Resources) pool.Resources { return maxRes(r, pool.Resources{}) }

// reserve is what a pass holds back for pools (PlanLimits.Held): free is
// what the schedulable agents have free, held what is still held for each
// pool. A nil reserve holds nothing.
type reserve struct {
	free pool.Resources
	held map[string]pool.Resources
}

// newReserve starts a pass's reserve from the limits' holds; nil when
// there are none.
func (s *State) newReserve(held map[string]pool.Resources) *reserve {
	if len(held) == 0 {
		return nil
	}
	r := &reserve{held: make(map[string]pool.Resources, len(held))}
	for p, h := range held {
		r.held[p] = h
	}
	for _, a := range s.agents {
		if a.schedulable() {
			r.free = r.free.Add(positive(a.Capacity.Sub(a.Used)))
		}
	}
	return r
}

// blocks reports whether placing ask for a task of pool path would leave
// less free than is held for the other pools.
func (r *reserve) blocks(path string, ask pool.Resources) bool {
	if r == nil {
		return false
	}
	need := ask
	for p, h := range r.held {
		if p != path {
			need = need.Add(h)
		}
	}
	return !need.Fits(r.free)
}

// took records a placement of ask for pool path: the capacity is no
// longer free, and what it takes of the pool's own hold is no longer held.
func (r *reserve) took(path string, ask pool.Resources) {
	if r == nil {
		return
	}
	r.free = r.free.Sub(ask)
	if h, ok := r.held[path]; ok {
		r.held[path] = positive(h.Sub(ask))
	}
}

// freed records capacity a preemption frees.
func (r *reserve) freed(ask pool.Resources) {
	if r != nil {
		r.free = r.free.Add(ask)
	}
}
