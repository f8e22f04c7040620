//go:build !schedthin

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/agent/worker"
	"github.com/spf13/cobra"
)

// builtinFunctions are the functions every agent started by this binary
// registers: "@sched fn NAME" runs them as line-protocol workers.
var builtinFunctions = map[string][]string{
	"sleep": {"@sched", "fn", "sleep"},
	"echo":  {"@sched", "fn", "echo"},
}

// fnImpls implement the built-in functions on their call arguments.
var fnImpls = map[string]func(args []string) (string, error){
	// sleep MS: waits MS milliseconds (a stand-in for a short function).
	"sleep": func(args []string) (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("sleep takes one argument, milliseconds; got %d", len(args))
		}
		ms, err := strconv.Atoi(args[0])
		if err != nil || ms < 0 || ms > 3_600_000 {
			return "", fmt.Errorf("sleep: %q is not a number of milliseconds", args[0])
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return fmt.Sprintf("slept %dms", ms), nil
	},
	// echo ARGS...: returns its arguments.
	"echo": func(args []string) (string, error) { return strings.Join(args, " "), nil },
}

func newFnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "fn NAME [--call ARGS...]",
		Short:  "Built-in functions as line-protocol workers (plumbing)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			impl, ok := fnImpls[args[0]]
			if !ok {
				return usageError{fmt.Sprintf("unknown function %q", args[0])}
			}
			// `sched fn NAME --call ARGS...` runs one call from the
			// command line: a cold start per call, for comparison.
			if len(args) > 1 && args[1] == "--call" {
				out, err := impl(args[2:])
				if err != nil {
					return err
				}
				fmt.Println(out)
				return nil
			}
			return worker.Serve(os.Stdin, os.Stdout, impl)
		},
	}
	cmd.Flags().SetInterspersed(false)
	return cmd
}
