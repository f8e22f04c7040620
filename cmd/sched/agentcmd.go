//go:build !schedthin

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/banyan-sched/banyan/agent"
	"github.com/banyan-sched/banyan/agent/devices"
	"github.com/banyan-sched/banyan/agent/fingerprint"
	"github.com/banyan-sched/banyan/agent/tasklog"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/pool"
	"github.com/spf13/cobra"
)

// agentFlags are the flags of `sched agent`.
type agentFlags struct {
	id, workDir, reserve string
	drainGrace           time.Duration
	maxMessage           string
	servers              []string
	labels               []string
	noGPU                bool
	nvencSessions        int
	nvencLimit           string
	nvencSystemSessions  int
	nvencUtilCeiling     int
	nvencCooldown        time.Duration
	gpuPoll              time.Duration
	killGrace            time.Duration
	storageRoots         []string
	taskEnv              []string
	runAs, taskDir       string
	taskLogDir           string
	taskLogMax           string
	taskLogAge           time.Duration
	taskPids             int64
	noCgroups            bool
	functions, warm      []string
	httpAddr             string
}

// functionsFromFlags returns the built-in functions plus --function ones,
// and the --warm targets.
func functionsFromFlags(fns, warm []string) (map[string][]string, map[string]int, error) {
	out := map[string][]string{}
	for name, argv := range builtinFunctions {
		out[name] = argv
	}
	for _, f := range fns {
		name, cmdline, ok := strings.Cut(f, "=")
		if !ok || name == "" || len(strings.Fields(cmdline)) == 0 {
			return nil, nil, usageError{fmt.Sprintf("--function %q: want NAME=COMMAND ARGS...", f)}
		}
		out[name] = strings.Fields(cmdline)
	}
	w := map[string]int{}
	for _, kv := range warm {
		name, n, ok := strings.Cut(kv, "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil || count < 0 {
			return nil, nil, usageError{fmt.Sprintf("--warm %q: want FUNCTION=N", kv)}
		}
		if _, known := out[name]; !known {
			return nil, nil, usageError{fmt.Sprintf("--warm %q: no function %s on this agent", kv, name)}
		}
		w[name] = count
	}
	return out, w, nil
}

func newAgentCmd(g *globals) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run an agent on this host (or: sched agent list)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(f.servers) == 0 {
				servers, err := splitAddrs(g.addr)
				if err != nil {
					return err
				}
				f.servers = servers
			}
			src, err := tlsSource(g.tls, tlsconfig.RoleAgent)
			if err != nil {
				return err
			}
			if f.id == "" && src != nil {
				f.id = src.Identity().ID // with TLS the certificate names the agent
			}
			opts, err := f.fingerprintOptions()
			if err != nil {
				return err
			}
			gpuCfg, err := f.gpuConfig()
			if err != nil {
				return err
			}
			fp, err := fingerprint.Collect(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("fingerprint host: %w", err)
			}
			if f.id == "" {
				f.id = fp.Hostname
			}
			env, err := parseKV("--task-env", f.taskEnv)
			if err != nil {
				return err
			}
			fns, warm, err := functionsFromFlags(f.functions, f.warm)
			if err != nil {
				return err
			}
			runAs, err := resolveRunAs(f.runAs, os.Geteuid(), systemUsers)
			if err != nil {
				return err
			}
			if len(f.storageRoots) == 0 {
				slog.Warn("no --storage-root: encoder steps will be refused on this agent")
			}
			maxMsg, err := messageSize(f.maxMessage)
			if err != nil {
				return err
			}
			logMax, err := limits.ParseSize(f.taskLogMax)
			if err != nil {
				return usageError{fmt.Sprintf("--task-log-max: %v", err)}
			}
			if f.taskLogDir == "" && f.taskDir == "" {
				slog.Warn("no --task-log-dir (or --task-dir): task output is kept in a temp dir and removed when the agent stops")
			}
			cg := agentCgroups(f.id, f.noCgroups, slog.Default())
			a, err := agent.New(agent.Config{ID: f.id, Servers: f.servers, Fingerprint: fp, WorkDir: f.workDir,
				MaxMessageSize: maxMsg, KillGrace: f.killGrace, StorageRoots: f.storageRoots, Env: withTraceEnv(env), Functions: fns, Warm: warm, Logger: slog.Default(),
				TLS: src, Token: g.token, RunAs: runAs, TaskDir: f.taskDir, Cgroups: cg, TaskPids: f.taskPids, GPU: gpuCfg,
				TaskLogDir: f.taskLogDir, TaskLogMax: int64(logMax), TaskLogAge: f.taskLogAge})
			if err != nil {
				return err
			}
			h, err := agentHTTP(f.httpAddr, a, slog.Default())
			if err != nil {
				return err
			}
			defer h.stop()
			slog.Info("agent starting", "agent", f.id, "servers", f.servers, "capacity", fp.Capacity.Vector().String())
			err = runDraining(cmd.Context(), a, f.drainGrace)
			if cg != nil {
				if cerr := cg.Close(); cerr != nil {
					slog.Warn("remove task cgroups", "err", cerr)
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.drainGrace, "drain-grace", time.Minute, "on SIGTERM, let running tasks finish this long (no new work) before stopping; 0 stops at once")
	fl.StringVar(&f.id, "id", "", "agent id, stable across restarts (default: the TLS certificate's agent id, else the hostname)")
	fl.StringSliceVar(&f.servers, "servers", nil, "scheduler server addresses (default: --addr)")
	fl.StringVar(&f.workDir, "work-dir", "", "directory tasks run in unless they name one")
	fl.StringVar(&f.reserve, "reserve", "", "resources held back for the host, e.g. cpu=1,memory=2Gi")
	fl.StringSliceVar(&f.labels, "label", nil, "extra label key=value (repeatable)")
	fl.BoolVar(&f.noGPU, "no-gpu", false, "do not look for GPUs")
	fl.IntVar(&f.nvencSessions, "nvenc-sessions", 0, "encoder sessions per NVENC GPU (default 8)")
	fl.StringVar(&f.nvencLimit, "nvenc-limit", string(fingerprint.LimitAuto),
		"NVENC session rule: auto (GeForce/Titan capped per host, others uncapped), per-device, per-system or none")
	fl.IntVar(&f.nvencSystemSessions, "nvenc-system-sessions", fingerprint.DefaultNVENCSystemSessions,
		"host-wide NVENC session cap of per-system GPUs (NVIDIA's consumer driver cap)")
	fl.IntVar(&f.nvencUtilCeiling, "nvenc-util-ceiling", devices.DefaultUtilCeiling,
		"encoder utilisation (percent) at which an uncapped GPU offers no new NVENC session")
	fl.DurationVar(&f.nvencCooldown, "nvenc-cooldown", devices.DefaultCooldown,
		"after an NVENC session-limit failure, how long a GPU waits before it offers one session more")
	fl.DurationVar(&f.gpuPoll, "gpu-poll-interval", agent.DefaultGPUPollInterval, "how often GPU health and encoder utilisation are read")
	fl.StringArrayVar(&f.functions, "function", nil, "serve a function: NAME=COMMAND ARGS... (a line-protocol worker; repeatable)")
	fl.StringArrayVar(&f.warm, "warm", nil, "keep N warm workers of a function: NAME=N (repeatable)")
	fl.StringArrayVar(&f.taskEnv, "task-env", nil, "KEY=VALUE added to every task's environment (repeatable)")
	fl.StringSliceVar(&f.storageRoots, "storage-root", nil, "directory media steps may read and write (repeatable; encoder steps are refused without one)")
	fl.StringVar(&f.runAs, "run-as", "", "user tasks run as (required when the agent runs as root; root only if named)")
	fl.StringVar(&f.taskDir, "task-dir", "", "parent of the tasks' private temp dirs (default: a new dir in the system temp dir)")
	fl.StringVar(&f.taskLogDir, "task-log-dir", "", "keeps each task attempt's full stdout and stderr (default: logs/ in --task-dir)")
	fl.StringVar(&f.taskLogMax, "task-log-max", "64MiB", "cap of each kept stream of an attempt; the newest bytes are kept")
	fl.DurationVar(&f.taskLogAge, "task-log-age", tasklog.DefaultMaxAge, "remove kept output this old even if its job is still in the state")
	fl.Int64Var(&f.taskPids, "task-pids-max", 4096, "pids.max of each task's cgroup (0: no limit)")
	fl.BoolVar(&f.noCgroups, "no-cgroups", false, "run tasks without cgroups (no resource limits)")
	fl.StringVar(&f.maxMessage, "max-message-size", "16MiB", "largest gRPC message, the same as the servers'")
	fl.DurationVar(&f.killGrace, "kill-grace", 5*time.Second, "SIGTERM-to-SIGKILL grace for cancelled and preempted tasks")
	fl.StringVar(&f.httpAddr, "http-addr", "", httpAddrHelp)
	cmd.AddCommand(agentClientCmds(g)...)
	return cmd
}

func (f *agentFlags) fingerprintOptions() (fingerprint.Options, error) {
	reserve, err := pool.ParseResources(f.reserve)
	if err != nil {
		return fingerprint.Options{}, usageError{"--reserve: " + err.Error()}
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return fingerprint.Options{}, err
	}
	limit, err := fingerprint.ParseLimitMode(f.nvencLimit)
	if err != nil {
		return fingerprint.Options{}, usageError{"--nvenc-limit: " + err.Error()}
	}
	if f.nvencSessions < 0 || f.nvencSystemSessions < 0 {
		return fingerprint.Options{}, usageError{"--nvenc-sessions and --nvenc-system-sessions must not be negative"}
	}
	return fingerprint.Options{DisableGPU: f.noGPU, NVENCSessionsPerGPU: f.nvencSessions, NVENCLimit: limit,
		NVENCSystemSessions: f.nvencSystemSessions, Reserve: reserve, Labels: labels, Logger: slog.Default()}, nil
}

// gpuConfig is how the agent watches and offers its GPUs: the NVML monitor
// runs unless --no-gpu.
func (f *agentFlags) gpuConfig() (agent.GPUConfig, error) {
	if f.nvencUtilCeiling < 1 || f.nvencUtilCeiling > 100 {
		return agent.GPUConfig{}, usageError{fmt.Sprintf("--nvenc-util-ceiling %d: want a percentage from 1 to 100", f.nvencUtilCeiling)}
	}
	if f.nvencCooldown <= 0 || f.gpuPoll <= 0 {
		return agent.GPUConfig{}, usageError{"--nvenc-cooldown and --gpu-poll-interval must be positive"}
	}
	return agent.GPUConfig{Watch: !f.noGPU, PollInterval: f.gpuPoll, UtilCeiling: int32(f.nvencUtilCeiling),
		Cooldown: f.nvencCooldown}, nil
}

func parseLabels(in []string) (map[string]string, error) { return parseKV("--label", in) }

// parseKV parses repeated key=value flags.
func parseKV(flag string, in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Sprintf("%s %q: want key=value", flag, l)}
		}
		out[k] = v
	}
	return out, nil
}

// runDraining runs the agent until ctx ends. The first SIGTERM drains it:
// the leader places nothing new on it and the agent stops once its tasks
// are done or grace has passed (what still runs then is requeued by the
// leader without using a retry); a second SIGTERM stops it at once.
func runDraining(ctx context.Context, a *agent.Agent, grace time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var terms atomic.Int32
	started := make(chan struct{})
	hook := func() {
		if terms.Add(1) > 1 || grace <= 0 {
			cancel()
			return
		}
		a.Drain(grace)
		close(started)
	}
	onTerm.Store(&hook)
	defer onTerm.Store(nil)
	done := make(chan struct{})
	go func() { // stops the agent when its drain is over
		defer close(done)
		select {
		case <-ctx.Done():
			return
		case <-started:
		}
		deadline := time.Now().Add(grace)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for a.Running() > 0 && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		slog.Info("drained; stopping", "running", a.Running())
		cancel()
	}()
	err := a.Run(ctx)
	cancel()
	<-done
	return err
}
