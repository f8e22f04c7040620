package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJobWatchFollowsARestartAndExitCodes: `sched job watch` keeps
// following a job while its server is killed with SIGKILL and started
// again, and exits 0 when the job succeeds; it exits 1 for a failed job
// and 3 when no server answers for --give-up-after.
func TestJobWatchFollowsARestartAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	d := startDev(t, addr, filepath.Join(dir, "data"), 1)
	job := filepath.Join(dir, "slow.yaml")
	if err := os.WriteFile(job, []byte("name: slow\ntasks:\n  - name: t\n    command: [sleep, \"3\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, job)
	watch := exec.Command(schedBin, "--addr", addr, "job", "watch", id)
	var out syncBuffer
	watch.Stdout, watch.Stderr = &out, &out
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	time.Sleep(time.Second)
	d.kill()
	time.Sleep(time.Second)
	d2 := startDev(t, addr, filepath.Join(dir, "data"), 1)
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), id+" succeeded") {
			t.Fatalf("watch across a restart: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		_ = watch.Process.Kill()
		t.Fatalf("watch did not end:\n%s", out.String())
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\ntasks:\n  - name: t\n    command: [\"false\"]\n    retry: {max_attempts: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed := submit(t, d2, bad)
	code := func(args ...string) int {
		t.Helper()
		err := exec.Command(schedBin, args...).Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	if c := code("--addr", addr, "job", "watch", failed); c != 1 {
		t.Fatalf("watch of a failed job exited %d, want 1", c)
	}
	d2.kill()
	if c := code("--addr", addr, "job", "watch", failed, "--give-up-after", "2s"); c != 3 {
		t.Fatalf("watch with no server exited %d, want 3", c)
	}
	if c := code("--addr", addr, "job", "list"); c != 3 {
		t.Fatalf("a call with no server up exited %d, want 3", c)
	}
	if c := code("--addr", addr, "job", "watch"); c != 2 {
		t.Fatalf("watch without an id exited %d, want 2", c)
	}
}
