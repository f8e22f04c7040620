package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestACLDevCLI runs `sched dev --acl`: bootstrap, a policy from a file, a
// limited token whose submit to another pool fails with a clear message and
// a non-zero exit, and the same token's submit to its pool running on the
// dev agent (which got its own agent token).
func TestACLDevCLI(t *testing.T) {
	addr := freeAddr(t)
	dir := t.TempDir()
	dev := exec.Command(schedBin, "dev", "--acl", "--addr", addr, "--data-dir", filepath.Join(dir, "data"),
		"--agents", "1", "--lease", "2s", "--log-level", "warn")
	var devLog syncBuffer
	dev.Stdout, dev.Stderr = &devLog, &devLog
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devProc{cmd: dev, addr: addr}
	t.Cleanup(d.kill)

	// Bootstrap as soon as the server answers.
	var out, stderr string
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		out, stderr, err = d.run("acl", "bootstrap")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acl bootstrap: %v: %s\n%s", err, stderr, devLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	secret := regexp.MustCompile(`Secret ID:\s+(\S+)`).FindStringSubmatch(out)
	if secret == nil {
		t.Fatalf("bootstrap printed no secret:\n%s", out)
	}
	root := "--token=" + secret[1]
	if _, stderr, err := d.run("acl", "bootstrap"); err == nil || !strings.Contains(stderr, "already bootstrapped") {
		t.Fatalf("second bootstrap: %v: %s", err, stderr)
	}
	if _, stderr, err := d.run("job", "list"); err == nil || !strings.Contains(stderr, "no ACL token") {
		t.Fatalf("job list without a token: %v: %s", err, stderr)
	}
	if _, stderr, err := d.run(root, "pool", "create", "studio"); err != nil {
		t.Fatalf("pool create: %v: %s", err, stderr)
	}
	policy := filepath.Join(dir, "ingest.yaml")
	if err := os.WriteFile(policy, []byte("pools:\n  default: submit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := d.run(root, "acl", "policy", "apply", "ingest", policy); err != nil {
		t.Fatalf("policy apply: %v: %s", err, stderr)
	}
	out, stderr, err = d.run(root, "acl", "token", "create", "--name", "ci", "--policy", "ingest")
	if err != nil {
		t.Fatalf("token create: %v: %s", err, stderr)
	}
	ci := regexp.MustCompile(`Secret ID:\s+(\S+)`).FindStringSubmatch(out)
	if ci == nil {
		t.Fatalf("token create printed no secret:\n%s", out)
	}

	job := filepath.Join(dir, "job.yaml")
	write := func(pool string) {
		t.Helper()
		spec := "name: hi\npool: " + pool + "\ntasks:\n  - name: t\n    command: [\"true\"]\n    env: {S3_KEY: s3cr3t}\n"
		if err := os.WriteFile(job, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("studio")
	cmd := exec.Command(schedBin, "--addr", addr, "job", "submit", job)
	cmd.Env = append(os.Environ(), "SCHED_TOKEN="+ci[1])
	msg, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("submit to a pool without rights succeeded: %s", msg)
	}
	if want := `lacks "submit" on pool "studio"`; !strings.Contains(string(msg), want) {
		t.Fatalf("submit denial %q does not say %q", msg, want)
	}

	write("default")
	out, stderr, err = d.run("--token="+ci[1], "job", "submit", job, "-w")
	if err != nil {
		t.Fatalf("submit to its own pool: %v: %s\n%s", err, stderr, devLog.String())
	}
	id := strings.Fields(out)[0]
	out, stderr, err = d.run(root, "job", "show", id)
	if err != nil || !strings.Contains(out, "submitted by ci (accessor ") {
		t.Fatalf("job show does not name the submitter: %v: %s%s", err, out, stderr)
	}
	out, _, err = d.run("--token="+ci[1], "acl", "whoami")
	if err != nil || !strings.HasPrefix(out, "ci (accessor ") {
		t.Fatalf("whoami: %v: %s", err, out)
	}
}
