package process

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// noLeaks fails t if goroutines started during the test outlive it.
func noLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// gone reports whether pid no longer runs (absent, or a zombie nobody reaped).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// waitGone fails t unless pid is gone within a second.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Errorf("process %d still running", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstLinePID parses the pid a test script echoed first.
func firstLinePID(t *testing.T, out string) int {
	t.Helper()
	line, _, _ := strings.Cut(out, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		t.Fatalf("no pid in output %q", out)
	}
	return pid
}

func TestRunSucceeds(t *testing.T) {
	noLeaks(t)
	r := Run(context.Background(), Spec{Command: []string{"sh", "-c", "echo hello; echo oops >&2"}})
	if r.Outcome != OutcomeSucceeded || r.ExitCode != 0 || r.Err != "" {
		t.Fatalf("result = %+v", r)
	}
	if r.Stdout != "hello\n" || r.Stderr != "oops\n" {
		t.Errorf("stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	if r.Started.IsZero() || r.Finished.Before(r.Started) {
		t.Errorf("times %v .. %v", r.Started, r.Finished)
	}
}

func TestRunExitCode(t *testing.T) {
	noLeaks(t)
	r := Run(context.Background(), Spec{Command: []string{"sh", "-c", "echo bad input >&2; exit 3"}})
	if r.Outcome != OutcomeFailed || r.ExitCode != 3 || r.Err != "exit status 3" || r.Stderr != "bad input\n" {
		t.Fatalf("result = %+v", r)
	}
}

func TestRunKeepsTail(t *testing.T) {
	noLeaks(t)
	script := `i=0; while [ $i -lt 2000 ]; do printf '%04d\n' $i; i=$((i+1)); done`
	r := Run(context.Background(), Spec{Command: []string{"sh", "-c", script}, TailBytes: 20})
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("result = %+v", r)
	}
	if want := "1996\n1997\n1998\n1999\n"; r.Stdout != want {
		t.Errorf("stdout = %q, want %q", r.Stdout, want)
	}
}

func TestRunTeesFullOutput(t *testing.T) {
	noLeaks(t)
	script := `i=0; while [ $i -lt 2000 ]; do printf '%04d\n' $i; printf 'e%04d\n' $i >&2; i=$((i+1)); done`
	var out, errOut strings.Builder
	r := Run(context.Background(), Spec{Command: []string{"sh", "-c", script}, TailBytes: 20, Stdout: &out, Stderr: &errOut})
	if r.Outcome != OutcomeSucceeded || r.Stdout != "1996\n1997\n1998\n1999\n" {
		t.Fatalf("result = %+v", r)
	}
	if out.Len() != 2000*5 || errOut.Len() != 2000*6 || !strings.HasPrefix(errOut.String(), "e0000\ne0001\n") {
		t.Fatalf("full output: %d stdout and %d stderr bytes", out.Len(), errOut.Len())
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	noLeaks(t)
	start := time.Now()
	r := Run(context.Background(), Spec{
		Command: []string{"sh", "-c", "sleep 30 & echo $!; wait"},
		Timeout: 300 * time.Millisecond,
		Grace:   2 * time.Second,
	})
	elapsed := time.Since(start)
	if r.Outcome != OutcomeTimeout || r.ExitCode != -1 || r.Err != "timed out after 300ms" {
		t.Fatalf("result = %+v", r)
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("took %s; SIGTERM should have ended it at once", elapsed)
	}
	waitGone(t, firstLinePID(t, r.Stdout))
}

func TestRunCancel(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	r := Run(ctx, Spec{Command: []string{"sh", "-c", "sleep 30 & echo $!; sleep 30"}})
	if r.Outcome != OutcomeCancelled || r.ExitCode != -1 || !strings.Contains(r.Err, "context canceled") {
		t.Fatalf("result = %+v", r)
	}
	if elapsed := time.Since(start); elapsed > 1500*time.Millisecond {
		t.Errorf("took %s", elapsed)
	}
	waitGone(t, firstLinePID(t, r.Stdout))
}

func TestRunCancelledBeforeStart(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Run(ctx, Spec{Command: []string{"sh", "-c", "echo ran"}})
	if r.Outcome != OutcomeCancelled || r.ExitCode != -1 || r.Stdout != "" {
		t.Fatalf("result = %+v", r)
	}
}

func TestRunSIGKILLAfterGrace(t *testing.T) {
	noLeaks(t)
	const timeout, grace = 300 * time.Millisecond, 400 * time.Millisecond
	start := time.Now()
	// The ignored SIGTERM is inherited by sleep, so the whole group ignores it.
	r := Run(context.Background(), Spec{
		Command: []string{"sh", "-c", `trap "" TERM; echo $$; sleep 30`},
		Timeout: timeout,
		Grace:   grace,
	})
	elapsed := time.Since(start)
	if r.Outcome != OutcomeTimeout || r.ExitCode != -1 {
		t.Fatalf("result = %+v", r)
	}
	if elapsed < timeout+grace {
		t.Errorf("took %s; SIGKILL came before the grace period ended", elapsed)
	}
	if elapsed > timeout+grace+time.Second {
		t.Errorf("took %s; SIGKILL came late", elapsed)
	}
	waitGone(t, firstLinePID(t, r.Stdout))
}

func TestRunReturnsWhenGrandchildHoldsPipe(t *testing.T) {
	noLeaks(t)
	start := time.Now()
	r := Run(context.Background(), Spec{Command: []string{"sh", "-c", "sleep 30 & echo $!"}})
	if r.Outcome != OutcomeSucceeded || r.ExitCode != 0 {
		t.Fatalf("result = %+v", r)
	}
	if elapsed := time.Since(start); elapsed > 900*time.Millisecond {
		t.Errorf("took %s", elapsed)
	}
	waitGone(t, firstLinePID(t, r.Stdout))
}

func TestRunCannotStart(t *testing.T) {
	noLeaks(t)
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { return fixed }
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"missing executable", Spec{Command: []string{"banyan-no-such-command"}},
			`start: exec: "banyan-no-such-command": executable file not found in $PATH`},
		{"missing dir", Spec{Command: []string{"true"}, Dir: filepath.Join(t.TempDir(), "nope")}, "start: working directory"},
		{"dir is a file", Spec{Command: []string{"true"}, Dir: "/proc/self/stat"}, "not a directory"},
		{"empty command", Spec{}, "invalid spec: empty command"},
		{"empty argv0", Spec{Command: []string{""}}, "invalid spec: empty command"},
		{"bad env name", Spec{Command: []string{"true"}, Env: map[string]string{"A=B": "c"}}, "bad environment variable name"},
		{"negative timeout", Spec{Command: []string{"true"}, Timeout: -time.Second}, "negative timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Now = now
			r := Run(context.Background(), tc.spec)
			if r.Outcome != OutcomeFailed || r.ExitCode != -1 || !strings.Contains(r.Err, tc.want) {
				t.Errorf("result = %+v, want failed with %q", r, tc.want)
			}
			if !r.Started.Equal(fixed) || !r.Finished.Equal(fixed) {
				t.Errorf("times %v .. %v, want %v", r.Started, r.Finished, fixed)
			}
		})
	}
}

func TestRunEnvAndDir(t *testing.T) {
	noLeaks(t)
	t.Setenv("BANYAN_TEST_AGENT_ONLY", "leaked")
	dir := t.TempDir()
	r := Run(context.Background(), Spec{
		Command: []string{"sh", "-c", `printf '%s|%s|%s' "$FOO" "${BANYAN_TEST_AGENT_ONLY:-unset}" "$(pwd -P)"`},
		Env:     map[string]string{"FOO": "bar baz"},
		Dir:     dir,
	})
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("result = %+v", r)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "bar baz|unset|" + real; r.Stdout != want {
		t.Errorf("stdout = %q, want %q", r.Stdout, want)
	}
}

func TestRunInheritsMinimalEnv(t *testing.T) {
	noLeaks(t)
	t.Setenv("HOME", "/home/banyan-test")
	r := Run(context.Background(), Spec{
		Command: []string{"sh", "-c", `printf '%s' "$HOME"`},
	})
	if r.Stdout != "/home/banyan-test" {
		t.Errorf("HOME = %q", r.Stdout)
	}
	r = Run(context.Background(), Spec{
		Command: []string{"sh", "-c", `printf '%s' "$HOME"`},
		Env:     map[string]string{"HOME": "/override"},
	})
	if r.Stdout != "/override" {
		t.Errorf("overridden HOME = %q", r.Stdout)
	}
}

func TestRunEscapedDescendantDoesNotHang(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	noLeaks(t)
	start := time.Now()
	// The descendant leaves the process group, so the group kill misses it
	// and it keeps stdout open; Run must still return after pipeDrainDelay.
	r := Run(context.Background(), Spec{Command: []string{"sh", "-c", "setsid sleep 30 & echo $!; sleep 0.2"}})
	elapsed := time.Since(start)
	pid := firstLinePID(t, r.Stdout)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if r.Outcome != OutcomeSucceeded || r.ExitCode != 0 {
		t.Fatalf("result = %+v", r)
	}
	if elapsed > pipeDrainDelay+time.Second {
		t.Errorf("took %s", elapsed)
	}
}
