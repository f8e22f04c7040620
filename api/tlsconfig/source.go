package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// ALPN protocol names on Banyan's shared port: gRPC is HTTP/2, raft has
// its own name so the server can tell the two apart after the handshake.
const (
	ALPNGRPC = "h2"
	ALPNRaft = "banyan-raft"
)

// Files names the PEM files of one TLS identity.
type Files struct {
	// CA is the certificate authority that signs every Banyan certificate.
	CA string
	// Cert and Key are this process's certificate and private key.
	Cert string
	Key  string
}

// IsZero reports whether no file is named (TLS off).
func (f Files) IsZero() bool { return f == Files{} }

// Check reports an error unless all three files are named or none is.
func (f Files) Check() error {
	if f.IsZero() || (f.CA != "" && f.Cert != "" && f.Key != "") {
		return nil
	}
	var missing []string
	for _, m := range []struct{ name, v string }{{"CA", f.CA}, {"certificate", f.Cert}, {"key", f.Key}} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	return fmt.Errorf("TLS needs a CA, a certificate and a key: missing %v", missing)
}

// Options configure a Source.
type Options struct {
	// Files are the CA, certificate and key to load.
	Files Files
	// Role, when set, is the role the certificate must name (also after a
	// reload: a replacement certificate of another role is refused).
	Role Role
	// Logger receives reload messages (default slog.Default()).
	Logger *slog.Logger
}

// stamp identifies one version of a file.
type stamp struct {
	size int64
	mod  time.Time
}

// material is one loaded version of the files.
type material struct {
	cert *tls.Certificate
	pool *x509.CertPool
	id   Identity
}

// Source holds the TLS material of one process, loaded from files and
// re-read at the next handshake after any file changes. It is safe for
// concurrent use.
type Source struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	stamps [3]stamp
	failed [3]stamp // the stamps of the last version that failed to load
	cur    material
}

// NewSource loads the files of opts. Every problem (a missing file, a key
// that does not match, a certificate the CA did not sign, no identity, the
// wrong role) is an error naming it.
func NewSource(opts Options) (*Source, error) {
	if opts.Files.IsZero() {
		return nil, errors.New("TLS: no CA, certificate or key file given")
	}
	if err := opts.Files.Check(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Source{opts: opts, log: opts.Logger}
	stamps, err := s.stat()
	if err != nil {
		return nil, err
	}
	m, err := load(opts.Files, opts.Role)
	if err != nil {
		return nil, err
	}
	s.stamps, s.cur = stamps, m
	return s, nil
}

// Identity is the identity this source's certificate names now.
func (s *Source) Identity() Identity { return s.current().id }

// Leaf is the certificate this source presents now.
func (s *Source) Leaf() *x509.Certificate { return s.current().cert.Leaf }

func (s *Source) stat() ([3]stamp, error) {
	var out [3]stamp
	for i, p := range []string{s.opts.Files.CA, s.opts.Files.Cert, s.opts.Files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("TLS file: %w", err)
		}
		out[i] = stamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// current returns the material to use now, re-reading the files first when
// any of them changed. A version that does not load is logged once and the
// previous one kept, so a half-finished rotation never breaks handshakes.
// Files are read outside the lock; two handshakes may load the same new
// version at once, which is harmless.
func (s *Source) current() material {
	stamps, err := s.stat()
	s.mu.Lock()
	cur, unchanged := s.cur, err != nil || stamps == s.stamps || stamps == s.failed
	s.mu.Unlock()
	if unchanged {
		return cur
	}
	m, err := load(s.opts.Files, s.opts.Role)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.failed != stamps {
			s.failed = stamps
			s.log.Warn("TLS files changed but do not load; keeping the previous certificate", "err", err)
		}
		return s.cur
	}
	if s.stamps != stamps {
		s.stamps, s.cur = stamps, m
		s.log.Info("TLS certificate reloaded", "identity", m.id.String(), "not_after", m.cert.Leaf.NotAfter)
	}
	return s.cur
}

// load reads and checks one version of the files.
func load(f Files, role Role) (material, error) {
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return material{}, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return material{}, fmt.Errorf("TLS CA %s: no PEM certificate in it", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return material{}, fmt.Errorf("TLS certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return material{}, fmt.Errorf("TLS certificate %s is not valid under CA %s: %w", f.Cert, f.CA, err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return material{}, fmt.Errorf("TLS certificate %s: %w", f.Cert, err)
	}
	if role != "" && id.Role != role {
		return material{}, fmt.Errorf("TLS certificate %s names %s: a %s certificate is needed here", f.Cert, id, role)
	}
	return material{cert: &cert, pool: pool, id: id}, nil
}

// ServerConfig is the listener side: TLS 1.3 at least, a client certificate
// required and verified against the CA, the files re-read when they
// change, and nextProtos offered for ALPN (in order of preference).
func (s *Source) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*m.cert},
				ClientCAs:    m.pool,
				ClientAuth:   tls.RequireAndVerifyClientCert,
				NextProtos:   nextProtos,
			}, nil
		},
	}
}

// ClientConfig is the dialler side for one connection to serverName (a DNS
// name or IP the server certificate must carry): TLS 1.3 at least, this
// source's certificate presented, the server verified against the CA and
// required to hold a server certificate.
func (s *Source) ClientConfig(serverName string, nextProtos ...string) *tls.Config {
	m := s.current()
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		ServerName:       serverName,
		RootCAs:          m.pool,
		Certificates:     []tls.Certificate{*m.cert},
		NextProtos:       nextProtos,
		VerifyConnection: verifyServerRole,
	}
}

// verifyServerRole refuses a peer (already verified against the CA and the
// server name) whose certificate does not name a server.
func verifyServerRole(cs tls.ConnectionState) error {
	id, err := StateIdentity(cs)
	if err != nil {
		return err
	}
	if id.Role != RoleServer {
		return fmt.Errorf("peer certificate names %s, not a server", id)
	}
	return nil
}

// Credentials are gRPC client credentials that dial with ClientConfig,
// offering "h2", with the files re-read when they change.
func (s *Source) Credentials() credentials.TransportCredentials { return &clientCreds{src: s} }

type clientCreds struct{ src *Source }

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	conn := tls.Client(raw, c.src.ClientConfig(host, ALPNGRPC))
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("TLS handshake with %s: %w", authority, err)
	}
	return conn, tlsInfo(conn), nil
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsconfig: client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (c *clientCreds) Clone() credentials.TransportCredentials { return &clientCreds{src: c.src} }

// OverrideServerName is unused by gRPC (deprecated there); it does nothing.
func (c *clientCreds) OverrideServerName(string) error { return nil }

func tlsInfo(c *tls.Conn) credentials.TLSInfo {
	return credentials.TLSInfo{State: c.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
}

// AcceptedCredentials are gRPC server credentials for connections whose TLS
// handshake a listener already completed (Banyan's shared port handshakes
// before it knows whether a connection is raft or gRPC). A connection that
// is not a completed *tls.Conn is refused.
func AcceptedCredentials() credentials.TransportCredentials { return acceptedCreds{} }

type acceptedCreds struct{}

func (acceptedCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsconfig: accepted-connection credentials cannot dial")
}

func (acceptedCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := c.(*tls.Conn)
	if !ok || !tc.ConnectionState().HandshakeComplete {
		return nil, nil, errors.New("tlsconfig: connection did not complete a TLS handshake")
	}
	return tc, tlsInfo(tc), nil
}

func (acceptedCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (acceptedCreds) Clone() credentials.TransportCredentials { return acceptedCreds{} }

// OverrideServerName is unused by gRPC (deprecated there); it does nothing.
func (acceptedCreds) OverrideServerName(string) error { return nil }
