package pool

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// quota builds a quota from "cpu=4,gpu=1" strings; max names only the
// resources with a ceiling.
func quota(t testing.TB, guaranteed, maxes string) Quota {
	t.Helper()
	g, err := ParseResources(guaranteed)
	if err != nil {
		t.Fatal(err)
	}
	m, names, err := ParseResourcesNamed(maxes)
	if err != nil {
		t.Fatal(err)
	}
	q := Quota{Guaranteed: g}
	if err := q.SetMax(m, names); err != nil {
		t.Fatal(err)
	}
	return q
}

func res(t testing.TB, s string) Resources {
	t.Helper()
	r, err := ParseResources(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// studioTree is studio (g cpu=32,gpu=4, max cpu=64) with ingest
// (g cpu=16,gpu=2, max cpu=24) and render (g cpu=8, unlimited).
func studioTree(t testing.TB) *Tree {
	t.Helper()
	tr := NewTree()
	for _, p := range []struct{ path, g, m string }{
		{"studio", "cpu=32,gpu=4", "cpu=64"},
		{"studio/ingest", "cpu=16,gpu=2", "cpu=24"},
		{"studio/render", "cpu=8", ""},
	} {
		if err := tr.Put(p.path, quota(t, p.g, p.m), true); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestPutValidation(t *testing.T) {
	neg := Quota{Guaranteed: Resources{CPUMillis: -1}}
	negMax := Quota{Max: Resources{GPUs: -1}, MaxSet: [5]bool{2: true}}
	tests := []struct {
		name    string
		path    string
		q       Quota
		create  bool
		wantErr error
		mention string
	}{
		{"empty path", "", Unlimited, true, ErrInvalidPath, "empty"},
		{"upper case", "Studio", Unlimited, true, ErrInvalidPath, `"Studio"`},
		{"empty segment", "studio//x", Unlimited, true, ErrInvalidPath, `segment ""`},
		{"leading dash", "studio/-x", Unlimited, true, ErrInvalidPath, `"-x"`},
		{"too long", "a" + strings.Repeat("b", 63), Unlimited, true, ErrInvalidPath, "at most 63"},
		{"missing parent", "post/color", Unlimited, true, ErrNoParent, "create post first"},
		{"exists", "studio", Unlimited, true, ErrExists, "studio"},
		{"update missing", "post", Unlimited, false, ErrNotFound, "post"},
		{"negative guarantee", "post", neg, true, ErrBadQuota, "guaranteed cpu is negative"},
		{"negative max", "post", negMax, true, ErrBadQuota, "max gpu is negative"},
		{"guarantee above max", "post", quota(t, "cpu=8,gpu=2", "cpu=4,gpu=2"), true, ErrBadQuota, "guaranteed cpu above its max"},
		{"guarantee above zero max", "post", quota(t, "gpu=1", "gpu=0"), true, ErrBadQuota, "guaranteed gpu above its max"},
		{"children exceed parent", "studio/qc", quota(t, "cpu=9", ""), true, ErrOverGuarantee, "cpu guarantees of studio's children"},
		{"update beyond parent", "studio/ingest", quota(t, "cpu=16,gpu=5", ""), false, ErrOverGuarantee, "gpu"},
		{"parent below children", "studio", quota(t, "cpu=20,gpu=4", ""), false, ErrOverGuarantee, "its children guarantee"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := studioTree(t)
			before := tr.Clone()
			err := tr.Put(tt.path, tt.q, tt.create)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Put(%q) = %v, want %v mentioning %q", tt.path, err, tt.wantErr, tt.mention)
			}
			if !slices.Equal(tr.Paths(), before.Paths()) {
				t.Errorf("failed Put changed the tree: %v", tr.Paths())
			}
			for _, p := range before.Paths() {
				a, _ := tr.Get(p)
				b, _ := before.Get(p)
				if a != b {
					t.Errorf("failed Put changed %s", p)
				}
			}
		})
	}
}

func TestPutAccepts(t *testing.T) {
	tr := studioTree(t)
	// A sibling that fills the parent's guarantee exactly.
	if err := tr.Put("studio/qc", quota(t, "cpu=8,gpu=2", "gpu=0"), true); err == nil {
		t.Fatal("guarantee gpu=2 above max gpu=0 accepted")
	}
	if err := tr.Put("studio/qc", quota(t, "cpu=8,gpu=2", ""), true); err != nil {
		t.Fatal(err)
	}
	// A parent without guarantee does not bound its children's.
	if err := tr.Put("post", Unlimited, true); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("post/color", quota(t, "cpu=100", ""), true); err != nil {
		t.Fatal(err)
	}
	if got := tr.Children(""); !slices.Equal(got, []string{"post", "studio"}) {
		t.Errorf("Children(\"\") = %v", got)
	}
	if got := tr.Children("studio"); !slices.Equal(got, []string{"studio/ingest", "studio/qc", "studio/render"}) {
		t.Errorf("Children(studio) = %v", got)
	}
	if !tr.IsLeaf("post/color") || tr.IsLeaf("post") || tr.IsLeaf("nope") {
		t.Error("IsLeaf wrong")
	}
	if tr.Len() != 6 {
		t.Errorf("Len = %d", tr.Len())
	}
	if got := Ancestors("a/b/c"); !slices.Equal(got, []string{"a/b/c", "a/b", "a"}) {
		t.Errorf("Ancestors = %v", got)
	}
	if Parent("a") != "" || Parent("a/b/c") != "a/b" {
		t.Error("Parent wrong")
	}
}

func TestMaxAbsentZeroUnlimited(t *testing.T) {
	q := quota(t, "", "cpu=0,gpu=2")
	if m, set := q.MaxOf(0); !set || m != 0 {
		t.Errorf("cpu max = %d %v, want a set ceiling of 0", m, set)
	}
	if _, set := q.MaxOf(1); set {
		t.Error("memory max set, want unlimited")
	}
	if got := q.MaxNames(); !slices.Equal(got, []string{"cpu", "gpu"}) {
		t.Errorf("MaxNames = %v", got)
	}
	if got := q.MaxString(); got != "cpu=0,gpu=2" {
		t.Errorf("MaxString = %q", got)
	}
	if got := Unlimited.MaxString(); got != "unlimited" {
		t.Errorf("Unlimited.MaxString = %q", got)
	}
	huge := Resources{MemoryBytes: 1 << 50, CPUMillis: 1}
	if got := q.ExceedsMax(huge); !slices.Equal(got, []string{"cpu"}) {
		t.Errorf("ExceedsMax = %v, want [cpu] (memory is unlimited, cpu capped at 0)", got)
	}
	if got := q.ExceedsMax(Resources{GPUs: 2}); got != nil {
		t.Errorf("ExceedsMax at the ceiling = %v", got)
	}
	if err := q.SetMax(Resources{}, []string{"disk"}); err == nil {
		t.Error("SetMax accepted an unknown resource")
	}
}

func TestDelete(t *testing.T) {
	tr := studioTree(t)
	if err := tr.Delete("studio"); !errors.Is(err, ErrHasChildren) || !strings.Contains(err.Error(), "studio/ingest, studio/render") {
		t.Errorf("Delete(studio) = %v", err)
	}
	if err := tr.Delete("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(nope) = %v", err)
	}
	for _, p := range []string{"studio/ingest", "studio/render", "studio"} {
		if err := tr.Delete(p); err != nil {
			t.Fatalf("Delete(%s): %v", p, err)
		}
	}
	if tr.Len() != 0 {
		t.Errorf("Len after deletes = %d", tr.Len())
	}
}

func TestCheckAsk(t *testing.T) {
	tr := studioTree(t)
	if err := tr.Put("studio/render/gpu", quota(t, "", "gpu=0"), true); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, ask, want string }{
		{"studio/ingest", "cpu=24", ""},
		{"studio/ingest", "cpu=25", "ask above pool studio/ingest's max: cpu 25 > max 24"},
		{"studio/render", "cpu=65", "ask above pool studio's max: cpu 65 > max 64"},
		{"studio/render", "cpu=1000,memory=1Ti", "studio's max: cpu 1000 > max 64"},
		{"studio/render/gpu", "gpu=1", "pool studio/render/gpu's max: gpu 1 > max 0"},
		{"studio/render/gpu", "cpu=8", ""},
	}
	for _, tt := range tests {
		err := tr.CheckAsk(tt.path, res(t, tt.ask))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckAsk(%s, %s) = %v", tt.path, tt.ask, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckAsk(%s, %s) = %v, want %q", tt.path, tt.ask, err, tt.want)
		}
	}
}

func TestAdmits(t *testing.T) {
	tr := studioTree(t)
	usage := map[string]Resources{
		"studio/ingest": res(t, "cpu=20"),
		"studio/render": res(t, "cpu=40"),
		"studio":        res(t, "cpu=60"),
	}
	tests := []struct {
		path, ask string
		want      bool
	}{
		{"studio/ingest", "cpu=4", true},  // ingest 24/24, studio 64/64
		{"studio/ingest", "cpu=5", false}, // ingest max
		{"studio/render", "cpu=4", true},  // render unlimited, studio at 64
		{"studio/render", "cpu=5", false}, // studio max
		{"studio/render", "memory=1Ti,gpu=100", true},
	}
	for _, tt := range tests {
		if got := tr.Admits(tt.path, usage, res(t, tt.ask)); got != tt.want {
			t.Errorf("Admits(%s, %s) = %v, want %v", tt.path, tt.ask, got, tt.want)
		}
	}
}

func TestOverCommit(t *testing.T) {
	tr := studioTree(t)
	if err := tr.Put("post", Unlimited, true); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("post/color", quota(t, "cpu=24,gpu=2", ""), true); err != nil {
		t.Fatal(err)
	}
	if got := tr.EffectiveGuarantee("post"); got != res(t, "cpu=24,gpu=2") {
		t.Errorf("EffectiveGuarantee(post) = %v", got)
	}
	if got := tr.OverCommit(res(t, "cpu=64,gpu=8")); len(got) != 0 {
		t.Errorf("OverCommit with room = %v", got)
	}
	got := tr.OverCommit(res(t, "cpu=48,gpu=8,memory=1Ti"))
	want := []string{"top-level pools guarantee cpu 56 in all (post 24, studio 32), more than the cluster's 48"}
	if !slices.Equal(got, want) {
		t.Errorf("OverCommit = %q, want %q", got, want)
	}
	got = tr.OverCommit(Resources{})
	if len(got) != 2 || !strings.Contains(got[1], "gpu 6 in all (post 2, studio 4), more than the cluster's 0") {
		t.Errorf("OverCommit of an empty cluster = %q", got)
	}
}
