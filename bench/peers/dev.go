package peers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// SubmitJobYAML is the job file of the submit workload: one task running
// `true` with one cpu, the job each `sched job submit` call sends (and
// the CLI probes, bench/cliprobe, send the same).
const SubmitJobYAML = "name: one\ntasks:\n  - name: t\n    command: [\"true\"]\n    resources: {cpu: 1, memory: 16Mi}\n"

// Dev is a `sched dev` process (one single-node server and its local
// agents in one process) started here.
type Dev struct {
	// Bin is the sched binary; Addr the server's loopback address.
	Bin, Addr string
	// Agents is the number of local agents (they share the host's cpus).
	Agents int
	d      *Daemon
}

// StartDev starts `sched dev` with its data under dir and waits until the
// server answers and an agent is connected.
func StartDev(ctx context.Context, bin, dir string, agents int) (_ *Dev, err error) {
	if agents < 1 {
		return nil, fmt.Errorf("sched dev: %d agents: want at least 1", agents)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sched dev dir: %w", err)
	}
	v := &Dev{Bin: bin, Addr: fmt.Sprintf("127.0.0.1:%d", port), Agents: agents}
	v.d, err = startDaemon("sched dev", filepath.Join(dir, "dev.log"), nil, bin, "--addr", v.Addr, "--log-level", "warn",
		"dev", "--data-dir", filepath.Join(dir, "data"), "--agents", fmt.Sprint(agents), "--http-addr=")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			v.Stop()
		}
	}()
	if err := waitFor(ctx, 60*time.Second, 100*time.Millisecond, "sched dev agents", func() (bool, error) {
		if v.d.Exited() {
			return false, fmt.Errorf("sched dev exited (see %s)", filepath.Join(dir, "dev.log"))
		}
		out, err := v.Sched(ctx, "agent", "list")
		return err == nil && countLines(out) > agents, nil // a header, then one line per agent
	}); err != nil {
		return nil, err
	}
	return v, nil
}

// PID is the sched dev process's id.
func (v *Dev) PID() int { return v.d.PID() }

// Sched runs a sched CLI command against this server.
func (v *Dev) Sched(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, nil, append([]string{v.Bin, "--addr", v.Addr}, args...)...)
}

// SchedEnv is Sched with extra environment (KEY=VALUE).
func (v *Dev) SchedEnv(ctx context.Context, env []string, args ...string) (string, error) {
	return runCmd(ctx, env, append([]string{v.Bin, "--addr", v.Addr}, args...)...)
}

// StopHelper stops the client helper that sched's job submissions started
// (cmd/sched/helper.go), if one runs, and returns what it said.
func (v *Dev) StopHelper(ctx context.Context) (string, error) {
	return runCmd(ctx, nil, v.Bin, "helper", "stop")
}

// Run runs another program the way Sched runs sched (the same start,
// environment and output capture), for the probes measured beside it.
func (v *Dev) Run(ctx context.Context, argv ...string) (string, error) {
	return runCmd(ctx, nil, argv...)
}

// Stop interrupts sched dev (it stops its agents and their tasks) and
// waits for it.
func (v *Dev) Stop() { v.d.Stop(syscall.SIGINT, 20*time.Second) }

func countLines(s string) int {
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			n++
		}
	}
	return n
}
