// Command sched is Banyan's one binary: the scheduler server, the agent, a
// one-process development cluster, and the client commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "sched: "+oneLine(err))
		stop()
		os.Exit(exitCode(err))
	}
}
