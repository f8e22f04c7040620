package chaos_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChaosShort is the short run make test includes: one round of every
// fault against three servers and three agents as processes (partitions
// and a full disk only as root, which the run says). It fails if any
// acknowledged job is lost, renumbered, duplicated, failed or unfinished,
// or if a round did not recover. A task run to its end twice without a
// fault to explain it is reported, not failed: a known, open defect
// (issue 11) that make chaos fails on.
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
	cmd := exec.CommandContext(ctx, harness, "-sched", sched, "-rounds", "1", "-hold", "4s", "-dir", filepath.Join(dir, "run"))
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
	if err != nil && !strings.Contains(report, "0 unexplained") {
		// Known and open (issue 11): in about one round in a hundred an
		// agent's heartbeats and start events stop reaching the leader for
		// a lease while it starts many tasks, and those tasks run again
		// elsewhere. make chaos fails on it; here it is reported, so that
		// make test checks what is guaranteed today.
		t.Logf("KNOWN DEFECT: tasks ran to their end twice without a fault to explain it (see the report above)")
		return
	}
	if err != nil {
		t.Fatalf("chaos run failed: %v", err)
	}
}
