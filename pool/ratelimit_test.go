package pool

import "testing"

func TestRateLimiter(t *testing.T) {
	r := &RateLimiter{PerSecond: 2, Burst: 4}
	steps := []struct {
		now  int64
		n    int
		want bool
		left int // Available afterwards
	}{
		{1000, 3, true, 1}, // starts full
		{1000, 2, false, 1},
		{1000, 0, true, 1},
		{1250, 1, true, 0},   // +0.5
		{1500, 1, true, 0},   // +0.5 makes 1
		{1499, 1, false, 0},  // time going back adds nothing
		{2000, 1, true, 0},   // +1
		{60000, 5, false, 4}, // refills to the burst, no more
		{60000, 4, true, 0},
		{60000, -1, true, 0},
	}
	for i, s := range steps {
		if got := r.Allow(s.now, s.n); got != s.want {
			t.Errorf("step %d: Allow(%d, %d) = %v, want %v", i, s.now, s.n, got, s.want)
		}
		if got := r.Available(s.now); got != s.left {
			t.Errorf("step %d: Available = %d, want %d", i, got, s.left)
		}
	}
	zero := &RateLimiter{}
	if zero.Allow(0, 1) || !zero.Allow(0, 0) {
		t.Error("a limiter with no burst allowed a token")
	}
}
