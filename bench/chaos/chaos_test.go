package chaos_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/bench/chaos"
)

// TestChaosShort is the short run make test includes: one round of every
// fault against three servers and three agents as processes (partitions
// and a full disk only as root, which the run says). It fails if any
// acknowledged job is lost, renumbered, duplicated, failed or unfinished,
// if a task ran to its end twice without a fault to explain it, or if a
// round did not recover.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes and injects faults for about two minutes")
	}
	dir := t.TempDir()
	root := filepath.Join("..", "..")
	build := func(out, pkg string) string {
		bin := filepath.Join(dir, out)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
		return bin
	}
	sched := build("sched", "./cmd/sched")
	harness := build("chaos", "./bench/chaos/cmd/chaos")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// The run's data dirs, logs and evidence stay when the test fails (the
	// harness names the folder), so they live outside t.TempDir, which the
	// testing package removes whatever the outcome.
	runDir, err := os.MkdirTemp("", "banyan-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(runDir)
		}
	})
	cmd := exec.CommandContext(ctx, harness, "-sched", sched, "-rounds", "1", "-hold", "4s", "-dir", runDir)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	report := string(out)
	if !strings.Contains(report, "lost 0, renumbered 0, failed 0, unfinished 0, duplicated jobs 0") {
		t.Fatalf("an acknowledged job was lost, renumbered, failed, left unfinished or duplicated (exit: %v)", err)
	}
	if strings.Contains(report, "problem (") {
		t.Fatalf("a round did not recover (exit: %v)", err)
	}
	if !strings.Contains(report, "twice: 0 unexplained") {
		t.Fatalf("a task ran to its end twice without a fault to explain it (exit: %v)", err)
	}
	if err != nil {
		t.Fatalf("chaos run failed: %v", err)
	}
}

// TestFreePortsDistinct: the ports of one cluster are never the same port
// twice (a port closed at once can come back from the next Listen).
func TestFreePortsDistinct(t *testing.T) {
	addrs, err := chaos.FreeLoopbackAddrs(64)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s given twice in %v", a, addrs)
		}
		seen[a] = true
	}
	if len(addrs) != 64 {
		t.Fatalf("%d addresses, want 64", len(addrs))
	}
}
