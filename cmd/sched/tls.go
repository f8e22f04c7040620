package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tlsSource loads the TLS files given by --tls-ca/--tls-cert/--tls-key (or
// SCHED_TLS_*), requiring role when it is set; nil when none is given.
func tlsSource(files tlsconfig.Files, role tlsconfig.Role) (*tlsconfig.Source, error) {
	if files.IsZero() {
		return nil, nil
	}
	if err := files.Check(); err != nil {
		return nil, usageError{"--tls-ca, --tls-cert, --tls-key: " + err.Error()}
	}
	src, err := tlsconfig.NewSource(tlsconfig.Options{Files: files, Role: role})
	if err != nil {
		return nil, fmt.Errorf("load TLS files: %w", err)
	}
	return src, nil
}

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create a certificate authority and certificates for mutual TLS",
		Long: `Create the PEM files a TLS cluster needs, as Nomad's and Consul's "tls" commands do:

  sched tls ca create                       # ca.pem, ca-key.pem
  sched tls cert create --server s1 --dns sched-1.farm --ip 10.0.0.5
  sched tls cert create --agent gpu-host-7  # its id must be the agent's --id
  sched tls cert create --client alice

Each certificate names its role and id in a URI SAN (banyan://server/s1,
banyan://agent/ID, banyan://client/NAME). Server certificates always carry
localhost and 127.0.0.1, plus the --dns and --ip names clients dial. Keys are
written with mode 0600; existing files are never overwritten.`,
	}
	ca := &cobra.Command{Use: "ca", Short: "Certificate authority commands"}
	ca.AddCommand(newTLSCACreateCmd())
	cert := &cobra.Command{Use: "cert", Short: "Certificate commands"}
	cert.AddCommand(newTLSCertCreateCmd())
	cmd.AddCommand(ca, cert)
	return cmd
}

func newTLSCACreateCmd() *cobra.Command {
	var dir, name string
	var days int
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a certificate authority: DIR/ca.pem and DIR/ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if days <= 0 {
				return usageError{"--days must be positive"}
			}
			pair, err := tlsconfig.GenerateCA(name, time.Now(), time.Duration(days)*24*time.Hour, rand.Reader)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			certPath, keyPath, err := tlsconfig.WritePair(dir, "ca", pair)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\nwrote %s (keep it secret: it signs every certificate)\n", certPath, keyPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write the files to")
	cmd.Flags().StringVar(&name, "name", "Banyan CA", "the CA's common name")
	cmd.Flags().IntVar(&days, "days", 1825, "days the CA stays valid")
	return cmd
}

// certFlags are the flags of `sched tls cert create`.
type certFlags struct {
	server, agent, client string
	caCert, caKey, dir    string
	dns, ips              []string
	days                  int
}

// request turns the flags into a certificate request (pure: now is given).
func (f certFlags) request(now time.Time) (tlsconfig.CertRequest, error) {
	var ids []tlsconfig.Identity
	for _, c := range []struct {
		role tlsconfig.Role
		v    string
	}{{tlsconfig.RoleServer, f.server}, {tlsconfig.RoleAgent, f.agent}, {tlsconfig.RoleClient, f.client}} {
		if c.v != "" {
			ids = append(ids, tlsconfig.Identity{Role: c.role, ID: c.v})
		}
	}
	if len(ids) != 1 {
		return tlsconfig.CertRequest{}, usageError{"give exactly one of --server ID, --agent ID or --client NAME"}
	}
	if err := ids[0].Validate(); err != nil {
		return tlsconfig.CertRequest{}, usageError{err.Error()}
	}
	if f.days <= 0 {
		return tlsconfig.CertRequest{}, usageError{"--days must be positive"}
	}
	req := tlsconfig.CertRequest{Identity: ids[0], DNSNames: f.dns, NotBefore: now,
		Validity: time.Duration(f.days) * 24 * time.Hour}
	for _, s := range f.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return tlsconfig.CertRequest{}, usageError{fmt.Sprintf("--ip %q: not an IP address", s)}
		}
		req.IPs = append(req.IPs, ip)
	}
	if ids[0].Role != tlsconfig.RoleServer && (len(f.dns) > 0 || len(f.ips) > 0) {
		return tlsconfig.CertRequest{}, usageError{"--dns and --ip are for server certificates only"}
	}
	return req, nil
}

func newTLSCertCreateCmd() *cobra.Command {
	f := certFlags{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a certificate signed by the CA: DIR/ROLE-ID.pem and DIR/ROLE-ID-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(time.Now())
			if err != nil {
				return err
			}
			if f.caCert == "" {
				f.caCert = filepath.Join(f.dir, "ca.pem")
			}
			if f.caKey == "" {
				f.caKey = filepath.Join(f.dir, "ca-key.pem")
			}
			ca, err := tlsconfig.ReadPair(f.caCert, f.caKey)
			if err != nil {
				return fmt.Errorf("CA (--ca-cert, --ca-key; see `sched tls ca create`): %w", err)
			}
			pair, err := tlsconfig.Issue(ca, req, rand.Reader)
			if err != nil {
				return err
			}
			name := string(req.Identity.Role) + "-" + req.Identity.ID
			certPath, keyPath, err := tlsconfig.WritePair(f.dir, name, pair)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\nwrote %s\n", certPath, req.Identity.URI(), keyPath)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", "", "a server certificate for this node id")
	fl.StringVar(&f.agent, "agent", "", "an agent certificate for this agent id")
	fl.StringVar(&f.client, "client", "", "a client certificate for this name")
	fl.StringVar(&f.dir, "dir", ".", "directory to write to (and to find ca.pem and ca-key.pem in)")
	fl.StringVar(&f.caCert, "ca-cert", "", "CA certificate (default: DIR/ca.pem)")
	fl.StringVar(&f.caKey, "ca-key", "", "CA key (default: DIR/ca-key.pem)")
	fl.StringSliceVar(&f.dns, "dns", nil, "extra DNS name of a server (repeatable; localhost is always included)")
	fl.StringSliceVar(&f.ips, "ip", nil, "extra IP address of a server (repeatable; 127.0.0.1 is always included)")
	fl.IntVar(&f.days, "days", 365, "days the certificate stays valid (at most as long as the CA)")
	return cmd
}

// plaintextHint explains a connection a TLS server dropped: a client
// without certificates sees only "error reading server preface: EOF".
func plaintextHint(files tlsconfig.Files) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker,
		opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		return withPlaintextHint(err, files)
	}
}

func withPlaintextHint(err error, files tlsconfig.Files) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable || !files.IsZero() || !strings.Contains(st.Message(), "server preface") {
		return err
	}
	return status.Error(codes.Unavailable, st.Message()+
		" (the server may require TLS: give --tls-ca, --tls-cert and --tls-key, or SCHED_TLS_CA, SCHED_TLS_CERT and SCHED_TLS_KEY)")
}
