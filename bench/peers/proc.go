package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Daemon is a process this package started; Stop signals that PID only.
type Daemon struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startDaemon starts argv with its output appended to logPath. The daemon
// runs until Stop; it is not tied to a context, so that Stop decides how
// it ends (a signal it handles, then SIGKILL).
func startDaemon(name, logPath string, env []string, argv ...string) (*Daemon, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: empty command", name)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	return startDaemonCmd(name, logPath, cmd, (*exec.Cmd).Start)
}

// startDaemonCmd is startDaemon for a prepared command, started by start
// (cmd.Start, or a start in another namespace).
func startDaemonCmd(name, logPath string, cmd *exec.Cmd, start func(*exec.Cmd) error) (*Daemon, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := start(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() { // owned by d: ends when the process does
		d.err = cmd.Wait()
		f.Close()
		close(d.done)
	}()
	return d, nil
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// Stop sends sig to the daemon's PID, waits up to grace, then kills it.
func (d *Daemon) Stop(sig syscall.Signal, grace time.Duration) {
	if d == nil || d.Exited() {
		return
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ParseRSS returns VmRSS in bytes from the text of /proc/PID/status.
func ParseRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "VmRSS" {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS %q: want N kB", strings.TrimSpace(v))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", f[0], err)
		}
		return n * 1024, nil
	}
	return 0, errors.New("no VmRSS line")
}

// RSS returns the resident set size of pid in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	n, err := ParseRSS(string(b))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	return n, nil
}

// waitFor polls cond every step until it is true, ctx ends or limit passes.
func waitFor(ctx context.Context, limit, step time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: not after %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(step):
		}
	}
}

// runCmd runs argv with extra env and returns its combined output.
func runCmd(ctx context.Context, env []string, argv ...string) (string, error) {
	return runStarted(ctx, (*exec.Cmd).Start, env, argv...)
}

// runStarted is runCmd with the process started by start (cmd.Start, or a
// start in another namespace).
func runStarted(ctx context.Context, start func(*exec.Cmd) error, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
