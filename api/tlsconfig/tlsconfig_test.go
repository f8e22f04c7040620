package tlsconfig_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

func TestIdentityURIRoundTrip(t *testing.T) {
	for _, id := range []tlsconfig.Identity{tlstest.Server("s1"), tlstest.Agent("gpu-host.7"), tlstest.Client("ingest_bot")} {
		u := id.URI()
		if !strings.HasPrefix(u.String(), "banyan://"+string(id.Role)+"/") {
			t.Fatalf("URI %s", u)
		}
		got, err := tlsconfig.ParseURI(u)
		if err != nil || got != id {
			t.Fatalf("ParseURI(%s) = %v, %v; want %v", u, got, err, id)
		}
	}
}

func TestIdentityValidateRefusesBadNames(t *testing.T) {
	for _, tc := range []struct {
		id   tlsconfig.Identity
		want string
	}{
		{tlsconfig.Identity{Role: "admin", ID: "x"}, "want server, agent or client"},
		{tlsconfig.Identity{Role: tlsconfig.RoleAgent}, "1 to 128"},
		{tlsconfig.Identity{Role: tlsconfig.RoleAgent, ID: "a/b"}, "only letters"},
		{tlsconfig.Identity{Role: tlsconfig.RoleAgent, ID: strings.Repeat("a", 129)}, "1 to 128"},
	} {
		if err := tc.id.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v; want %q", tc.id, err, tc.want)
		}
	}
	if _, err := tlsconfig.ParseURI(&url.URL{Scheme: "spiffe", Host: "server", Path: "/a"}); !errors.Is(err, tlsconfig.ErrNoIdentity) {
		t.Errorf("foreign scheme: %v", err)
	}
}

func TestIdentityOfNeedsExactlyOneURI(t *testing.T) {
	one := &x509.Certificate{URIs: []*url.URL{tlstest.Agent("a").URI(), {Scheme: "https", Host: "x"}}}
	if id, err := tlsconfig.IdentityOf(one); err != nil || id != tlstest.Agent("a") {
		t.Fatalf("one identity: %v %v", id, err)
	}
	two := &x509.Certificate{URIs: []*url.URL{tlstest.Agent("a").URI(), tlstest.Server("b").URI()}}
	if _, err := tlsconfig.IdentityOf(two); !errors.Is(err, tlsconfig.ErrNoIdentity) {
		t.Fatalf("two identities: %v", err)
	}
	if _, err := tlsconfig.IdentityOf(&x509.Certificate{}); !errors.Is(err, tlsconfig.ErrNoIdentity) {
		t.Fatalf("no identity: %v", err)
	}
}

func TestIssueServerCertCarriesLoopbackAndNames(t *testing.T) {
	ca := tlstest.NewCA(t)
	pair, err := tlsconfig.Issue(ca.Pair, tlsconfig.CertRequest{Identity: tlstest.Server("s1"), DNSNames: []string{"sched-1.farm"},
		IPs: []net.IP{net.ParseIP("10.0.0.5")}, NotBefore: time.Now(), Validity: time.Hour}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "sched-1.farm", "10.0.0.5"} {
		if err := c.Leaf.VerifyHostname(host); err != nil {
			t.Errorf("server cert does not cover %s: %v", host, err)
		}
	}
	if id, _ := tlsconfig.IdentityOf(c.Leaf); id != tlstest.Server("s1") {
		t.Errorf("identity %v", id)
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca := tlstest.NewCA(t)
	now := time.Now()
	if _, err := tlsconfig.Issue(ca.Pair, tlsconfig.CertRequest{Identity: tlstest.Agent("a"), DNSNames: []string{"x"},
		NotBefore: now, Validity: time.Hour}, rand.Reader); err == nil || !strings.Contains(err.Error(), "only server") {
		t.Errorf("agent with DNS name: %v", err)
	}
	if _, err := tlsconfig.Issue(ca.Pair, tlsconfig.CertRequest{Identity: tlstest.Agent("a"), NotBefore: now}, rand.Reader); err == nil {
		t.Error("zero validity accepted")
	}
	leaf, err := tlsconfig.Issue(ca.Pair, tlsconfig.CertRequest{Identity: tlstest.Agent("a"), NotBefore: now, Validity: time.Hour}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconfig.Issue(leaf, tlsconfig.CertRequest{Identity: tlstest.Agent("b"), NotBefore: now, Validity: time.Hour},
		rand.Reader); err == nil || !strings.Contains(err.Error(), "not a certificate authority") {
		t.Errorf("leaf as CA: %v", err)
	}
}

func TestWritePairModesAndNoOverwrite(t *testing.T) {
	ca := tlstest.NewCA(t)
	files := ca.Issue(t, tlstest.Agent("a"))
	fi, err := os.Stat(files.Key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if _, _, err := tlsconfig.WritePair(ca.Dir, "ca", ca.Pair); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("overwrite: %v", err)
	}
}

func TestNewSourceRefusesBadFiles(t *testing.T) {
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	good := ca.Issue(t, tlstest.Agent("a"))
	foreign := other.Issue(t, tlstest.Agent("a"))
	for name, tc := range map[string]struct {
		opts tlsconfig.Options
		want string
	}{
		"missing key":   {tlsconfig.Options{Files: tlsconfig.Files{CA: good.CA, Cert: good.Cert}}, "missing [key]"},
		"no such file":  {tlsconfig.Options{Files: tlsconfig.Files{CA: good.CA + ".x", Cert: good.Cert, Key: good.Key}}, "no such file"},
		"other CA":      {tlsconfig.Options{Files: tlsconfig.Files{CA: good.CA, Cert: foreign.Cert, Key: foreign.Key}}, "not valid under CA"},
		"key mismatch":  {tlsconfig.Options{Files: tlsconfig.Files{CA: good.CA, Cert: good.Cert, Key: foreign.Key}}, "does not match"},
		"wrong role":    {tlsconfig.Options{Files: good, Role: tlsconfig.RoleServer}, "a server certificate is needed"},
		"CA not PEM":    {tlsconfig.Options{Files: tlsconfig.Files{CA: good.Key, Cert: good.Cert, Key: good.Key}}, "no PEM certificate"},
		"nothing given": {tlsconfig.Options{}, "no CA"},
	} {
		if _, err := tlsconfig.NewSource(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
}

// handshake runs one TLS handshake over loopback and returns each side's
// error and the client's view of the connection.
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error, cs tls.ConnectionState, ss tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		cs  tls.ConnectionState
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 client certificates are checked after the client's
			// handshake returns: read once so the client sees a refusal.
			_, _ = tc.Write([]byte{1})
		}
		done <- result{err: err, cs: tc.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, cli)
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
		cs = tc.ConnectionState()
	}
	tc.Close()
	r := <-done
	return r.err, clientErr, cs, r.cs
}

func TestMutualHandshakeAndIdentities(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Source(t, tlstest.Server("s1"))
	cli := ca.Source(t, tlstest.Agent("gpu-1"))
	serr, cerr, cs, ss := handshake(t, srv.ServerConfig(tlsconfig.ALPNGRPC, tlsconfig.ALPNRaft), cli.ClientConfig("127.0.0.1", tlsconfig.ALPNRaft))
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != tlsconfig.ALPNRaft {
		t.Errorf("version %x alpn %q", cs.Version, cs.NegotiatedProtocol)
	}
	if id, err := tlsconfig.StateIdentity(ss); err != nil || id != tlstest.Agent("gpu-1") {
		t.Errorf("server sees %v, %v", id, err)
	}
	if id, err := tlsconfig.StateIdentity(cs); err != nil || id != tlstest.Server("s1") {
		t.Errorf("client sees %v, %v", id, err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	srv := ca.Source(t, tlstest.Server("s1")).ServerConfig(tlsconfig.ALPNGRPC)
	client := ca.Source(t, tlstest.Client("alice"))
	for name, tc := range map[string]struct {
		srv, cli *tls.Config
	}{
		"client cert from another CA": {srv, other.Source(t, tlstest.Client("mallory")).ClientConfig("127.0.0.1")},
		"no client cert":              {srv, &tls.Config{RootCAs: client.ClientConfig("x").RootCAs, ServerName: "127.0.0.1"}},
		"server name not in cert":     {srv, client.ClientConfig("sched-9.elsewhere")},
		"server cert from another CA": {other.Source(t, tlstest.Server("s1")).ServerConfig(), client.ClientConfig("127.0.0.1")},
		"peer is not a server":        {ca.Source(t, tlstest.Agent("a")).ServerConfig(), client.ClientConfig("127.0.0.1")},
		"TLS 1.2 client": {srv, func() *tls.Config {
			c := client.ClientConfig("127.0.0.1")
			c.MaxVersion = tls.VersionTLS12
			return c
		}()},
	} {
		serr, cerr, _, _ := handshake(t, tc.srv, tc.cli)
		if serr == nil && cerr == nil {
			t.Errorf("%s: handshake succeeded", name)
		}
	}
}

func TestReloadServesReplacedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t)
	files := ca.Issue(t, tlstest.Server("s1"))
	src, err := tlsconfig.NewSource(tlsconfig.Options{Files: files, Role: tlsconfig.RoleServer})
	if err != nil {
		t.Fatal(err)
	}
	cli := ca.Source(t, tlstest.Client("c"))
	serial := func() string {
		_, cerr, cs, _ := handshake(t, src.ServerConfig(), cli.ClientConfig("localhost"))
		if cerr != nil {
			t.Fatalf("handshake: %v", cerr)
		}
		return cs.PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	replace := func(from tlsconfig.Files, bump time.Duration) {
		for _, p := range [][2]string{{from.Cert, files.Cert}, {from.Key, files.Key}} {
			data, err := os.ReadFile(p[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p[1], data, 0o600); err != nil {
				t.Fatal(err)
			}
			// A distinct modification time, however coarse the clock.
			mt := time.Now().Add(bump)
			if err := os.Chtimes(p[1], mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A replacement of the wrong role is refused: the old one stays.
	replace(ca.Issue(t, tlstest.Agent("x")), time.Hour)
	if got := serial(); got != first {
		t.Fatalf("an agent certificate replaced the server's")
	}
	next := ca.Issue(t, tlstest.Server("s1"))
	replace(next, 2*time.Hour)
	second := serial()
	if second == first {
		t.Fatal("replaced certificate not served")
	}
	want, err := tls.LoadX509KeyPair(next.Cert, next.Key)
	if err != nil {
		t.Fatal(err)
	}
	if second != want.Leaf.SerialNumber.String() {
		t.Fatalf("served serial %s, want %s", second, want.Leaf.SerialNumber)
	}
}

func TestPeerIdentityFromGRPCContext(t *testing.T) {
	if _, err := tlsconfig.PeerIdentity(context.Background()); !errors.Is(err, tlsconfig.ErrNoIdentity) {
		t.Fatalf("no peer: %v", err)
	}
	plain := peer.NewContext(context.Background(), &peer.Peer{})
	if _, err := tlsconfig.PeerIdentity(plain); !errors.Is(err, tlsconfig.ErrNoIdentity) {
		t.Fatalf("plaintext peer: %v", err)
	}
	ca := tlstest.NewCA(t)
	srv := ca.Source(t, tlstest.Server("s1"))
	_, _, _, ss := handshake(t, srv.ServerConfig(), ca.Source(t, tlstest.Client("bob")).ClientConfig("127.0.0.1"))
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: ss}})
	if id, err := tlsconfig.PeerIdentity(ctx); err != nil || id != tlstest.Client("bob") {
		t.Fatalf("PeerIdentity = %v, %v", id, err)
	}
}

// TestReloadConcurrentWithHandshakes replaces the files while handshakes
// read the source (run it with -race): every handshake gets a whole
// certificate, old or new, and the new one wins once the files settle.
func TestReloadConcurrentWithHandshakes(t *testing.T) {
	ca := tlstest.NewCA(t)
	files := ca.Issue(t, tlstest.Server("s1"))
	src, err := tlsconfig.NewSource(tlsconfig.Options{Files: files, Role: tlsconfig.RoleServer})
	if err != nil {
		t.Fatal(err)
	}
	cfg := src.ServerConfig()
	next := ca.Issue(t, tlstest.Server("s1"))
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
				if err != nil || len(c.Certificates) != 1 || c.Certificates[0].Leaf == nil {
					done <- errors.New("handshake config without a whole certificate")
					return
				}
			}
			done <- nil
		}()
	}
	for _, p := range [][2]string{{next.Key, files.Key}, {next.Cert, files.Cert}} {
		data, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(time.Hour)
		if err := os.Chtimes(p[1], mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	want, err := tls.LoadX509KeyPair(next.Cert, next.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Leaf().SerialNumber; got.Cmp(want.Leaf.SerialNumber) != 0 {
		t.Fatalf("serving serial %s after the files settled, want %s", got, want.Leaf.SerialNumber)
	}
}
