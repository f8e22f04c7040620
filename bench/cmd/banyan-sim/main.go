// Command banyan-sim runs a discrete-event simulation of Banyan's scheduling
// policy (package bench/sim) from a YAML file and prints utilization, each
// pool's share against its guarantee, queue-wait percentiles and
// preemptions.
//
//	banyan-sim [-seed N] [-duration 6h] [-rate WORKLOAD=FACTOR]... [-json] [-cpuprofile F] FILE.yaml
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/banyan-sched/banyan/bench/sim"
)

func main() {
	seed := flag.Int64("seed", -1, "override the file's seed")
	dur := flag.Duration("duration", 0, "override the simulated duration")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	var rates []string
	flag.Func("rate", "WORKLOAD=FACTOR: scale a workload's arrival rate (repeatable)", func(v string) error {
		rates = append(rates, v)
		return nil
	})
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: banyan-sim [-seed N] [-duration D] [-rate WORKLOAD=FACTOR]... [-json] [-cpuprofile F] FILE.yaml")
		os.Exit(2)
	}
	cfg, err := sim.Load(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *seed >= 0 {
		cfg.Seed = *seed
	}
	if *dur > 0 {
		cfg.Duration = sim.Dur(*dur)
	}
	for _, r := range rates {
		name, f, ok := strings.Cut(r, "=")
		factor, err := strconv.ParseFloat(f, 64)
		if !ok || err != nil {
			fmt.Fprintf(os.Stderr, "-rate %q: want WORKLOAD=FACTOR, e.g. archive-transcode=0.25\n", r)
			os.Exit(2)
		}
		if err := cfg.ScaleRate(name, factor); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "cpu profile:", err)
			os.Exit(1)
		}
	}
	rep, err := sim.Run(cfg)
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *asJSON {
		out, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Println(string(out))
		return
	}
	fmt.Print(rep.Format())
}
