package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/cmd/internal/helperwire"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultAddr is where `sched dev` and `sched server` listen by default and
// where client commands connect unless told otherwise.
const DefaultAddr = "127.0.0.1:7400"

// globals are the flags every command shares.
type globals struct {
	addr     string
	output   string
	logLevel string
	// logFormat is text or json (--log-format, SCHED_LOG_FORMAT).
	logFormat string
	tls       tlsconfig.Files // --tls-ca, --tls-cert, --tls-key (env SCHED_TLS_*)
	// token is the ACL token sent with every call (--token, SCHED_TOKEN).
	token string
	// call is set when the client helper runs the command for a front
	// (helper.go); nil in a process of its own.
	call *helperCall
}

// helperCall is what a command run by the client helper has in place of
// its own process's: the front's environment and working directory, and
// the helper's open connections.
type helperCall struct {
	getenv func(string) string
	dir    string
	conns  *connCache
}

// getenv reads the call's environment: the front's under the helper, else
// this process's.
func (g *globals) getenv(key string) string {
	if g.call != nil {
		return g.call.getenv(key)
	}
	return os.Getenv(key)
}

func newRootCmd() *cobra.Command { return newRootCmdFor(nil) }

// newRootCmdFor builds the command tree for a call with args (without the
// program name): only the top-level command args name, or every command
// when they name none (see commandNamed).
func newRootCmdFor(args []string) *cobra.Command { return newRootCmdCall(args, nil) }

// newRootCmdCall is newRootCmdFor for a call run by the client helper
// (call non-nil) or by this process (nil).
func newRootCmdCall(args []string, call *helperCall) *cobra.Command {
	g := &globals{call: call}
	root := &cobra.Command{
		Use:           "sched",
		Short:         "Banyan: a batch scheduler for video-encoding farms",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "" && g.output != "json" && g.output != "table" {
				return usageError{"--output must be json or table"}
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return usageError{"--log-level: " + err.Error()}
			}
			h, err := logHandler(cmd.ErrOrStderr(), g.logFormat, lvl)
			if err != nil {
				return err
			}
			if g.call != nil {
				return nil // the helper's calls leave its process's logger and tracing alone
			}
			slog.SetDefault(slog.New(h))
			err = startTracing(cmd)
			phases.markNow("prerun")
			return err
		},
	}
	addr := g.getenv("SCHED_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", addr, "scheduler address, or several separated by commas to fail over between (env SCHED_ADDR)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	logFormat := g.getenv("SCHED_LOG_FORMAT")
	if logFormat == "" {
		logFormat = "text"
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", logFormat, "log format: text or json (env SCHED_LOG_FORMAT)")
	root.PersistentFlags().StringVar(&g.tls.CA, "tls-ca", g.getenv("SCHED_TLS_CA"), "CA certificate for mutual TLS (env SCHED_TLS_CA)")
	root.PersistentFlags().StringVar(&g.tls.Cert, "tls-cert", g.getenv("SCHED_TLS_CERT"), "this process's TLS certificate (env SCHED_TLS_CERT)")
	root.PersistentFlags().StringVar(&g.tls.Key, "tls-key", g.getenv("SCHED_TLS_KEY"), "this process's TLS key (env SCHED_TLS_KEY)")
	root.PersistentFlags().StringVar(&g.token, "token", g.getenv("SCHED_TOKEN"), "ACL token secret (env SCHED_TOKEN)")
	only := commandNamed(args)
	for _, c := range topCommands(g) {
		if only == "" || c.name == only {
			root.AddCommand(c.build())
		}
	}
	strictUsage(root)
	return root
}

// topCommand is one of sched's top-level commands, built on demand.
type topCommand struct {
	name  string // as the command's Use begins
	build func() *cobra.Command
	// calls is true for the commands whose every subcommand is a client
	// that makes a few calls and exits (or follows one stream): they run
	// on one P (see clientProcess).
	calls bool
}

// topCommands lists sched's top-level commands in the order help shows them.
func topCommands(g *globals) []topCommand {
	return []topCommand{
		{"dev", func() *cobra.Command { return newDevCmd(g) }, false},
		{"server", func() *cobra.Command { return newServerCmd(g) }, false},
		{"agent", func() *cobra.Command { return newAgentCmd(g) }, false},
		{"job", func() *cobra.Command { return newJobCmd(g) }, true},
		{"pool", func() *cobra.Command { return newPoolCmd(g) }, true},
		{"encode", func() *cobra.Command { return newEncodeCmd(g) }, false},
		{"encoder", newEncoderCmd, false},
		{"fn", newFnCmd, false},
		{"tls", newTLSCmd, true},
		{"acl", func() *cobra.Command { return newACLCmd(g) }, true},
		{"operator", func() *cobra.Command { return newOperatorCmd(g) }, true},
		{"version", newVersionCmd, true},
		{"events", func() *cobra.Command { return newEventsCmd(g) }, true},
		{"helper", newHelperCmd, false},
	}
}

// rootValueFlags are the root's persistent flags that take a value, which
// commandNamed must step over (shared with the front's helperwire.Handed).
var rootValueFlags = helperwire.RootValueFlags

// commandNamed returns the top-level command that args (the process's
// arguments without the program name) run, or "" when they name none for
// sure (no command, help, completion, a mistyped name, a flag the root
// does not know), in which case the whole tree is built. Building only the
// named command's subtree is what a call of the CLI needs, and saves
// constructing every other command at each start.
func commandNamed(args []string) string {
	name, _ := splitCommand(args)
	return name
}

// splitCommand is commandNamed, also returning the arguments after the
// command's name.
func splitCommand(args []string) (name string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return "", nil
		case strings.HasPrefix(a, "--") && strings.Contains(a, "="):
		case strings.HasPrefix(a, "-o") && len(a) > 2: // -ojson
		case rootValueFlags[a]:
			i++ // its value
		case strings.HasPrefix(a, "-"):
			return "", nil // --help, -h or a flag of a subcommand before it: build everything
		default:
			for _, c := range topCommands(nil) {
				if c.name == a {
					return a, args[i+1:]
				}
			}
			return "", nil
		}
	}
	return "", nil
}

// logHandler returns the slog handler for --log-format, writing to w at
// level lvl and above.
func logHandler(w io.Writer, format string, lvl slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text", "":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", format)}
}

// usageError is a mistake in how a command was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// jobFailedError means a watched job ended without succeeding (exit code 1).
type jobFailedError struct{ msg string }

func (e jobFailedError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	var w watchLostError
	if errors.As(err, &w) {
		return 3
	}
	if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
		return 3 // no server could be reached (or none answered in time)
	}
	if code, ok := encoderExitCode(err); ok {
		return code
	}
	return 1
}

// oneLine renders an error on one line, with a gRPC status reduced to its
// message.
func oneLine(err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "rpc error: code = ", "")
	for _, code := range []string{"InvalidArgument desc = ", "NotFound desc = ", "FailedPrecondition desc = ",
		"AlreadyExists desc = ", "Unavailable desc = ", "Internal desc = ", "DeadlineExceeded desc = ",
		"Unknown desc = ", "Canceled desc = ", "PermissionDenied desc = ", "Unauthenticated desc = "} {
		msg = strings.ReplaceAll(msg, code, "")
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
}

// agentClientCommands are the subcommands of `sched agent` that are
// client calls; `sched agent` itself is the agent daemon.
var agentClientCommands = map[string]bool{"list": true, "show": true, "drain": true, "eligibility": true}

// serverClientCommands are the subcommands of `sched server` that are
// client calls; `sched server` itself is the scheduler server.
var serverClientCommands = map[string]bool{"members": true, "remove": true}

// clientSubcommand reports whether rest (the arguments after the daemon
// command name) run one of its client subcommands.
func clientSubcommand(name string, rest []string) bool {
	subs := map[string]map[string]bool{"agent": agentClientCommands, "server": serverClientCommands}[name]
	return len(rest) > 0 && subs[rest[0]]
}

// clientProcess reports whether args run a command that only makes calls
// (job, pool, acl, operator, events, tls, version, agent list, show, drain
// and eligibility, and server members and remove), as opposed to a daemon
// or a worker (dev, server, the agent, encode, encoder, fn).
//
// main runs such a process on one P: it has no parallel work, and a second
// P only adds an idle thread that the runtime wakes, spins and parks on
// each of the call's goroutine hand-offs. (Measured on a loaded 2-core
// host: a submit loop ran about 10% faster; CPU per call came out about
// even, because shrinking to one P after package init flushes the second
// P's cache. GOMAXPROCS=1 in the environment, which the runtime reads
// before init, saves both, and is left alone.) The thin build, which runs
// nothing but such commands, shrinks during package initialisation
// instead (internal/oneproc), which saves both too, and main skips this
// check there.
func clientProcess(args []string) bool {
	name, rest := splitCommand(args)
	if name == "agent" || name == "server" {
		return clientSubcommand(name, rest)
	}
	for _, c := range topCommands(nil) {
		if c.name == name {
			return c.calls
		}
	}
	return false
}
