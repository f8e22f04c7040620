package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGroupReadsKernelFiles reads memory.events, pids.events and
// cgroup.events as the kernel writes them, in a plain directory.
func TestGroupReadsKernelFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := &Group{dir: dir, limits: Limits{MemoryBytes: 64 << 20}}
	if g.OOMReason() != "" || g.PidsLimited() {
		t.Fatal("no event files: no OOM, no pids limit")
	}
	write("memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n")
	write("pids.events", "max 0\n")
	write("cgroup.events", "populated 1\nfrozen 0\n")
	if g.OOMReason() != "" || g.PidsLimited() {
		t.Fatal("zero counts reported as events")
	}
	if pop, err := g.Populated(); err != nil || !pop {
		t.Fatalf("Populated() = %v, %v", pop, err)
	}
	write("memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n")
	write("pids.events", "max 3\n")
	if r := g.OOMReason(); !strings.Contains(r, "out of memory") || !strings.Contains(r, "64Mi") {
		t.Errorf("OOMReason() = %q", r)
	}
	if !g.PidsLimited() {
		t.Error("PidsLimited() = false with max 3")
	}
	g.limits.MemoryBytes = 0
	if r := g.OOMReason(); !strings.Contains(r, "no limit") {
		t.Errorf("OOMReason() without an ask = %q", r)
	}
}
