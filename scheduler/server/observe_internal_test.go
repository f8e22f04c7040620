package server

import (
	"testing"
	"time"
)

// A server whose applied index trails the commit index is caught up only
// while it applies, within the grace, what was committed: it keeps up
// under steady writes, and a server that stays behind is not ready.
func TestApplyWatch(t *testing.T) {
	var w applyWatch
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const grace = time.Second
	steps := []struct {
		ms              int
		applied, commit uint64
		want            bool
	}{
		{0, 10, 10, true},     // equal
		{250, 10, 12, false},  // behind, no sample a second old yet
		{500, 11, 14, false},  //
		{1000, 12, 20, true},  // the commit index a second ago (10) is applied
		{1250, 12, 30, true},  // 12 applied, a second ago commit was 12
		{1500, 13, 40, false}, // a second ago commit was 14: not applied
		{2000, 20, 50, true},  // a second ago commit was 20
		{3000, 30, 60, false}, // a second ago commit was 50: falls behind
		{3250, 60, 60, true},  // equal again
	}
	for _, s := range steps {
		if got := w.caughtUp(at(s.ms), s.applied, s.commit, grace); got != s.want {
			t.Errorf("at %dms applied %d commit %d: caughtUp %v, want %v", s.ms, s.applied, s.commit, got, s.want)
		}
	}
	if len(w.samples) > 25 {
		t.Errorf("%d samples kept", len(w.samples))
	}
}

func TestHealthAndReflectionRules(t *testing.T) {
	for _, m := range []string{methodHealthCheck, methodHealthWatch, methodHealthList, methodReflection, methodReflectionAlpha1} {
		if _, ok := methodChecks[m]; !ok {
			t.Errorf("no ACL rule for %s", m)
		}
	}
	if !localMethods[methodHealthCheck] {
		t.Error("health Check would be forwarded to the leader")
	}
}
