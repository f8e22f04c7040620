package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
	"unsafe"
)

// pipeDrainDelay bounds how long Run waits for output pipes after the
// process group is gone: only a descendant that left the group (setsid)
// can still hold them open then.
const pipeDrainDelay = time.Second

// Run starts the process in its own process group and waits for it.
// Cancelling ctx or hitting Timeout sends SIGTERM to the whole group, then
// SIGKILL after Grace. When the command exits, anything it left running in
// its group is killed, and so is everything in Spec.Cgroup. A command that
// cannot start returns Outcome "failed" with the reason; one killed at its
// cgroup's memory limit fails with an "out of memory" reason.
func Run(ctx context.Context, spec Spec) Result {
	if r := prepare(ctx, &spec); r != nil {
		return *r
	}
	if err := checkDir(spec.Dir); err != nil {
		return notStarted(spec.Now, OutcomeFailed, fmt.Errorf("start: %w", err).Error())
	}
	stdout, stderr := NewTailBuffer(spec.TailBytes), NewTailBuffer(spec.TailBytes)
	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Env = environ(spec.Env)
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = tee(stdout, spec.Stdout), tee(stderr, spec.Stderr)
	cmd.WaitDelay = pipeDrainDelay
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if u := spec.User; u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	if spec.Cgroup != nil {
		dir, err := spec.Cgroup.Open()
		if err != nil {
			return notStarted(spec.Now, OutcomeFailed, fmt.Errorf("start: %w", err).Error())
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	}

	res := Result{ExitCode: -1, Started: spec.Now()}
	if err := cmd.Start(); err != nil {
		res.Finished = spec.Now()
		res.Outcome, res.Err = OutcomeFailed, fmt.Errorf("start: %w", err).Error()
		return res
	}
	pid := cmd.Process.Pid // also the process group id

	// Watch for the leader's exit without reaping it: while it is unreaped
	// its pid, and so the group id, cannot be reused, and signalling the
	// group stays safe.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		awaitExit(pid)
	}()

	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var stopReason string
	select {
	case <-exited:
	case <-ctx.Done():
		stopReason = OutcomeCancelled
	case <-timeout:
		stopReason = OutcomeTimeout
	}
	if stopReason != "" {
		select {
		case <-exited:
			stopReason = "" // it finished on its own at the same moment
		default:
			stop(pid, spec.Grace, exited)
		}
	}
	// Clean up whatever the leader left running in its group, and in its
	// cgroup (descendants that escaped the group with setsid).
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if spec.Cgroup != nil {
		_ = spec.Cgroup.Kill()
	}

	// The error is fully described by ProcessState, or is exec.ErrWaitDelay
	// (an escaped descendant held a pipe), which does not change the outcome.
	_ = cmd.Wait()
	res.Finished = spec.Now()
	res.Stdout, res.Stderr = stdout.Text(), stderr.Text()
	res.ExitCode = cmd.ProcessState.ExitCode()

	switch {
	case stopReason == OutcomeTimeout:
		res.Outcome, res.Err = OutcomeTimeout, fmt.Sprintf("timed out after %s", spec.Timeout)
	case stopReason == OutcomeCancelled:
		res.Outcome, res.Err = OutcomeCancelled, "cancelled: "+context.Cause(ctx).Error()
	case cmd.ProcessState.Success():
		res.Outcome = OutcomeSucceeded
	default:
		res.Outcome, res.Err = OutcomeFailed, cmd.ProcessState.String()
	}
	if spec.Cgroup != nil && res.Outcome != OutcomeSucceeded {
		if oom := spec.Cgroup.OOMReason(); oom != "" {
			res.Err = oom + " (" + res.Err + ")"
		}
	}
	return res
}

// checkDir reports a missing or unusable working directory up front: the
// error exec gives for it names the executable instead of the directory.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("working directory %s: not a directory", dir)
	}
	return nil
}

// stop sends SIGTERM to the group led by pid and, if the leader has not
// exited within grace, SIGKILL; it returns once the leader has exited.
func stop(pid int, grace time.Duration, exited <-chan struct{}) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
}

// awaitExit blocks until the child pid has exited, leaving it waitable so
// that exec.Cmd.Wait still reaps it.
func awaitExit(pid int) {
	const pPID = 1     // P_PID: wait for the child with this pid
	var info [128]byte // siginfo_t, which the kernel fills in
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
