package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A submit with SCHED_TIMING set reports its phases on stderr, and one
// without it reports nothing.
func TestSubmitTimingLine(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 0)
	job := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(job, []byte("name: timed\npool: default\ntasks:\n  - command: [/bin/true]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func(env ...string) (string, string) {
		cmd := exec.Command(schedBin, "--addr", d.addr, "job", "submit", job)
		cmd.Env = append(os.Environ(), env...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("submit: %v: %s", err, e.String())
		}
		return o.String(), e.String()
	}
	out, stderr := submit("SCHED_TIMING=1")
	if !strings.Contains(out, "timed\t1 tasks") {
		t.Errorf("submit printed %q", out)
	}
	line := ""
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "sched timing: ") {
			line = l
		}
	}
	for _, phase := range []string{"main_unix_ns=", " build=", " prerun=", " read=", " dial=", " connect=", " rpc=", " print=", " total="} {
		if !strings.Contains(line, phase) {
			t.Errorf("timing line %q lacks %q", line, phase)
		}
	}
	if _, stderr := submit(); strings.Contains(stderr, "sched timing") {
		t.Fatalf("submit without SCHED_TIMING wrote %q", stderr)
	}
}
