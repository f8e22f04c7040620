package main_test

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startProc runs the sched binary with args until the test ends.
func startProc(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	var log syncBuffer
	cmd := exec.Command(schedBin, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return &log
}

// tlsFlags are the --tls-* flags for the files of ROLE-ID in dir.
func tlsFlags(dir, name string) []string {
	return []string{"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, name+".pem"),
		"--tls-key", filepath.Join(dir, name+"-key.pem")}
}

// TestTLSFromTheCLI generates a CA and certificates with `sched tls`,
// starts `sched server` and `sched agent` with them, and runs a job with a
// client certificate given through SCHED_TLS_*; a client without one and a
// server on 0.0.0.0 without TLS are refused.
func TestTLSFromTheCLI(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(schedBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("sched %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("tls", "ca", "create", "--dir", dir, "--days", "30")
	run("tls", "cert", "create", "--server", "s1", "--dir", dir)
	run("tls", "cert", "create", "--agent", "gpu-1", "--dir", dir)
	run("tls", "cert", "create", "--client", "alice", "--dir", dir)
	for _, key := range []string{"ca-key.pem", "server-s1-key.pem", "agent-gpu-1-key.pem", "client-alice-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, key))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v; want 0600", key, err, fi.Mode().Perm())
		}
	}
	if out, err := exec.Command(schedBin, "tls", "cert", "create", "--client", "alice", "--dir", dir).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "exists") {
		t.Fatalf("overwriting a certificate: %v %s", err, out)
	}

	addr := freeAddr(t)
	srvLog := startProc(t, append([]string{"server", "--bind", addr, "--data-dir", filepath.Join(dir, "data"),
		"--log-level", "warn"}, tlsFlags(dir, "server-s1")...)...)
	startProc(t, append([]string{"agent", "--addr", addr, "--no-gpu", "--log-level", "warn", "--run-as", currentUser(t),
		"--task-dir", t.TempDir()}, tlsFlags(dir, "agent-gpu-1")...)...)

	client := exec.Command(schedBin, "--addr", addr, "agent", "list")
	client.Env = append(os.Environ(), "SCHED_TLS_CA="+filepath.Join(dir, "ca.pem"),
		"SCHED_TLS_CERT="+filepath.Join(dir, "client-alice.pem"), "SCHED_TLS_KEY="+filepath.Join(dir, "client-alice-key.pem"))
	withClientCert := func(args ...string) (string, error) {
		c := exec.Command(schedBin, append([]string{"--addr", addr}, args...)...)
		c.Env = client.Env
		out, err := c.CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := withClientCert("agent", "list")
		if err == nil && strings.Contains(out, "gpu-1") && strings.Contains(out, " up ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent gpu-1 never came up over TLS: %v\n%s\nserver log:\n%s", err, out, srvLog)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hello, err := filepath.Abs(filepath.Join("..", "..", "examples", "hello.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := withClientCert("job", "submit", hello, "-w"); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("submit over TLS: %v\n%s", err, out)
	}
	if _, stderr, err := runSched(addr, "agent", "list"); err == nil || !strings.Contains(stderr, "may require TLS") {
		t.Fatalf("a client without a certificate: %v, %q; want a refusal that points at --tls-*", err, stderr)
	}
	agentAsClient := append(append([]string{"--addr", addr}, tlsFlags(dir, "agent-gpu-1")...), "job", "list")
	if out, err := exec.Command(schedBin, agentAsClient...).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "agent/gpu-1 may not call") {
		t.Fatalf("an agent certificate on the client API: %v\n%s", err, out)
	}

	out, err := exec.Command(schedBin, "server", "--bind", "0.0.0.0:0", "--data-dir", filepath.Join(dir, "open")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "without TLS") {
		t.Fatalf("server on 0.0.0.0 without TLS: %v\n%s", err, out)
	}
}

// currentUser names the user the tests run as, for an agent's --run-as.
func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
