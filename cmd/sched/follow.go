package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Following a job. `sched job watch`, `sched job submit --watch` and
// `sched encode` all follow their jobs with followJob, so they survive the
// same things: a server killed and started again, a leader change (every
// server serves WatchJob from its own copy of the state), and, for a
// while, no server at all.

// watchLostAfter is how long a watch tries to reach a server again before
// it gives up with exit code 3 (default of --give-up-after).
const watchLostAfter = time.Minute

// followRetry is the pause between two attempts to reach a server.
const followRetry = 500 * time.Millisecond

// watchLostError means the watch lost track of the job (exit code 3).
type watchLostError struct{ msg string }

func (e watchLostError) Error() string { return e.msg }

// errStreamCut is why an attempt ended when the stream closed before the
// job did (a server shutting down cleanly): follow it again.
var errStreamCut = status.Error(codes.Unavailable, "the stream ended before the job did")

// followJob follows job id until it ends and returns its final view, with
// its tasks when withTasks is set. update gets every version of the job the
// server streams (without tasks), in order; an error from update ends the
// follow with that error. When the stream breaks before the job ends, it
// dials again (any server in g.addr) every half second; it gives up with a
// watchLostError when no server answered for giveUp. Errors that retrying
// cannot cure (no such job, access refused) and the end of ctx end it at
// once.
func followJob(ctx context.Context, g *globals, id string, giveUp time.Duration, withTasks bool,
	update func(*pb.Job) error) (*pb.Job, error) {
	var last *pb.Job
	var failingSince time.Time
	for {
		final, err := followOnce(ctx, g, id, withTasks, func(j *pb.Job) error {
			failingSince = time.Time{}
			last = j
			return update(j)
		})
		if err == nil {
			return final, nil
		}
		var out outputError
		switch code := status.Code(err); {
		case errors.As(err, &out):
			return nil, out.err
		case code == codes.NotFound || code == codes.PermissionDenied || code == codes.Unauthenticated ||
			code == codes.InvalidArgument:
			return nil, fmt.Errorf("watch job %s: %w", id, err)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		if last != nil && isJobFinal(last.State) && !withTasks {
			return last, nil // the stream broke after the last word
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if time.Since(failingSince) > giveUp {
			return nil, watchLostError{fmt.Sprintf("watch job %s: lost track of it: no server answered for %s: %v",
				id, giveUp, err)}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(followRetry):
		}
	}
}

// outputError is an error of followJob's update: it ends the follow as it
// is, without a retry.
type outputError struct{ err error }

func (e outputError) Error() string { return e.err.Error() }

// followOnce dials the cluster and streams the job's updates to update
// until the stream ends. It returns the final job (fetched again with its
// tasks when withTasks), or why it could not.
func followOnce(ctx context.Context, g *globals, id string, withTasks bool, update func(*pb.Job) error) (*pb.Job, error) {
	c, err := dial(g)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stream, err := c.jobs.WatchJob(ctx, &pb.WatchJobRequest{Id: id})
	if err != nil {
		return nil, err
	}
	var last *pb.Job
	for {
		j, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := update(j); err != nil {
			return nil, outputError{err}
		}
		last = j
	}
	if last == nil || !isJobFinal(last.State) {
		return nil, errStreamCut
	}
	if !withTasks {
		return last, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	full, err := getJobWithTasks(cctx, c.jobs, id)
	if err != nil {
		return nil, fmt.Errorf("get the tasks of job %s: %w", id, err)
	}
	return full, nil
}
