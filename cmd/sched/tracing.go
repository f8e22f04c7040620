//go:build !schedthin

package main

// Traces (package scheduler/tracing): every command installs a tracer
// provider at its start, an exporting one only when OTEL_* variables ask
// for it, and flushes it at its end.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/banyan-sched/banyan/scheduler/tracing"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

// traceFlush flushes what the command's tracer provider batched.
var traceFlush atomic.Pointer[tracing.Shutdown]

// startTracing installs tracing for cmd (tracing.Setup), named after the
// kind of process it is.
func startTracing(cmd *cobra.Command) error {
	_, shutdown, err := tracing.Setup(cmd.Context(), serviceName(cmd))
	if err != nil {
		return fmt.Errorf("traces: %w", err)
	}
	traceFlush.Store(&shutdown)
	return nil
}

// traceDialOptions are the client's dial options that put its calls'
// spans and trace context on the wire (tracing.ClientHandler).
func traceDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(tracing.ClientHandler(nil))}
}

// flushTraces flushes batched spans, waiting at most 5 s for the
// collector; a failure is reported, not fatal.
func flushTraces() {
	f := traceFlush.Swap(nil)
	if f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := (*f)(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "sched: "+err.Error())
	}
}

// serviceName names the process in its traces: banyan-server,
// banyan-agent, banyan-dev, banyan-encoder, or sched for client commands.
func serviceName(cmd *cobra.Command) string {
	path := strings.Fields(cmd.CommandPath())
	if len(path) > 1 {
		switch path[1] {
		case "server", "agent", "dev", "encoder":
			return "banyan-" + path[1]
		}
	}
	return "sched"
}

// withTraceEnv returns env plus the agent's own OTEL_* variables (env's
// win), so that a task's spans (encoder steps) go where the agent's go.
func withTraceEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTEL_") {
			out[k] = v
		}
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// traceSteps makes each subcommand of parent (an encoder step) run in a
// span of its own, named after it, a child of $TRACEPARENT: the attempt's
// run span in the job's trace.
func traceSteps(parent *cobra.Command) {
	for _, c := range parent.Commands() {
		run := c.RunE
		if run == nil {
			continue
		}
		step := c.Name()
		c.RunE = func(cmd *cobra.Command, args []string) error {
			ctx, span := tracing.StartStep(cmd.Context(), tracing.ProviderOr(nil).Tracer(tracing.TracerName),
				os.Getenv(tracing.TraceparentEnv), step, tracing.AttrJob.String(os.Getenv("BANYAN_JOB_ID")),
				tracing.AttrTask.String(os.Getenv("BANYAN_TASK_ID")))
			cmd.SetContext(ctx)
			err := run(cmd, args)
			tracing.EndStep(span, err)
			return err
		}
	}
}
