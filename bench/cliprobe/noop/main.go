// Command noop is a Go program that does nothing: the Go runtime's start
// and exit alone, built like the thin sched (no cgo, -trimpath). It is the
// floor under any Go CLI that runs as one process per call, which
// banyan-peers' submit workload measures in the same loop as `sched job
// submit` and sbatch (bench/README.md, "What a CLI call costs").
package main

func main() {}
