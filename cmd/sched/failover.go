package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// perTry bounds one unary call to one server when the CLI knows several: a
// hung server (SIGSTOP, a partition) accepts the connection and never
// answers, and the next server should be asked instead of waiting out the
// command's whole deadline. Calls to a healthy server take milliseconds.
const perTry = 5 * time.Second

// splitAddrs reads --addr / SCHED_ADDR: one address or several separated by
// commas ("a:7400,b:7400,c:7400").
func splitAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, usageError{"--addr: no server address given"}
	}
	return out, nil
}

// failover is a grpc.ClientConnInterface over one connection per server.
// A call goes to the server that answered last; when it is unavailable or
// does not answer within perTry, the next server is asked, until every
// server has been tried or the caller's deadline ends. Resending is safe:
// the CLI's writes carry idempotency keys (and servers key the rest).
type failover struct {
	addrs []string
	conns []*grpc.ClientConn

	mu   sync.Mutex
	good int // index of the server that answered last
}

var _ grpc.ClientConnInterface = (*failover)(nil)

func dialFailover(addrs []string, opts ...grpc.DialOption) (*failover, error) {
	f := &failover{addrs: addrs}
	for _, a := range addrs {
		c, err := grpc.NewClient(a, opts...)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("connect to %s: %w", a, err)
		}
		f.conns = append(f.conns, c)
	}
	return f, nil
}

// Close closes every connection.
func (f *failover) Close() error {
	var errs []error
	for _, c := range f.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// wake makes every connection that waits out a reconnect backoff (its
// server was down) try again at once. A process that dials for one call
// never waits so; the client helper, whose connections outlive a server's
// restart, wakes them before each call, so that the call finds a server
// that is back as a fresh sched-client would, not after a backoff grown
// while it was down.
func (f *failover) wake() {
	for _, c := range f.conns {
		if c.GetState() == connectivity.TransientFailure {
			c.ResetConnectBackoff()
		}
	}
}

func (f *failover) order() []int {
	f.mu.Lock()
	start := f.good
	f.mu.Unlock()
	out := make([]int, len(f.conns))
	for i := range out {
		out[i] = (start + i) % len(f.conns)
	}
	return out
}

func (f *failover) answered(i int) {
	f.mu.Lock()
	f.good = i
	f.mu.Unlock()
}

// nextServer reports whether a failed try should move on to the next
// server: the server is gone or did not answer in time, not a refusal of
// the call itself.
func nextServer(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false // the caller's own deadline or cancel
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Invoke makes a unary call with failover.
func (f *failover) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if len(f.conns) == 1 {
		return f.conns[0].Invoke(ctx, method, args, reply, opts...)
	}
	var errs []string
	for _, i := range f.order() {
		tctx, cancel := context.WithTimeout(ctx, perTry)
		err := f.conns[i].Invoke(tctx, method, args, reply, opts...)
		cancel()
		if err == nil {
			f.answered(i)
			return nil
		}
		if !nextServer(ctx, err) {
			return err
		}
		errs = append(errs, f.addrs[i]+": "+status.Convert(err).Message())
	}
	return status.Errorf(codes.Unavailable, "no server answered: %s", strings.Join(errs, "; "))
}

// NewStream opens a stream on the first server that accepts it. (A stream
// that breaks later is the caller's to reopen.)
func (f *failover) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var last error
	for _, i := range f.order() {
		s, err := f.conns[i].NewStream(ctx, desc, method, opts...)
		if err == nil {
			f.answered(i)
			return s, nil
		}
		if !nextServer(ctx, err) {
			return nil, err
		}
		last = err
	}
	return nil, last
}
