package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"google.golang.org/grpc/credentials"
)

// benchTLS is a throwaway CA for a -tls run: the servers, the benchmark's
// clients and every simulated agent get certificates of their own, as in a
// deployment with mutual TLS on, so that the figures carry its cost
// (handshakes, encryption, identity checks on every call and session).
type benchTLS struct {
	dir string
	ca  tlsconfig.KeyPair

	mu      sync.Mutex
	sources map[string]*tlsconfig.Source // by role/id
}

// tlsKit is set for a -tls run; nil runs plaintext on loopback.
var tlsKit *benchTLS

func newBenchTLS() (*benchTLS, error) {
	dir, err := os.MkdirTemp("", "banyan-bench-tls-")
	if err != nil {
		return nil, err
	}
	ca, err := tlsconfig.GenerateCA("banyan-bench CA", time.Now(), 24*time.Hour, rand.Reader)
	if err != nil {
		return nil, err
	}
	if _, _, err := tlsconfig.WritePair(dir, "ca", ca); err != nil {
		return nil, err
	}
	return &benchTLS{dir: dir, ca: ca, sources: map[string]*tlsconfig.Source{}}, nil
}

// close removes the certificates.
func (b *benchTLS) close() { os.RemoveAll(b.dir) }

// source returns (issuing it at first use) the certificate of id.
func (b *benchTLS) source(id tlsconfig.Identity) (*tlsconfig.Source, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.sources[id.String()]; ok {
		return s, nil
	}
	pair, err := tlsconfig.Issue(b.ca, tlsconfig.CertRequest{Identity: id, NotBefore: time.Now().Add(-time.Minute),
		Validity: 24 * time.Hour}, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", id, err)
	}
	cert, key, err := tlsconfig.WritePair(b.dir, string(id.Role)+"-"+id.ID, pair)
	if err != nil {
		return nil, err
	}
	s, err := tlsconfig.NewSource(tlsconfig.Options{Files: tlsconfig.Files{CA: filepath.Join(b.dir, "ca.pem"),
		Cert: cert, Key: key}, Role: id.Role, Logger: quiet()})
	if err != nil {
		return nil, err
	}
	b.sources[id.String()] = s
	return s, nil
}

// serverSource is a server certificate for node id, or nil without -tls.
func serverSource(id string) *tlsconfig.Source {
	if tlsKit == nil {
		return nil
	}
	s, err := tlsKit.source(tlsconfig.Identity{Role: tlsconfig.RoleServer, ID: id})
	if err != nil {
		panic(err) // a benchmark setup failure: safeRun reports it
	}
	return s
}

// clientCreds are the benchmark client's transport credentials under -tls.
func clientCreds() (credentials.TransportCredentials, error) {
	s, err := tlsKit.source(tlsconfig.Identity{Role: tlsconfig.RoleClient, ID: "bench"})
	if err != nil {
		return nil, err
	}
	return s.Credentials(), nil
}

// agentCreds gives each simulated agent its own certificate under -tls, and
// is nil without it.
func agentCreds() func(agentID string) (credentials.TransportCredentials, error) {
	if tlsKit == nil {
		return nil
	}
	return func(agentID string) (credentials.TransportCredentials, error) {
		s, err := tlsKit.source(tlsconfig.Identity{Role: tlsconfig.RoleAgent, ID: agentID})
		if err != nil {
			return nil, err
		}
		return s.Credentials(), nil
	}
}
