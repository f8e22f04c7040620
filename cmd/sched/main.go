// Command sched is Banyan's binary: the scheduler server, the agent, a
// one-process development cluster, and the client commands. Built with
// -tags schedthin it is the thin client, which holds only the client
// commands and execs the full binary, banyand, for the rest (thin.go).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// onTerm, when a command sets it, is called on SIGTERM instead of ending
// the command's context: `sched agent` drains first (SIGINT still ends
// every command at once).
var onTerm atomic.Pointer[func()]

func main() {
	handOff(os.Args[1:]) // the thin build execs banyand for daemon commands (thin.go)
	startPhases()
	// The thin build is on one P already (internal/oneproc).
	if runtime.GOMAXPROCS(0) > 1 && os.Getenv("GOMAXPROCS") == "" && clientProcess(os.Args[1:]) {
		runtime.GOMAXPROCS(1) // see clientProcess
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { // lives as long as the process
		for sig := range sigs {
			if h := onTerm.Load(); sig == syscall.SIGTERM && h != nil {
				(*h)()
				continue
			}
			cancel()
		}
	}()
	root := newRootCmdFor(os.Args[1:])
	phases.markNow("build")
	err := root.ExecuteContext(ctx)
	flushTraces()
	phases.report(os.Stderr, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, "sched: "+oneLine(err))
		cancel()
		os.Exit(exitCode(err))
	}
}
