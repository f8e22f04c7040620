package pool

import (
	"math"
	"testing"
)

func TestViewUsage(t *testing.T) {
	tr := studioTree(t)
	usage := map[string]Resources{"studio/ingest": res(t, "cpu=4"), "studio/render": res(t, "cpu=2,gpu=1")}
	v := NewView(tr, usage, res(t, "cpu=64,gpu=8"))
	if got := v.Rolled("studio"); got != res(t, "cpu=6,gpu=1") {
		t.Errorf("Rolled(studio) = %v", got)
	}
	v.Add("studio/ingest", res(t, "cpu=10"))
	v.Remove("studio/render", res(t, "gpu=1"))
	if got := v.Rolled("studio"); got != res(t, "cpu=16") {
		t.Errorf("Rolled(studio) after Add/Remove = %v", got)
	}
	if got := v.Rolled("studio/ingest"); got != res(t, "cpu=14") {
		t.Errorf("Rolled(studio/ingest) = %v", got)
	}
	if got := v.Idle(); got != res(t, "cpu=48,gpu=8") {
		t.Errorf("Idle = %v", got)
	}
	if usage["studio/ingest"] != res(t, "cpu=4") || len(usage) != 2 {
		t.Errorf("NewView's caller map changed: %v", usage)
	}
	if got := v.Rolled("nope"); !got.IsZero() {
		t.Errorf("Rolled(nope) = %v", got)
	}
}

func TestAdmitUnknownPool(t *testing.T) {
	v := NewView(NewTree(), nil, res(t, "cpu=4"))
	if d := v.Admit("ghost", res(t, "cpu=4")); !d.OK || !d.Borrowed {
		t.Errorf("Admit(ghost) = %+v, want borrowed", d)
	}
	if d := v.Admit("ghost", res(t, "cpu=5")); d.OK || d.Reason == "" {
		t.Errorf("Admit(ghost, too much) = %+v", d)
	}
	if !v.WithinGuarantee("ghost", Resources{}) {
		t.Error("a zero ask is not within guarantee")
	}
}

// TestFairShareConverges serves three pools that all want everything, one
// task at a time in Order, and checks each ends with its guarantee's share
// of the cluster, not the first submitter taking it all.
func TestFairShareConverges(t *testing.T) {
	tr := NewTree()
	for _, p := range []struct{ path, g string }{{"a", "cpu=10"}, {"b", "cpu=20,gpu=1"}, {"c", "cpu=30"}} {
		if err := tr.Put(p.path, quota(t, p.g, ""), true); err != nil {
			t.Fatal(err)
		}
	}
	v := NewView(tr, nil, res(t, "cpu=120,gpu=4"))
	task := res(t, "cpu=1")
	for v.Idle().CPUMillis > 0 {
		first := v.Order([]string{"c", "b", "a"})[0]
		v.Add(first, task)
	}
	// Weights: a 10/120, b max(20/120, 1/4) = 0.25, c 30/120 = 0.25.
	want := map[string]float64{"a": 120 * (1.0 / 12) / (1.0/12 + 0.25 + 0.25)}
	want["b"] = (120 - want["a"]) / 2
	want["c"] = want["b"]
	for p, w := range want {
		got := float64(v.Rolled(p).CPUMillis) / 1000
		if math.Abs(got-w) > 1.01 {
			t.Errorf("pool %s ran %.0f cpu, want about %.1f", p, got, w)
		}
	}
}
