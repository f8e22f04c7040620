package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// retryConfig retries calls that fail while a leader is being elected. Every
// write the CLI sends is safe to retry: submissions carry idempotency keys.
const retryConfig = `{"methodConfig":[{"name":[{"service":"banyan.v1.JobService"},{"service":"banyan.v1.PoolService"},
{"service":"banyan.v1.AgentService","method":"ListAgents"},{"service":"banyan.v1.ClusterService"}],
"retryPolicy":{"maxAttempts":5,"initialBackoff":"0.2s","maxBackoff":"2s","backoffMultiplier":2,
"retryableStatusCodes":["UNAVAILABLE"]}}]}`

// client holds the connection of one client command.
type client struct {
	conn    *failover
	jobs    pb.JobServiceClient
	pools   pb.PoolServiceClient
	agents  pb.AgentServiceClient
	cluster pb.ClusterServiceClient
	acl     pb.ACLServiceClient
}

func dial(g *globals) (*client, error) {
	src, err := tlsSource(g.tls, "")
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if src != nil {
		creds = src.Credentials()
	}
	addrs, err := splitAddrs(g.addr)
	if err != nil {
		return nil, err
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(retryConfig), grpc.WithChainUnaryInterceptor(plaintextHint(g.tls)),
		grpc.WithPerRPCCredentials(pb.TokenCredentials(g.token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limits.MaxMessageSize), grpc.MaxCallSendMsgSize(limits.MaxMessageSize)),
		wirecodec.DialOption()},
		traceDialOptions()...)
	opts = append(opts, timingDialOptions(phases)...)
	conn, err := dialFailover(addrs, opts...)
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, jobs: pb.NewJobServiceClient(conn), pools: pb.NewPoolServiceClient(conn),
		agents: pb.NewAgentServiceClient(conn), cluster: pb.NewClusterServiceClient(conn), acl: pb.NewACLServiceClient(conn)}, nil
}

func (c *client) Close() error { return c.conn.Close() }

// connect dials the scheduler for one client command and bounds its calls
// with a deadline; done closes both.
func connect(cmd *cobra.Command, g *globals) (*client, context.Context, func(), error) {
	if g.call != nil { // run by the client helper: its connection stays open
		c, release, err := g.call.conns.get(g)
		if err != nil {
			return nil, nil, nil, err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		return c, ctx, func() { cancel(); release() }, nil
	}
	c, err := dial(g)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

// printJSON writes a message (or a list under key) as indented JSON.
func printJSON(w io.Writer, m proto.Message) error {
	v := jsonValue(m.ProtoReflect())
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable() *tabwriter.Writer { return newTableTo(os.Stdout) }

func newTableTo(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// fmtTime renders a time in tables: the date and the time to the
// millisecond, in local time.
func fmtTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format("2006-01-02 15:04:05.000")
}

func fmtDur(fromMs, toMs int64) string {
	if fromMs == 0 || toMs == 0 {
		return "-"
	}
	return (time.Duration(toMs-fromMs) * time.Millisecond).String()
}

// runCall is the body of a client command that makes one call: it
// connects, calls, and prints the reply as JSON with -o json, else with show.
func runCall[M proto.Message](cmd *cobra.Command, g *globals, what string,
	call func(ctx context.Context, c *client) (M, error), show func(M) error) error {
	c, ctx, done, err := connect(cmd, g)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, c)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if g.output == "json" {
		return printJSON(os.Stdout, resp)
	}
	return show(resp)
}
