// Package tlstest makes throwaway certificate authorities and certificates
// in a test's temporary directory, for tests of TLS-speaking code.
package tlstest

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
)

// CA is a certificate authority written to a test's temp dir.
type CA struct {
	Dir      string
	CertPath string
	Pair     tlsconfig.KeyPair
}

// NewCA makes a CA valid for a day in a new temp dir of t.
func NewCA(t testing.TB) *CA {
	t.Helper()
	pair, err := tlsconfig.GenerateCA("test CA", time.Now(), 24*time.Hour, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, _, err := tlsconfig.WritePair(dir, "ca", pair)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Dir: dir, CertPath: certPath, Pair: pair}
}

// Issue writes a certificate for id (valid for a day; server certificates
// carry localhost and 127.0.0.1) and returns the files to load it with.
func (ca *CA) Issue(t testing.TB, id tlsconfig.Identity) tlsconfig.Files {
	t.Helper()
	pair, err := tlsconfig.Issue(ca.Pair, tlsconfig.CertRequest{Identity: id, NotBefore: time.Now(),
		Validity: 24 * time.Hour}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath, err := tlsconfig.WritePair(dir, string(id.Role)+"-"+id.ID, pair)
	if err != nil {
		t.Fatal(err)
	}
	return tlsconfig.Files{CA: ca.CertPath, Cert: certPath, Key: keyPath}
}

// Source loads the files of a new certificate for id.
func (ca *CA) Source(t testing.TB, id tlsconfig.Identity) *tlsconfig.Source {
	t.Helper()
	src, err := tlsconfig.NewSource(tlsconfig.Options{Files: ca.Issue(t, id)})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// Server is the identity of server id.
func Server(id string) tlsconfig.Identity {
	return tlsconfig.Identity{Role: tlsconfig.RoleServer, ID: id}
}

// Agent is the identity of agent id.
func Agent(id string) tlsconfig.Identity {
	return tlsconfig.Identity{Role: tlsconfig.RoleAgent, ID: id}
}

// Client is the identity of client name.
func Client(name string) tlsconfig.Identity {
	return tlsconfig.Identity{Role: tlsconfig.RoleClient, ID: name}
}
