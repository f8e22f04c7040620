package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newJobLogsCmd(g *globals) *cobra.Command {
	var req pb.LogsRequest
	cmd := &cobra.Command{
		Use:   "logs JOB [TASK]",
		Short: "Print a task attempt's full stdout (or stderr), kept on the agent that ran it; -f follows it",
		Long: `Print the full output of a task attempt, which the agent that ran it keeps
in files (capped per stream by its --task-log-max: the newest bytes are kept).
TASK is a task id or name, by default the job's only task; --attempt picks an
attempt, by default the last. -f follows a running attempt until it ends.
Needs "submit" on the job's pool when ACLs are on: output may hold secrets.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.JobId = args[0]
			if len(args) == 2 {
				req.Task = args[1]
			}
			if req.Attempt < 0 {
				return usageError{fmt.Sprintf("--attempt %d: attempts count from 1", req.Attempt)}
			}
			if err := jobLogs(cmd.Context(), g, &req, os.Stdout, os.Stderr); err != nil {
				return fmt.Errorf("job logs: %w", err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int32Var(&req.Attempt, "attempt", 0, "attempt number (default: the last)")
	fl.BoolVar(&req.Stderr, "stderr", false, "print stderr instead of stdout")
	fl.BoolVarP(&req.Follow, "follow", "f", false, "keep printing as a running attempt writes, until it ends")
	return cmd
}

// Retries of a logs stream.
const (
	// logsHops bounds how many times the CLI follows a leader hint.
	logsHops = 3
	// logsRetries bounds the retries after a server became unavailable
	// (leadership moved, a server restarted), logsRetryEvery apart.
	logsRetries    = 20
	logsRetryEvery = 500 * time.Millisecond
)

// jobLogs streams the output to out, following the leader a follower
// names and resuming where it stopped when a server goes away mid-stream
// (req.Offset advances with what was written); notes about dropped bytes
// go to notes.
func jobLogs(ctx context.Context, g *globals, req *pb.LogsRequest, out, notes io.Writer) error {
	base := g
	hops, retries, served := 0, 0, false
	for {
		got, err := streamLogsOnce(ctx, g, req, out, notes)
		served = served || got
		if err == nil || ctx.Err() != nil {
			return err
		}
		code := status.Code(err)
		if m := leaderHint.FindStringSubmatch(err2string(err)); code == codes.FailedPrecondition && m != nil && m[1] != "" && hops < logsHops {
			hops++
			g2 := *base
			g2.addr = m[1]
			g = &g2
			continue
		}
		// No leader yet (an election), or the leader that served the
		// stream went away: try again where it stopped.
		electing := code == codes.FailedPrecondition && strings.Contains(err.Error(), "not the leader")
		if !(electing || code == codes.Unavailable && served) || retries >= logsRetries {
			return err
		}
		retries++
		g = base
		select {
		case <-ctx.Done():
			return err
		case <-time.After(logsRetryEvery):
		}
	}
}

// streamLogsOnce runs one call, advancing req.Offset past what it wrote;
// got reports whether a server answered with anything.
func streamLogsOnce(ctx context.Context, g *globals, req *pb.LogsRequest, out, notes io.Writer) (got bool, err error) {
	c, err := dial(g)
	if err != nil {
		return false, err
	}
	defer c.Close()
	stream, err := pb.NewLogsServiceClient(c.conn).Stream(ctx, req)
	if err != nil {
		return false, err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = true
		if m.Dropped > 0 {
			fmt.Fprintf(notes, "[... %s dropped: the agent keeps the newest bytes of each stream (--task-log-max)]\n",
				limits.FormatBytes(m.Dropped))
		}
		if len(m.Data) == 0 {
			continue
		}
		if _, err := out.Write(m.Data); err != nil {
			return got, err
		}
		req.Offset = m.Offset + int64(len(m.Data))
	}
}
