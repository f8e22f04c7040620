// Package oneproc puts the process on one P (GOMAXPROCS 1) while packages
// are being initialised, before the ones that allocate the most.
//
// The thin sched imports it for its side effect: that binary only runs
// client commands (it execs banyand for the daemons), and a client call
// has no parallel work, so a second P only adds an idle thread that the
// runtime wakes, spins and parks on each goroutine hand-off of the call.
//
// Shrinking to one P from main, as the full binary does for its client
// commands, comes too late to be free: by then package initialisation has
// filled the second P's span cache, and destroying that P hands each of
// its spans back to the heap, first-touching about 150 fresh pages of
// runtime metadata (measured: 790 page faults a `sched job submit` against
// 600 with GOMAXPROCS=1 in the environment, which the runtime reads before
// any init). Here the shrink happens after about a dozen small standard
// library packages, when the second P holds few spans, and the count comes
// out as with the environment variable (600-630). The package sorts before
// the large dependencies in Go's initialisation order (import path order
// among the packages whose imports are done), and it imports only runtime
// and syscall so that it is ready early.
//
// GOMAXPROCS set in the environment is left alone.
package oneproc

import (
	"runtime"
	"syscall"
)

func init() {
	if _, set := syscall.Getenv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(1)
	}
}
