//go:build !schedthin

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/banyan-sched/banyan/agent"
	"github.com/banyan-sched/banyan/agent/fingerprint"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/metrics"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
)

func newDevCmd(g *globals) *cobra.Command {
	var dataDir string
	var agents int
	var lease time.Duration
	var roots, taskEnv []string
	var enforceACL, hugePages bool
	var httpAddr string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a one-process cluster: a single-node server and N local agents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if agents < 0 || agents > 64 {
				return usageError{"--agents must be between 0 and 64"}
			}
			if len(roots) == 0 {
				cwd, err := os.Getwd()
				if err != nil {
					return fmt.Errorf("working directory: %w", err)
				}
				roots = []string{cwd, os.TempDir()}
			}
			env, err := parseKV("--task-env", taskEnv)
			if err != nil {
				return err
			}
			return runDev(cmd.Context(), devConfig{addr: g.addr, dataDir: dataDir, agents: agents, lease: lease,
				roots: roots, env: env, acl: enforceACL, httpAddr: httpAddr, hugePages: hugePages})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".banyan-dev", "data directory (kept across restarts)")
	cmd.Flags().IntVar(&agents, "agents", 1, "number of local agents")
	cmd.Flags().BoolVar(&hugePages, "heap-huge-pages", true, "ask Linux for 2 MiB pages under the growing heap, as `sched server` does")
	cmd.Flags().BoolVar(&enforceACL, "acl", false, "enforce ACLs (local agents get their own token; run `sched acl bootstrap` for yours)")
	cmd.Flags().DurationVar(&lease, "lease", 10*time.Second, "agent lease")
	cmd.Flags().StringArrayVar(&taskEnv, "task-env", nil, "KEY=VALUE added to every task's environment (repeatable)")
	cmd.Flags().StringSliceVar(&roots, "storage-root", nil, "directories media steps may use (default: the current directory and the temp dir)")
	cmd.Flags().StringVar(&httpAddr, "http-addr", DefaultDevHTTPAddr, httpAddrHelp)
	return cmd
}

// runDev runs the server and agents until ctx ends.
// devConfig is what `sched dev` runs.
type devConfig struct {
	addr, dataDir string
	agents        int
	lease         time.Duration
	roots         []string
	env           map[string]string
	acl           bool
	// httpAddr serves metrics and health ("" for none); a busy port only
	// warns, so that a second dev cluster still starts.
	httpAddr string
	// hugePages advises the process's heap for huge pages (hugeheap).
	hugePages bool
}

func runDev(ctx context.Context, c devConfig) error {
	addr, dataDir, agents, lease := c.addr, c.dataDir, c.agents, c.lease
	log := slog.Default()
	if c.hugePages {
		defer startHugeHeap(ctx)()
	}
	m := metrics.New()
	s, err := server.New(server.Config{NodeID: "dev", DataDir: filepath.Join(dataDir, "server"), BindAddr: addr,
		Bootstrap: true, Lease: lease, Logger: log, RaftLogLevel: "error", ACL: c.acl, Observer: m})
	if err != nil {
		return err
	}
	h, err := serverHTTP(c.httpAddr, s, m, log)
	if err != nil {
		log.Warn("no HTTP metrics and health", "err", err)
	}
	defer h.stop()
	var agentToken string
	if c.acl {
		tctx, tcancel := context.WithTimeout(ctx, 15*time.Second)
		agentToken, err = s.LocalAgentToken(tctx)
		tcancel()
		if err != nil {
			s.Close()
			return err
		}
	}
	fp, err := fingerprint.Collect(ctx, fingerprint.Options{Logger: log})
	if err != nil {
		s.Close()
		return fmt.Errorf("fingerprint host: %w", err)
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 1; i <= agents; i++ {
		work := filepath.Join(dataDir, fmt.Sprintf("agent-%d", i))
		if err := os.MkdirAll(work, 0o755); err != nil {
			cancel()
			s.Close()
			return fmt.Errorf("agent work dir: %w", err)
		}
		a, err := agent.New(agent.Config{ID: fmt.Sprintf("dev-agent-%d", i), Servers: []string{s.Addr()},
			Fingerprint: shareOfHost(fp, agents, i), WorkDir: work, TaskDir: filepath.Join(work, "tasks"), StorageRoots: c.roots, Env: withTraceEnv(c.env),
			Functions: builtinFunctions, Logger: log, Token: agentToken,
			GPU: agent.GPUConfig{Watch: i == 1}}) // the GPUs are on the first agent (shareOfHost)
		if err != nil {
			cancel()
			s.Close()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Run(actx)
		}()
	}
	fmt.Fprintf(os.Stderr, "sched dev: server on %s with %d agents, data in %s (Ctrl-C to stop)\n", s.Addr(), agents, dataDir)
	if h != nil {
		fmt.Fprintf(os.Stderr, "sched dev: web page on http://%s/ (and /metrics, /healthz, /readyz)\n", h.Addr())
	}
	var halted error
	select {
	case <-ctx.Done():
	case <-s.Halted():
		halted = fmt.Errorf("server stopped: %w", s.HaltErr())
	}
	cancel()
	wg.Wait()
	if err := s.Close(); halted == nil {
		return err
	}
	return halted
}

// shareOfHost is the fingerprint local agent i (1-based) of n offers: the
// host's cpu and memory split evenly (agent 1 takes the remainder), and
// its GPUs all on agent 1, so that n agents together never claim more
// than the one host they share.
func shareOfHost(fp *pb.Fingerprint, n, i int) *pb.Fingerprint {
	out := proto.Clone(fp).(*pb.Fingerprint)
	if n <= 1 {
		return out
	}
	c := out.GetCapacity()
	if c == nil {
		return out
	}
	split := func(v int64) int64 {
		s := v / int64(n)
		if i == 1 {
			s += v % int64(n)
		}
		return s
	}
	c.CpuMillis, c.MemoryBytes = split(c.CpuMillis), split(c.MemoryBytes)
	if i > 1 {
		c.Gpus, c.GpuMemoryBytes, c.Nvenc = 0, 0, 0
		out.Gpus, out.NvencSystemSessions = nil, 0
	}
	return out
}
