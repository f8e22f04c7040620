package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// agentClientCmds are the subcommands of `sched agent` that are client
// calls (agentClientCommands); `sched agent` itself is the agent daemon.
func agentClientCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newAgentListCmd(g), newAgentShowCmd(g), newAgentDrainCmd(g), newAgentEligibilityCmd(g)}
}

// agentStateCell is an agent's state in `agent list`: "up", "down", "up,
// ineligible", "up, draining (deadline 14:03:00)", "up, drained".
func agentStateCell(a *pb.Agent) string {
	s := a.State
	switch d := a.Drain; {
	case d != nil && d.Complete:
		s += ", drained"
	case d != nil && d.DeadlineUnixMs > 0:
		s += ", draining (deadline " + fmtDateTime(d.DeadlineUnixMs) + ")"
	case d != nil:
		s += ", draining"
	case a.Ineligible:
		s += ", ineligible"
	}
	return s
}

// fmtDateTime renders a time with its date, in local time.
func fmtDateTime(ms int64) string {
	return time.UnixMilli(ms).Format("2006-01-02 15:04:05")
}

func newAgentDrainCmd(g *globals) *cobra.Command {
	var deadline time.Duration
	var keepOpp, cancel bool
	cmd := &cobra.Command{
		Use:   "drain ID",
		Short: "Stop new placements on an agent and let its tasks finish (for maintenance)",
		Long: "Stop new placements on an agent and let its running tasks finish. At --deadline what is\n" +
			"left is stopped and requeued without using a retry (opportunistic work too, unless\n" +
			"--keep-opportunistic). The agent stays ineligible after the drain, until\n" +
			"`sched agent eligibility ID on` (or `drain --cancel`).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if deadline < 0 {
				return usageError{fmt.Sprintf("--deadline %s: want a duration of zero (none) or more", deadline)}
			}
			return runCall(cmd, g, "drain agent "+args[0], func(ctx context.Context, c *client) (*pb.Agent, error) {
				return c.agents.DrainAgent(ctx, &pb.DrainAgentRequest{Id: args[0], DeadlineMs: deadline.Milliseconds(),
					KeepOpportunistic: keepOpp, Cancel: cancel})
			}, func(a *pb.Agent) error {
				fmt.Printf("Agent %s: %s, %d tasks running\n", a.Id, agentStateCell(a), a.RunningTasks)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "stop and requeue what still runs after this long (0: wait for it)")
	cmd.Flags().BoolVar(&keepOpp, "keep-opportunistic", false, "leave opportunistic work running past the deadline")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "end the drain: the agent takes work again")
	return cmd
}

func newAgentEligibilityCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "eligibility ID on|off",
		Short: "Cordon (off) or uncordon (on) an agent; on also ends a drain",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[1] {
			case "on":
				on = true
			case "off":
			default:
				return usageError{fmt.Sprintf("eligibility %q: want on or off", args[1])}
			}
			return runCall(cmd, g, "set eligibility of agent "+args[0], func(ctx context.Context, c *client) (*pb.Agent, error) {
				return c.agents.SetEligibility(ctx, &pb.EligibilityRequest{Id: args[0], Eligible: on})
			}, func(a *pb.Agent) error {
				fmt.Printf("Agent %s: %s\n", a.Id, agentStateCell(a))
				return nil
			})
		},
	}
}

func newAgentListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List agents with their capacity and use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "list agents", func(ctx context.Context, c *client) (*pb.ListAgentsResponse, error) {
				return c.agents.ListAgents(ctx, &pb.ListAgentsRequest{})
			}, func(resp *pb.ListAgentsResponse) error {
				w := newTable()
				fmt.Fprintln(w, "ID\tSTATE\tGPUS\tCAPACITY\tUSED\tTASKS\tLAST SEEN")
				for _, a := range resp.Agents {
					seen := "-"
					if a.LastSeenUnixMs > 0 {
						seen = time.Since(time.UnixMilli(a.LastSeenUnixMs)).Round(time.Second).String() + " ago"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.Id, agentStateCell(a), gpuSummary(a), a.Fingerprint.GetCapacity().Vector(),
						a.Used.Vector(), a.RunningTasks, seen)
				}
				return w.Flush()
			})
		},
	}
}
