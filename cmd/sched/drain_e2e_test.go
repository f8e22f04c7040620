package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentDrainAndEligibility drains one of two `sched dev` agents with a
// deadline: its long task is stopped at the deadline and runs again on the
// other agent without using a retry, new work avoids it, `agent list`
// shows it drained, and `eligibility on` brings it back.
func TestAgentDrainAndEligibility(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, freeAddr(t), filepath.Join(dir, "data"), 2)
	agents := func() map[string]map[string]any {
		t.Helper()
		out, stderr, err := d.run("-o", "json", "agent", "list")
		if err != nil {
			t.Fatalf("agent list: %v %s", err, stderr)
		}
		var resp struct {
			Agents []map[string]any `json:"agents"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatal(err)
		}
		m := map[string]map[string]any{}
		for _, a := range resp.Agents {
			m[a["id"].(string)] = a
		}
		return m
	}
	job := filepath.Join(dir, "long.yaml")
	if err := os.WriteFile(job, []byte("name: long\ntasks:\n  - name: t\n    command: [sleep, \"4\"]\n    resources: {cpu: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, job)
	var on string
	for deadline := time.Now().Add(15 * time.Second); on == ""; time.Sleep(100 * time.Millisecond) {
		j := showJob(t, d, id)
		if len(j.Tasks) > 0 && len(j.Tasks[0].Attempts) > 0 && j.Tasks[0].Attempts[0].StartedMs != 0 {
			on = j.Tasks[0].Attempts[0].AgentID
		}
		if time.Now().After(deadline) {
			t.Fatalf("task never started: %+v", j)
		}
	}
	out, stderr, err := d.run("agent", "drain", on, "--deadline", "1s")
	if err != nil || !strings.Contains(out, "draining") {
		t.Fatalf("drain: %v %s%s", err, out, stderr)
	}
	if _, stderr, err := d.run("agent", "drain", on, "--deadline", "-1s"); err == nil || !strings.Contains(stderr, "--deadline") {
		t.Fatalf("a negative deadline: %v %s", err, stderr)
	}
	// New work avoids the draining agent.
	other := submit(t, d, "../../examples/hello.yaml")
	j := waitJobState(t, d, other, "succeeded", 20*time.Second)
	if got := j.Tasks[0].Attempts[0].AgentID; got == on {
		t.Fatalf("new work placed on draining agent %s", on)
	}
	// The long task is stopped at the deadline and finishes elsewhere,
	// without using a retry.
	j = waitJobState(t, d, id, "succeeded", 30*time.Second)
	atts := j.Tasks[0].Attempts
	if len(atts) != 2 || atts[0].AgentID != on || atts[0].Outcome != "preempted" || atts[1].AgentID == on {
		t.Fatalf("attempts after the drain: %+v", atts)
	}
	var task map[string]any
	out, _, _ = d.run("-o", "json", "job", "show", id)
	var raw struct {
		Tasks []map[string]any `json:"tasks"`
	}
	_ = json.Unmarshal([]byte(out), &raw)
	task = raw.Tasks[0]
	if task["retries_used"] != nil {
		t.Fatalf("the drain used a retry: %v", task["retries_used"])
	}
	if dr, _ := agents()[on]["drain"].(map[string]any); dr == nil || dr["complete"] != true {
		t.Fatalf("agent %s after its drain: %v", on, agents()[on])
	}
	if out, _, _ := d.run("agent", "list"); !strings.Contains(out, "drained") {
		t.Fatalf("agent list does not show the drain:\n%s", out)
	}
	if out, stderr, err := d.run("agent", "eligibility", on, "on"); err != nil || strings.Contains(out, "drain") {
		t.Fatalf("eligibility on: %v %s%s", err, out, stderr)
	}
	if a := agents()[on]; a["drain"] != nil || a["ineligible"] != nil {
		t.Fatalf("agent %s after eligibility on: %v", on, a)
	}
	if _, stderr, err := d.run("agent", "eligibility", on, "maybe"); err == nil || !strings.Contains(stderr, "want on or off") {
		t.Fatalf("eligibility maybe: %v %s", err, stderr)
	}
	if _, stderr, err := d.run("agent", "drain", "no-such-agent"); err == nil || !strings.Contains(stderr, "agent not found") {
		t.Fatalf("drain of an unknown agent: %v %s", err, stderr)
	}
}

// waitJobState polls `job show` until the job reaches state.
func waitJobState(t *testing.T, d *devProc, id, state string, within time.Duration) jobJSON {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := showJob(t, d, id)
		if j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s after %s, want %s: %+v", id, j.State, within, state, j)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentDrainsItselfOnSIGTERM: `sched agent` stopped with SIGTERM asks
// to be drained, lets its running task finish (the job succeeds on the
// first attempt, no retry used), takes no new work, and exits on its own;
// started again, it is eligible again.
func TestAgentDrainsItselfOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	startProc(t, "server", "--bind", addr, "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn", "--lease", "3s")
	d := &devProc{addr: addr}
	taskDir := t.TempDir() // the agent is killed: its own temp dir would be left behind
	startAgent := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(schedBin, "agent", "--addr", addr, "--id", "host-1", "--no-gpu", "--run-as", currentUser(t),
			"--task-dir", taskDir, "--drain-grace", "20s", "--log-level", "warn")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	agentProc := startAgent()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if out, _, err := d.run("agent", "list"); err == nil && strings.Contains(out, "host-1") && strings.Contains(out, " up ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent never came up")
		}
	}
	job := filepath.Join(dir, "slow.yaml")
	if err := os.WriteFile(job, []byte("name: slow\ntasks:\n  - name: t\n    command: [sleep, \"3\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, job)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		j := showJob(t, d, id)
		if len(j.Tasks) > 0 && len(j.Tasks[0].Attempts) > 0 && j.Tasks[0].Attempts[0].StartedMs != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("task never started")
		}
	}
	if err := agentProc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if out, _, _ := d.run("agent", "list"); !strings.Contains(out, "draining") {
		t.Fatalf("after SIGTERM the agent is not draining:\n%s", out)
	}
	later := submit(t, d, "../../examples/hello.yaml")
	j := waitJobState(t, d, id, "succeeded", 30*time.Second)
	if n := len(j.Tasks[0].Attempts); n != 1 {
		t.Fatalf("the running task was not left to finish: %d attempts", n)
	}
	exited := make(chan error, 1)
	go func() { exited <- agentProc.Wait() }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the drained agent did not exit")
	}
	if st := showJob(t, d, later).State; st != "queued" {
		t.Fatalf("new work while the only agent drained: %s", st)
	}
	startAgent()
	waitJobState(t, d, later, "succeeded", 30*time.Second)
}
