// Command chaos runs Banyan's fault harness (package chaos): three servers
// and three agents as separate processes, a workload, faults in rounds, and
// a table of what survived. It exits 1 when an acknowledged job was lost,
// renumbered, duplicated, failed or left unfinished, or a round did not
// recover; 2 on a wrong invocation.
//
// Run as root, it first builds its own network (namespaces joined by a
// bridge, nothing connected to the host's network) and re-runs itself
// inside it, in a private mount namespace where each server's data dir is a
// small tmpfs: that is what the partition, disk-full and full-follower
// faults need. Without root those faults are skipped and said so.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/bench/chaos"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	sched := fs.String("sched", "bin/sched", "the sched binary to run")
	rounds := fs.Int("rounds", 15, "rounds of each fault")
	faults := fs.String("faults", "all", "faults to inject, comma-separated (leader-kill, leader-freeze, follower-kill, agent-kill, agent-freeze, partition, full-follower, disk-full)")
	dir := fs.String("dir", "", "directory for data dirs, logs and evidence (default: a new temp dir, removed on success)")
	hold := fs.Duration("hold", 5*time.Second, "how long a freeze, partition or full disk lasts")
	lease := fs.Duration("lease", 3*time.Second, "agent lease given to the servers")
	every := fs.Duration("submit-every", 200*time.Millisecond, "workload submission interval")
	disk := fs.String("disk", "128m", "size of each server's tmpfs data dir when running as root")
	netns := fs.Bool("netns", true, "when root, run in network namespaces of its own (needed for partitions)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	fl, err := chaos.ParseFaults(*faults)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "chaos: --rounds must be at least 1")
		return 2
	}
	bin, err := filepath.Abs(*sched)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: sched binary: %v (build it with make build)\n", err)
		return 2
	}
	root := os.Geteuid() == 0
	prefix := os.Getenv(chaos.NsEnv)
	if root && *netns && prefix == "" {
		return reexec()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	keep := *dir != ""
	if *dir == "" {
		d, err := os.MkdirTemp("", "banyan-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 1
		}
		*dir = d
	}
	cfg := chaos.Config{Sched: bin, Dir: *dir, Rounds: *rounds, Faults: fl, Hold: *hold, Lease: *lease, SubmitEvery: *every,
		Logf: func(f string, a ...any) {
			fmt.Printf("%s "+f+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
		}}
	if prefix != "" {
		cfg.Network = chaos.NewNamespaces(prefix, 3)
		cfg.DiskSize = *disk
		// Servers bind the namespaces' private addresses, which no one
		// outside them can reach: plaintext is said out loud.
		cfg.ServerArgs = append(cfg.ServerArgs, "--insecure")
	}
	fmt.Printf("chaos: 3 servers, 3 agents, %d round(s) of %v, data in %s\n", *rounds, fl, *dir)
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	fmt.Println()
	rep.Print(os.Stdout)
	if !rep.OK() {
		fmt.Printf("FAILED (logs and evidence kept in %s)\n", *dir)
		return 1
	}
	if !keep {
		os.RemoveAll(*dir)
	}
	fmt.Println("PASSED")
	return 0
}

// reexec builds the namespaces, runs this program again inside the hub
// namespace (and a private mount namespace), and removes them after.
func reexec() int {
	prefix := chaos.NamespacePrefix()
	ctx := context.Background()
	if err := chaos.CreateNamespaces(ctx, prefix, 3); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\nchaos: running without namespaces: no partition, disk-full or full-follower faults\n", err)
		os.Setenv(chaos.NsEnv, "")
		return runPlain()
	}
	defer chaos.DeleteNamespaces(ctx, prefix, 3)
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	args := append([]string{"netns", "exec", chaos.HubName(prefix), "unshare", "--mount", "--propagation", "private", self}, os.Args[1:]...)
	cmd := exec.Command("ip", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), chaos.NsEnv+"="+prefix)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	return 0
}

// runPlain runs on loopback after the namespaces could not be made.
func runPlain() int {
	os.Args = append(os.Args, "--netns=false")
	return run()
}
