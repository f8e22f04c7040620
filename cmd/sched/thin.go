//go:build schedthin

// The thin build of sched: go build -tags schedthin ./cmd/sched.
//
// This package builds two binaries. The default build is the full one,
// installed as banyand: the server, the agent, `sched dev`, the encoder
// steps and every client command. The thin build, installed as
// sched-client (the front, cmd/schedfront, installed as sched, execs it),
// holds only the commands that make gRPC calls (job, pool, events, acl,
// operator, tls, version, agent list, show, drain and eligibility, server
// members and remove) and the client helper (helper.go). It links no
// server, agent, encoder, raft, Prometheus, NVML or OpenTelemetry SDK code
// and needs no cgo, so it starts in about half the time of the full
// binary: what a script that runs a client command once per call pays on
// every call (README, "Three binaries").
//
// Files only the full build needs carry `//go:build !schedthin`; this file
// stands in for them. The daemon and worker commands (dev, server, the
// agent, encode, encoder, fn), and any command while the OTEL_* variables
// ask for traces (otelenv.Enabled), are handed to banyand with
// syscall.Exec and the same arguments: the process keeps its PID, so
// signals, kill -9, a parent-death signal and a supervisor's bookkeeping
// reach banyand as they reached sched. banyand is looked for next to this
// binary's own executable (symlinks resolved), then on PATH.

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	// Every command this binary runs itself is a client call: one P from
	// package initialisation on (the package says why).
	_ "github.com/banyan-sched/banyan/cmd/sched/internal/oneproc"
	"github.com/banyan-sched/banyan/scheduler/tracing/otelenv"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// banyandName is the name the full binary is installed under.
const banyandName = "banyand"

// handOff execs banyand with args (the process's arguments without the
// program name) when this binary does not run them itself (banyandReason),
// and returns when it does. When banyand cannot be run it ends the
// process with a usage error (exit code 2) that says what to install.
func handOff(args []string) {
	why := banyandReason(args, os.Environ())
	if why == "" {
		return
	}
	err := execBanyand(why, args)
	fmt.Fprintln(os.Stderr, "sched: "+oneLine(err))
	os.Exit(exitCode(err))
}

// tracedReason is banyandReason's answer when the OTEL_* variables ask
// for traces.
const tracedReason = "a traced call (the OTEL_* variables ask for traces)"

// banyandReason says why args must run in banyand ("sched server", or
// tracing), or "" when the thin binary runs them.
func banyandReason(args, environ []string) string {
	if otelenv.Enabled(environ) {
		return tracedReason
	}
	name, rest := splitCommand(args)
	switch name {
	case "dev", "encode", "encoder", "fn":
		return "sched " + name
	case "agent", "server":
		if !clientSubcommand(name, rest) {
			return "sched " + name
		}
	}
	return ""
}

// execBanyand replaces this process with banyand run with args; it
// returns only on failure.
func execBanyand(why string, args []string) error {
	if filepath.Base(os.Args[0]) == banyandName {
		// Exec'd as banyand, or installed under its name: this thin build
		// would exec itself for ever.
		return usageError{fmt.Sprintf("%s needs the full Banyan binary, but this %s is the thin sched client "+
			"(built with -tags schedthin): install the full build (go build ./cmd/sched) as banyand", why, os.Args[0])}
	}
	path, err := findBanyand(why)
	if err != nil {
		return err
	}
	if err := syscall.Exec(path, append([]string{path}, args...), os.Environ()); err != nil {
		return fmt.Errorf("%s: exec %s: %w", why, path, err)
	}
	return nil // not reached
}

// findBanyand returns banyand's path: next to this binary's executable,
// else on PATH.
func findBanyand(why string) (string, error) {
	where := "on PATH"
	if self, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(self); err == nil {
			self = resolved
		}
		next := filepath.Join(filepath.Dir(self), banyandName)
		if fi, err := os.Stat(next); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return next, nil
		}
		where = next + " nor on PATH"
	}
	if path, err := exec.LookPath(banyandName); err == nil {
		return path, nil
	}
	msg := fmt.Sprintf("%s runs in banyand, the full Banyan binary (server, agent, dev, encoder), "+
		"which is not installed: not found at %s; install banyand next to sched or on PATH (make build puts both in bin/)",
		why, where)
	if why == tracedReason {
		msg += ", or set OTEL_SDK_DISABLED=true to call untraced"
	}
	return "", usageError{msg}
}

// banyandCmd stands in for a command that runs in banyand: `sched --help`
// lists it, and running it (`sched NAME --help` too) execs banyand.
func banyandCmd(use, short string, hidden bool) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Hidden: hidden, DisableFlagParsing: true}
	cmd.Long = short + ".\n\nIt runs in banyand, the full Banyan binary, which this sched execs with the same\n" +
		"arguments; `sched " + cmd.Name() + " --help` shows its flags."
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return execBanyand("sched "+cmd.Name(), os.Args[1:])
	}
	return cmd
}

// The daemon and worker commands, as their full-build counterparts name
// and describe them.

func newDevCmd(*globals) *cobra.Command {
	return banyandCmd("dev", "Run a one-process cluster: a single-node server and N local agents", false)
}

func newServerCmd(g *globals) *cobra.Command {
	cmd := banyandCmd("server", "Run a scheduler server", false)
	cmd.AddCommand(serverClientCmds(g)...)
	return cmd
}

func newAgentCmd(g *globals) *cobra.Command {
	cmd := banyandCmd("agent", "Run an agent on this host (or: sched agent list)", false)
	cmd.AddCommand(agentClientCmds(g)...)
	return cmd
}

func newEncodeCmd(*globals) *cobra.Command {
	return banyandCmd("encode INPUT... | --manifest FILE",
		"Encode titles on the farm: split, encode chunks in parallel, assemble, index, verify", false)
}

func newEncoderCmd() *cobra.Command {
	return banyandCmd("encoder", "Encoder steps run by agents (plumbing)", true)
}

func newFnCmd() *cobra.Command {
	return banyandCmd("fn NAME [--call ARGS...]", "Built-in functions as line-protocol workers (plumbing)", true)
}

// Tracing: a traced call runs in banyand (banyandReason), so the thin
// build never traces.

func startTracing(*cobra.Command) error { return nil }

func flushTraces() {}

func traceDialOptions() []grpc.DialOption { return nil }

// encoderExitCode: encoder steps run in banyand.
func encoderExitCode(error) (int, bool) { return 0, false }
