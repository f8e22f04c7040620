package cgroup_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/agent/cgroup"
	"github.com/banyan-sched/banyan/agent/cgroup/cgrouptest"
)

func TestManagerGroupLifecycle(t *testing.T) {
	m := cgrouptest.Manager(t)
	g, err := m.New("task/1", cgroup.Limits{MemoryBytes: 64 << 20, CPUMillis: 500, Pids: 32})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(g.Dir()), "task_1-") {
		t.Errorf("group dir %s", g.Dir())
	}
	for file, want := range cgroup.LimitFiles(cgroup.Limits{MemoryBytes: 64 << 20, CPUMillis: 500, Pids: 32}, m.Enabled()) {
		data, err := os.ReadFile(filepath.Join(g.Dir(), file))
		if err != nil {
			if file == "memory.swap.max" {
				continue // no swap accounting on this kernel
			}
			t.Fatalf("%s: %v", file, err)
		}
		if got := strings.TrimSpace(string(data)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	t.Logf("controllers enabled for tasks: %v; missing (limits not enforced): %v", m.Enabled(), m.Missing())
	if pop, err := g.Populated(); err != nil || pop {
		t.Errorf("Populated() = %v, %v on an empty group", pop, err)
	}
	if r := g.OOMReason(); r != "" {
		t.Errorf("OOMReason() = %q on a fresh group", r)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Dir()); !os.IsNotExist(err) {
		t.Errorf("group dir still there: %v", err)
	}
	if _, err := m.New("x", cgroup.Limits{Pids: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestSetupRefusesWithoutCgroupFS(t *testing.T) {
	dir := t.TempDir() // a plain directory: no cgroup.controllers
	if _, err := cgroup.Setup(cgroup.Options{Name: "x", Parent: dir}); err == nil || !strings.Contains(err.Error(), "cgroup.controllers") {
		t.Fatalf("Setup on a plain directory = %v, want an error naming cgroup.controllers", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte("cpu memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Looks like a cgroup, but the child has no cgroup.kill: refused, and
	// nothing is left behind.
	if _, err := cgroup.Setup(cgroup.Options{Name: "x", Parent: dir}); err == nil || !strings.Contains(err.Error(), "cgroup.kill") {
		t.Fatalf("Setup without cgroup.kill = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Errorf("left %s behind: %v", filepath.Join(dir, "x"), err)
	}
}
