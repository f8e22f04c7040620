package process

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent/cgroup"
	"github.com/banyan-sched/banyan/agent/cgroup/cgrouptest"
)

// TestRunCancelKillsEscapedDescendant: a child that leaves the process
// group with setsid is out of reach of the group kill, but not of the
// task's cgroup.
func TestRunCancelKillsEscapedDescendant(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Fatal("setsid (util-linux) is needed for this test")
	}
	m := cgrouptest.Manager(t)
	g, err := m.New("escape", cgroup.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() {
		done <- Run(ctx, Spec{Cgroup: g, Grace: 100 * time.Millisecond,
			Command: []string{"sh", "-c", "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! > " + pidFile + "; sleep 30"}})
	}()
	pid := 0
	for deadline := time.Now().Add(5 * time.Second); pid == 0; {
		if data, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(data), "\n") {
			pid = firstLinePID(t, string(data))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task never wrote its child's pid")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	// setsid(1) leaves the session just after the shell noted its pid.
	for deadline := time.Now().Add(5 * time.Second); ; {
		sid, err := getsid(pid)
		if err == nil && sid == pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d did not start its own session (sid %d, %v)", pid, sid, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	r := <-done
	if r.Outcome != OutcomeCancelled {
		t.Fatalf("result = %+v", r)
	}
	waitGone(t, pid)
}

// requireLimits fails the test when cgroups are required (see
// cgrouptest.RequireEnv) but the controller is not available: a test's
// cgroup that holds other processes cannot enable controllers below it.
func requireLimits(t *testing.T, controller string) {
	t.Helper()
	if os.Getenv(cgrouptest.RequireEnv) == "1" {
		t.Fatalf("%s=1 but the %s controller is not available below this test's cgroup", cgrouptest.RequireEnv, controller)
	}
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

// TestRunMemoryLimit: a task asking 64Mi that allocates 200Mi is killed at
// its limit and the result says so. Where the memory controller is not
// available to the agent's cgroup, the task runs without the limit.
func TestRunMemoryLimit(t *testing.T) {
	m := cgrouptest.Manager(t)
	g, err := m.New("oom", cgroup.Limits{MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	// dd's 200Mi buffer is filled by the read from /dev/zero.
	r := Run(context.Background(), Spec{Cgroup: g,
		Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"}})
	if !slices.Contains(m.Enabled(), "memory") {
		requireLimits(t, "memory")
		t.Logf("memory controller not available here (%v enabled): checking the unlimited fallback", m.Enabled())
		if r.Outcome != OutcomeSucceeded {
			t.Fatalf("without a memory controller the task must run unlimited: %+v", r)
		}
		return
	}
	if r.Outcome != OutcomeFailed || !strings.Contains(r.Err, "out of memory") || !strings.Contains(r.Err, "64Mi") {
		t.Fatalf("result = %+v, want failed with an out-of-memory reason naming 64Mi", r)
	}
}

// TestRunPidsLimit: pids.max stops a fork bomb's fork, not the host.
func TestRunPidsLimit(t *testing.T) {
	m := cgrouptest.Manager(t)
	g, err := m.New("pids", cgroup.Limits{Pids: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	r := Run(context.Background(), Spec{Cgroup: g,
		Command: []string{"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do sleep 0.5 & done; wait"}})
	if !slices.Contains(m.Enabled(), "pids") {
		requireLimits(t, "pids")
		t.Logf("pids controller not available here (%v enabled): checking the unlimited fallback", m.Enabled())
		if r.Outcome != OutcomeSucceeded || g.PidsLimited() {
			t.Fatalf("without a pids controller the task must run unlimited: %+v", r)
		}
		return
	}
	if !g.PidsLimited() || !strings.Contains(r.Stderr, "fork") {
		t.Fatalf("pids.max 8 not enforced: limited=%v, result %+v", g.PidsLimited(), r)
	}
}

// TestRunAsUser runs a task as nobody (65534) with its groups; the agent
// must be root to switch users.
func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; run the agent tests as root to check --run-as")
	}
	r := Run(context.Background(), Spec{User: &User{Name: "nobody", UID: 65534, GID: 65534, Groups: []uint32{65534}},
		Command: []string{"sh", "-c", "id -u; id -g; id -G; cat /proc/self/status | grep ^Groups"}})
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("result = %+v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) < 3 || lines[0] != "65534" || lines[1] != "65534" || strings.TrimSpace(lines[2]) != "65534" {
		t.Fatalf("ran as %q, want uid, gid and groups 65534", r.Stdout)
	}
}
