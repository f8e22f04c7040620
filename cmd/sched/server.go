package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// serverFile is the server's config file; flags given on the command line
// override it.
type serverFile struct {
	NodeID    string   `json:"node_id,omitempty"`
	DataDir   string   `json:"data_dir,omitempty"`
	Bind      string   `json:"bind,omitempty"`
	Advertise string   `json:"advertise,omitempty"`
	Bootstrap bool     `json:"bootstrap,omitempty"`
	Peers     []string `json:"peers,omitempty"`
	Join      []string `json:"join,omitempty"`
	Lease     string   `json:"lease,omitempty"`
	// MaxMessageSize is the largest gRPC message, e.g. "16MiB".
	MaxMessageSize string `json:"max_message_size,omitempty"`
}

func newServerCmd(g *globals) *cobra.Command {
	f := serverFile{}
	var configPath string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a scheduler server",
		Long: `Run a scheduler server. A lone server bootstraps itself (--bootstrap, the
default when neither --peers nor --join is given). Three servers form a
cluster either statically (--peers a=HOST:PORT,b=HOST:PORT,c=HOST:PORT on
each, same list everywhere) or by joining (--join ADDR of any member).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := serverConfig(cmd, configPath, f)
			if err != nil {
				return err
			}
			s, err := server.New(cfg)
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			slog.Info("shutting down")
			return s.Close()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "YAML config file (node_id, data_dir, bind, advertise, bootstrap, peers, join, lease, max_message_size)")
	fl.StringVar(&f.NodeID, "node-id", "", "this server's id (default: hostname)")
	fl.StringVar(&f.DataDir, "data-dir", "", "data directory (required)")
	fl.StringVar(&f.Bind, "bind", DefaultAddr, "address to serve gRPC and raft on")
	fl.StringVar(&f.Advertise, "advertise", "", "address peers and clients reach this server at (default: --bind)")
	fl.BoolVar(&f.Bootstrap, "bootstrap", false, "bootstrap a one-server cluster if the data dir is empty")
	fl.StringSliceVar(&f.Peers, "peers", nil, "bootstrap a cluster of these servers: id=host:port,... (same on every server)")
	fl.StringSliceVar(&f.Join, "join", nil, "join the cluster through this server address (repeatable)")
	fl.StringVar(&f.Lease, "lease", "10s", "agent lease: silence after which an agent's tasks are requeued")
	fl.StringVar(&f.MaxMessageSize, "max-message-size", "16MiB", "largest gRPC message, the same on servers and agents")
	cmd.AddCommand(newMembersCmd(g))
	return cmd
}

func serverConfig(cmd *cobra.Command, path string, flags serverFile) (server.Config, error) {
	f := serverFile{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return server.Config{}, fmt.Errorf("read config: %w", err)
		}
		if err := yaml.UnmarshalStrict(data, &f); err != nil {
			return server.Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	fl := cmd.Flags()
	set := func(name string, dst *string, v string) {
		if fl.Changed(name) || *dst == "" {
			*dst = v
		}
	}
	set("node-id", &f.NodeID, flags.NodeID)
	set("data-dir", &f.DataDir, flags.DataDir)
	set("bind", &f.Bind, flags.Bind)
	set("advertise", &f.Advertise, flags.Advertise)
	set("lease", &f.Lease, flags.Lease)
	set("max-message-size", &f.MaxMessageSize, flags.MaxMessageSize)
	if fl.Changed("bootstrap") {
		f.Bootstrap = flags.Bootstrap
	}
	if fl.Changed("peers") {
		f.Peers = flags.Peers
	}
	if fl.Changed("join") {
		f.Join = flags.Join
	}
	if f.DataDir == "" {
		return server.Config{}, usageError{"--data-dir is required"}
	}
	lease, err := time.ParseDuration(f.Lease)
	if err != nil || lease <= 0 {
		return server.Config{}, usageError{fmt.Sprintf("--lease %q: want a positive duration such as 10s", f.Lease)}
	}
	maxMsg, err := messageSize(f.MaxMessageSize)
	if err != nil {
		return server.Config{}, err
	}
	cfg := server.Config{NodeID: f.NodeID, DataDir: f.DataDir, BindAddr: f.Bind, AdvertiseAddr: f.Advertise,
		Bootstrap: f.Bootstrap, Join: f.Join, Lease: lease, Logger: slog.Default(), MaxMessageSize: maxMsg}
	for _, p := range f.Peers {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return server.Config{}, usageError{fmt.Sprintf("--peers entry %q: want id=host:port", p)}
		}
		cfg.Peers = append(cfg.Peers, server.Peer{ID: id, Addr: addr})
	}
	if len(cfg.Peers) == 0 && len(cfg.Join) == 0 {
		cfg.Bootstrap = true
	}
	return cfg, nil
}

// messageSize parses --max-message-size and checks its range.
func messageSize(v string) (int, error) {
	n, err := limits.ParseSize(v)
	if err == nil {
		err = limits.Budget{MessageSize: n}.Check()
	}
	if err != nil {
		return 0, usageError{"--max-message-size: " + err.Error()}
	}
	return n, nil
}

func newMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the scheduler servers and which one leads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "members", func(ctx context.Context, c *client) (*pb.MembersResponse, error) {
				return c.cluster.Members(ctx, &pb.MembersRequest{})
			}, func(resp *pb.MembersResponse) error {
				w := newTable()
				fmt.Fprintln(w, "ID\tADDRESS\tSUFFRAGE\tLEADER")
				for _, m := range resp.Members {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", m.Id, m.Address, m.Suffrage, m.Leader)
				}
				return w.Flush()
			})
		},
	}
}
