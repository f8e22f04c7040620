// Package process runs one task command as a child process of the agent: in
// its own process group, with a minimal environment, bounded output capture,
// a timeout, and a polite-then-forceful stop (SIGTERM to the whole group,
// SIGKILL after a grace period) on cancellation or timeout.
//
// Run never fails with an error: everything that can go wrong, including a
// command that cannot start, is reported in the Result.
//
// A Spec may name a User to run as (its uid, gid and groups; switching
// needs root) and a cgroup (agent/cgroup) to start the process in: the
// process is then created inside the group, every stop ends with a kill of
// the whole group (which reaches descendants that left the process group
// with setsid), and an OOM kill in the group is reported as such.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/agent/cgroup"
)

// User is an identity a process runs as.
type User struct {
	// Name is the user's name, for messages.
	Name string
	// UID and GID are the numeric user and primary group.
	UID, GID uint32
	// Groups are the supplementary groups.
	Groups []uint32
}

// Defaults for zero Spec fields.
const (
	// DefaultGrace is the SIGTERM to SIGKILL delay when Spec.Grace is 0.
	DefaultGrace = 5 * time.Second
	// DefaultTailBytes is how much of stdout and of stderr is kept when
	// Spec.TailBytes is 0.
	DefaultTailBytes = 4096
)

// Outcomes a Result can have.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeTimeout   = "timeout"
	OutcomeCancelled = "cancelled"
)

// InheritedEnv names the agent's environment variables a process inherits;
// nothing else of the agent's environment is passed on.
var InheritedEnv = []string{"PATH", "HOME", "LANG", "TMPDIR"}

// Spec describes one process to run.
type Spec struct {
	// Command is the argv. Command[0] is resolved via the agent's PATH
	// unless it contains a slash; it is never run through a shell.
	Command []string
	// Env is added to a minimal environment inherited from the agent (the
	// variables in InheritedEnv), overriding them on conflict.
	Env map[string]string
	// Dir is the working directory; "" means the agent's working directory.
	Dir string
	// Timeout bounds the run; 0 means none.
	Timeout time.Duration
	// Grace is how long SIGTERM is given to work before SIGKILL, on
	// cancellation or timeout (DefaultGrace when 0).
	Grace time.Duration
	// TailBytes is how many bytes of stdout and of stderr are kept, each
	// (DefaultTailBytes when 0).
	TailBytes int
	// Stdout and Stderr, when set, also receive everything the process
	// writes to each stream, besides the tail kept in the Result (the
	// agent keeps full output in files: agent/tasklog). They should not
	// block.
	Stdout, Stderr io.Writer
	// User, when set, is who the process runs as (nil: the agent's user).
	User *User
	// Cgroup, when set, is the cgroup the process starts in; it is killed
	// as a whole whenever the run ends.
	Cgroup *cgroup.Group
	// Now is the clock for Result.Started and Result.Finished; nil means
	// time.Now. Timeouts always use real time.
	Now func() time.Time
}

// Result is how a process ended.
type Result struct {
	// Outcome is one of OutcomeSucceeded, OutcomeFailed, OutcomeTimeout or
	// OutcomeCancelled.
	Outcome string
	// ExitCode is the exit status; -1 when killed by a signal or never
	// started.
	ExitCode int
	// Err is a human-readable reason when the outcome is not succeeded,
	// e.g. "exit status 3" or "timed out after 2s".
	Err string
	// Stdout and Stderr are the last TailBytes bytes of each stream, made
	// valid UTF-8 (see TailBuffer.Text).
	Stdout, Stderr string
	// Started and Finished bracket the run; they are equal when the
	// process never started.
	Started, Finished time.Time
}

// validate checks spec for mistakes that would make starting pointless.
func validate(spec Spec) error {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return errors.New("invalid spec: empty command")
	}
	for i, arg := range spec.Command {
		if strings.IndexByte(arg, 0) >= 0 {
			return fmt.Errorf("invalid spec: argument %d contains a NUL byte", i)
		}
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid spec: bad environment variable name %q", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("invalid spec: environment variable %s contains a NUL byte", k)
		}
	}
	if spec.Timeout < 0 {
		return fmt.Errorf("invalid spec: negative timeout %s", spec.Timeout)
	}
	if spec.Grace < 0 {
		return fmt.Errorf("invalid spec: negative grace %s", spec.Grace)
	}
	if spec.TailBytes < 0 {
		return fmt.Errorf("invalid spec: negative tail size %d", spec.TailBytes)
	}
	return nil
}

// environ builds the child's environment: InheritedEnv from the agent, then
// extra on top, sorted by name.
func environ(extra map[string]string) []string {
	vars := make(map[string]string, len(InheritedEnv)+len(extra))
	for _, k := range InheritedEnv {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// notStarted is the Result for a process that never ran.
func notStarted(now func() time.Time, outcome, reason string) Result {
	t := now()
	return Result{Outcome: outcome, ExitCode: -1, Err: reason, Started: t, Finished: t}
}

// prepare validates spec and fills defaults. A non-nil Result means Run
// must return it without starting anything.
func prepare(ctx context.Context, spec *Spec) *Result {
	if spec.Now == nil {
		spec.Now = time.Now
	}
	if err := validate(*spec); err != nil {
		r := notStarted(spec.Now, OutcomeFailed, err.Error())
		return &r
	}
	if ctx.Err() != nil {
		r := notStarted(spec.Now, OutcomeCancelled, "cancelled before start: "+context.Cause(ctx).Error())
		return &r
	}
	if spec.Grace == 0 {
		spec.Grace = DefaultGrace
	}
	if spec.TailBytes == 0 {
		spec.TailBytes = DefaultTailBytes
	}
	return nil
}
