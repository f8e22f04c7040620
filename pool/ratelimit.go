package pool

// RateLimiter is a token bucket over time the caller passes in (unix ms):
// it holds at most Burst tokens, starts full, and gains PerSecond tokens a
// second. The leader uses one to bound how many tasks it preempts. The zero
// state is ready to use once PerSecond and Burst are set; it is not safe
// for concurrent use.
type RateLimiter struct {
	// PerSecond is the refill rate in tokens per second.
	PerSecond float64
	// Burst is the bucket's size.
	Burst int

	tokens  float64
	lastMs  int64
	started bool
}

// refill brings the bucket up to now. Time that goes backwards adds
// nothing and does not move the bucket's clock back.
func (r *RateLimiter) refill(now int64) {
	if !r.started {
		r.tokens, r.lastMs, r.started = float64(r.Burst), now, true
		return
	}
	if now > r.lastMs {
		r.tokens = min(float64(r.Burst), r.tokens+float64(now-r.lastMs)*r.PerSecond/1000)
		r.lastMs = now
	}
}

// Allow consumes n tokens and returns true when the bucket holds at least
// n at now; otherwise it consumes nothing and returns false. n <= 0 is
// always allowed.
func (r *RateLimiter) Allow(now int64, n int) bool {
	r.refill(now)
	if n <= 0 {
		return true
	}
	if float64(n) > r.tokens {
		return false
	}
	r.tokens -= float64(n)
	return true
}

// Available returns the whole tokens the bucket holds at now, without
// consuming any: how many Allow(now, 1) calls in a row would succeed.
func (r *RateLimiter) Available(now int64) int {
	r.refill(now)
	return int(r.tokens)
}
