package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
)

// gpuSummary is an agent's GPUs in one cell of `agent list`: "-", "4x
// NVIDIA L4", "2x NVIDIA L4, 1x NVIDIA A10", with the unhealthy and the
// MIG-mode ones counted: "4x NVIDIA L4 (1 unhealthy)".
func gpuSummary(a *pb.Agent) string {
	gpus := a.GetFingerprint().GetGpus()
	if len(gpus) == 0 {
		return "-"
	}
	count := map[string]int{}
	var models []string
	unhealthy, mig := 0, 0
	for _, g := range gpus {
		if count[g.Model] == 0 {
			models = append(models, g.Model)
		}
		count[g.Model]++
		if g.Unhealthy != "" {
			unhealthy++
		}
		if g.MigEnabled {
			mig++
		}
	}
	parts := make([]string, len(models))
	for i, m := range models {
		parts[i] = fmt.Sprintf("%dx %s", count[m], m)
	}
	s := strings.Join(parts, ", ")
	var notes []string
	if unhealthy > 0 {
		notes = append(notes, fmt.Sprintf("%d unhealthy", unhealthy))
	}
	if mig > 0 {
		notes = append(notes, fmt.Sprintf("%d in MIG mode", mig))
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

// nvencLimitName says where a GPU's session limit comes from.
func nvencLimitName(l pb.NVENCLimit) string {
	switch l {
	case pb.NVENCLimit_NVENC_LIMIT_PER_DEVICE:
		return "per device"
	case pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM:
		return "per system"
	case pb.NVENCLimit_NVENC_LIMIT_NONE:
		return "none (capacity)"
	}
	return "-"
}

// writeAgentShow prints one agent and each of its devices with what is
// placed on it.
func writeAgentShow(out io.Writer, a *pb.Agent, now time.Time) error {
	fp := a.GetFingerprint()
	fmt.Fprintf(out, "Agent %s: %s\n", a.Id, agentStateCell(a))
	fmt.Fprintf(out, "  host:      %s (%d cores, %s memory)\n", fp.GetHostname(), fp.GetCpuCores(),
		pool.FormatQuantity("memory", fp.GetMemoryBytes()))
	fmt.Fprintf(out, "  capacity:  %s\n", fp.GetCapacity().Vector())
	fmt.Fprintf(out, "  used:      %s (%d tasks)\n", a.Used.Vector(), a.RunningTasks)
	if a.LastSeenUnixMs > 0 {
		fmt.Fprintf(out, "  last seen: %s ago\n", now.Sub(time.UnixMilli(a.LastSeenUnixMs)).Round(time.Second))
	}
	if n := fp.GetNvencSystemSessions(); n > 0 {
		fmt.Fprintf(out, "  NVENC:     %d sessions per host across its GPUs (driver limit)\n", n)
	}
	if len(a.GetFingerprint().GetLabels()) > 0 {
		keys := make([]string, 0, len(fp.Labels))
		for k := range fp.Labels {
			keys = append(keys, k+"="+fp.Labels[k])
		}
		sort.Strings(keys)
		fmt.Fprintf(out, "  labels:    %s\n", strings.Join(keys, " "))
	}
	if len(fp.GetGpus()) == 0 {
		fmt.Fprintln(out, "  GPUs:      none")
		return nil
	}
	use := map[string]*pb.GPUUse{}
	for _, u := range a.GpuUse {
		use[u.Uuid] = u
	}
	fmt.Fprintln(out)
	w := newTableTo(out)
	fmt.Fprintln(w, "GPU\tUUID\tMODEL\tMEMORY USED\tNVENC USED\tLIMIT\tENC UTIL\tTASKS\tSTATE")
	row := func(name, uuid, model string, mem int64, sessions int32, limit string, util string, health string) {
		u := use[uuid]
		state := "healthy"
		if health != "" {
			state = "unhealthy: " + health
		}
		if u.GetWhole() {
			state += ", held whole"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s/%s\t%d/%d\t%s\t%s\t%d\t%s\n", name, uuid, model,
			pool.FormatQuantity("gpu_memory", u.GetMemoryBytes()), pool.FormatQuantity("gpu_memory", mem),
			u.GetNvenc(), sessions, limit, util, u.GetTasks(), state)
	}
	for _, g := range fp.Gpus {
		util := fmt.Sprintf("%d%%", g.EncoderUtilization)
		if g.EncoderSessions == 0 {
			util = "-"
		}
		if g.MigEnabled {
			fmt.Fprintf(w, "%d\t%s\t%s\t-\t-\t-\t-\t-\t%s\n", g.Index, g.Uuid, g.Model,
				fmt.Sprintf("MIG mode, %d instances", len(g.Mig)))
			for _, m := range g.Mig {
				var sessions int32
				if m.Encoders > 0 {
					sessions = g.EncoderSessions
				}
				row(fmt.Sprintf("%d/%s", g.Index, m.Profile), m.Uuid, "MIG "+m.Profile, m.MemoryBytes, sessions,
					nvencLimitName(g.NvencLimit), "-", g.Unhealthy)
			}
			continue
		}
		row(fmt.Sprint(g.Index), g.Uuid, g.Model, g.MemoryBytes, g.EncoderSessions, nvencLimitName(g.NvencLimit), util, g.Unhealthy)
	}
	return w.Flush()
}

func newAgentShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an agent: its host, capacity and each GPU with what is placed on it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := connect(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.agents.ListAgents(ctx, &pb.ListAgentsRequest{})
			if err != nil {
				return fmt.Errorf("show agent %s: %w", args[0], err)
			}
			for _, a := range resp.Agents {
				if a.Id != args[0] {
					continue
				}
				if g.output == "json" {
					return printJSON(os.Stdout, a)
				}
				return writeAgentShow(os.Stdout, a, time.Now())
			}
			return fmt.Errorf("no agent %q (sched agent list shows the agents)", args[0])
		},
	}
}
