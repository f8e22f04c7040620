package main

import (
	"fmt"
	"os"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/spf13/cobra"
)

func newPoolCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "Manage resource pools and their quotas"}
	cmd.AddCommand(newPoolPutCmd(g, true), newPoolPutCmd(g, false), newPoolDeleteCmd(g), newPoolListCmd(g))
	return cmd
}

// quotaFlags are the --guaranteed and --max flags of pool create and set.
type quotaFlags struct{ guaranteed, max string }

func (q *quotaFlags) toPool(path string) (*pb.Pool, error) {
	g, err := pool.ParseResources(q.guaranteed)
	if err != nil {
		return nil, usageError{"--guaranteed: " + err.Error()}
	}
	m, names, err := pool.ParseResourcesNamed(q.max)
	if err != nil {
		return nil, usageError{"--max: " + err.Error()}
	}
	return &pb.Pool{Path: path, Guaranteed: pb.FromVector(g), Max: pb.FromVector(m), MaxSet: names}, nil
}

func newPoolPutCmd(g *globals, create bool) *cobra.Command {
	q := &quotaFlags{}
	use, short := "create PATH", "Create a pool (e.g. studio/ingest) with its quota"
	if !create {
		use, short = "set PATH", "Change a pool's quota (the flags given replace the quota)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := q.toPool(args[0])
			if err != nil {
				return err
			}
			c, ctx, done, err := connect(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			var out *pb.Pool
			if create {
				out, err = c.pools.CreatePool(ctx, &pb.PoolRequest{Pool: p})
			} else {
				out, err = c.pools.UpdatePool(ctx, &pb.PoolRequest{Pool: p})
			}
			if err != nil {
				return fmt.Errorf("pool %s: %w", args[0], err)
			}
			if g.output == "json" {
				return printJSON(os.Stdout, out)
			}
			printPools([]*pb.Pool{out})
			return nil
		},
	}
	cmd.Flags().StringVar(&q.guaranteed, "guaranteed", "", "guaranteed resources, e.g. cpu=64,memory=256Gi,gpu=4,nvenc=12")
	cmd.Flags().StringVar(&q.max, "max", "", "ceilings, e.g. cpu=256,gpu=8 (unnamed resources are unlimited)")
	return cmd
}

func newPoolDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete a pool with no children and no queued or running work",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := connect(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			if _, err := c.pools.DeletePool(ctx, &pb.DeletePoolRequest{Path: args[0]}); err != nil {
				return fmt.Errorf("delete pool %s: %w", args[0], err)
			}
			fmt.Printf("deleted %s\n", args[0])
			return nil
		},
	}
}

func newPoolListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List pools with their quotas and usage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := connect(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.pools.ListPools(ctx, &pb.ListPoolsRequest{})
			if err != nil {
				return fmt.Errorf("list pools: %w", err)
			}
			if g.output == "json" {
				return printJSON(os.Stdout, resp)
			}
			printPools(resp.Pools)
			return nil
		},
	}
}

func printPools(pools []*pb.Pool) {
	w := newTable()
	fmt.Fprintln(w, "POOL\tGUARANTEED\tMAX\tUSAGE\tQUEUED\tRUNNING")
	for _, p := range pools {
		q, _ := pb.QuotaFromPool(p)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\n", p.Path, q.Guaranteed, q.MaxString(), p.Usage.Vector(),
			p.QueuedTasks, p.RunningTasks)
	}
	_ = w.Flush()
}
