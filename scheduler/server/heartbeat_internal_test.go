package server

import (
	"testing"
	"time"
)

// TestHeartbeatTermsFor: the interval doubles, and the lease with it, until
// the fleet's heartbeats a second are within the bound.
func TestHeartbeatTermsFor(t *testing.T) {
	const lease = 10 * time.Second
	for _, c := range []struct {
		agents    int
		rate      float64
		level     int
		heartbeat time.Duration
	}{
		{0, 1000, 0, 2500 * time.Millisecond},
		{2500, 1000, 0, 2500 * time.Millisecond}, // exactly 1,000 a second
		{2501, 1000, 1, 5 * time.Second},
		{5000, 1000, 1, 5 * time.Second},
		{10000, 1000, 2, 10 * time.Second},
		{10001, 1000, 3, 20 * time.Second},
		{100000, 1000, 6, 160 * time.Second},
		{100000, 0, 0, 2500 * time.Millisecond},  // no bound
		{100000, -1, 0, 2500 * time.Millisecond}, // no bound
		{1 << 40, 1e-9, maxHeartbeatLevel, 2500 * time.Millisecond << maxHeartbeatLevel},
	} {
		got := heartbeatTermsFor(c.agents, lease, c.rate)
		if got.level != c.level || got.heartbeat != c.heartbeat || got.lease != 4*c.heartbeat {
			t.Errorf("%d agents at most %v/s: level %d, every %v, lease %v; want level %d, every %v, lease %v",
				c.agents, c.rate, got.level, got.heartbeat, got.lease, c.level, c.heartbeat, 4*c.heartbeat)
		}
		if rate := float64(c.agents) / got.heartbeat.Seconds(); c.rate > 0 && got.level < maxHeartbeatLevel && rate > c.rate {
			t.Errorf("%d agents every %v: %.0f heartbeats/s, over the bound %v", c.agents, got.heartbeat, rate, c.rate)
		}
	}
}
