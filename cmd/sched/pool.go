package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/spf13/cobra"
)

func newPoolCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "Manage resource pools and their quotas"}
	cmd.AddCommand(newPoolPutCmd(g, true), newPoolPutCmd(g, false), newPoolDeleteCmd(g), newPoolListCmd(g),
		newPoolTreeCmd(g), newPoolUsageCmd(g))
	return cmd
}

// quotaFlags are the --guaranteed and --max flags of pool create and set.
type quotaFlags struct {
	guaranteed, max string
	warm            []string
}

func (q *quotaFlags) toPool(path string) (*pb.Pool, error) {
	g, err := pool.ParseResources(q.guaranteed)
	if err != nil {
		return nil, usageError{"--guaranteed: " + err.Error()}
	}
	m, names, err := pool.ParseResourcesNamed(q.max)
	if err != nil {
		return nil, usageError{"--max: " + err.Error()}
	}
	p := &pb.Pool{Path: path, Guaranteed: pb.FromVector(g), Max: pb.FromVector(m), MaxSet: names}
	for _, w := range q.warm {
		fn, n, ok := strings.Cut(w, "=")
		count, err := strconv.Atoi(n)
		if !ok || fn == "" || err != nil || count < 0 {
			return nil, usageError{fmt.Sprintf("--warm %q: want FUNCTION=N", w)}
		}
		if p.Warm == nil {
			p.Warm = map[string]int32{}
		}
		p.Warm[fn] = int32(count)
	}
	return p, nil
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
	cmd.Flags().StringArrayVar(&q.warm, "warm", nil, "reserve warm workers: FUNCTION=N (repeatable), counted against the guarantee")
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
			return runCall(cmd, g, "list pools", func(ctx context.Context, c *client) (*pb.ListPoolsResponse, error) {
				return c.pools.ListPools(ctx, &pb.ListPoolsRequest{})
			}, func(resp *pb.ListPoolsResponse) error {
				printPools(resp.Pools)
				return nil
			})
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

func newPoolTreeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tree",
		Short: "Show the pool tree: usage against guaranteed and max for every resource",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "pool tree", func(ctx context.Context, c *client) (*pb.ListPoolsResponse, error) {
				return c.pools.ListPools(ctx, &pb.ListPoolsRequest{})
			}, func(resp *pb.ListPoolsResponse) error {
				printTree(os.Stdout, resp)
				return nil
			})
		},
	}
}

// printTree draws the pools as a tree with one used/guaranteed/max column
// per resource ("-" for no ceiling) and a "+" where a pool runs on
// borrowed capacity (usage above its guarantee).
func printTree(out io.Writer, resp *pb.ListPoolsResponse) {
	fmt.Fprintf(out, "cluster: %s\n", resp.Cluster.Vector())
	for _, w := range resp.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	byPath := map[string]*pb.Pool{}
	children := map[string][]string{}
	for _, p := range resp.Pools {
		byPath[p.Path] = p
	}
	for _, p := range resp.Pools {
		parent := pool.Parent(p.Path)
		if byPath[parent] == nil {
			parent = "" // not shown (ACLs): draw the pool as a top
		}
		children[parent] = append(children[parent], p.Path)
	}
	w := newTableTo(out)
	fmt.Fprintln(w, "POOL\tCPU\tMEMORY\tGPU\tGPU MEM\tNVENC\tQUEUED\tRUNNING")
	fmt.Fprintln(w, "\tused/guar/max\t\t\t\t\t\t")
	var walk func(path, prefix string, last bool, depth int)
	walk = func(path, prefix string, last bool, depth int) {
		p := byPath[path]
		name := path[strings.LastIndex(path, "/")+1:]
		branch, next := "", ""
		if depth > 0 {
			branch, next = "├─ ", "│  "
			if last {
				branch, next = "└─ ", "   "
			}
		}
		q, _ := pb.QuotaFromPool(p)
		used := p.Usage.Vector()
		cols := make([]string, len(pool.ResourceNames))
		for i, n := range pool.ResourceNames {
			u, _ := used.Get(n)
			gv, _ := q.Guaranteed.Get(n)
			m := "-"
			if mv, set := q.MaxOf(i); set {
				m = pool.FormatQuantity(n, mv)
			}
			mark := ""
			if u > gv {
				mark = "+"
			}
			cols[i] = fmt.Sprintf("%s/%s/%s%s", pool.FormatQuantity(n, u), pool.FormatQuantity(n, gv), m, mark)
		}
		fmt.Fprintf(w, "%s%s%s\t%s\t%d\t%d\n", prefix, branch, name, strings.Join(cols, "\t"), p.QueuedTasks, p.RunningTasks)
		kids := children[path]
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1, depth+1)
		}
	}
	for _, top := range children[""] {
		walk(top, "", false, 0)
	}
	_ = w.Flush()
}

func newPoolUsageCmd(g *globals) *cobra.Command {
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "usage [PATH]",
		Short: "Cost accounting: resource-seconds and billed cost per pool (descendants included)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since <= 0 {
				return usageError{"--since must be positive, e.g. 24h"}
			}
			req := &pb.PoolUsageRequest{SinceUnixMs: time.Now().Add(-since).UnixMilli()}
			if len(args) == 1 {
				req.Path = args[0]
			}
			return runCall(cmd, g, "pool usage", func(ctx context.Context, c *client) (*pb.PoolUsageResponse, error) {
				return c.pools.GetPoolUsage(ctx, req)
			}, func(resp *pb.PoolUsageResponse) error {
				w := newTable()
				fmt.Fprintf(w, "POOL\tCPU-s\tGPU-s\tNVENC-s\tMEM GiB-s\tBILLED\t(since %s ago)\n", since)
				for _, u := range resp.Pools {
					c := u.Cost
					fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.4f\t\n", u.Path, c.GetCpuSeconds(), c.GetGpuSeconds(),
						c.GetNvencSeconds(), c.GetMemoryGibSeconds(), c.GetBilled())
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back (whole hours)")
	return cmd
}
