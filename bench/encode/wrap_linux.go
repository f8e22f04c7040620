package encode

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the real tool when the wrapper is killed (the
// encoder's context cancellation kills the wrapper, not the tool).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
