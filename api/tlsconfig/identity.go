// Package tlsconfig builds Banyan's mutual-TLS configurations and reads the
// identities its certificates carry.
//
// Every Banyan certificate names exactly one identity in a URI subject
// alternative name of the form banyan://ROLE/ID, where ROLE is server, agent
// or client and ID is the server's node id, the agent's id or the client's
// name. Server certificates also carry DNS names and IP addresses (always
// localhost and 127.0.0.1), which clients verify against the address they
// dial; agent and client certificates carry only their identity.
//
// Use it in three steps: load the CA, certificate and key files once with
// NewSource (a bad or missing file is an error naming it); hand
// Source.ServerConfig to a listener, or Source.Credentials / ClientConfig to
// a dialler; read who is on the other end with PeerIdentity (gRPC) or
// ConnIdentity (a *tls.Conn). A Source re-reads its files at the next
// handshake after any of them changes (size or modification time), so
// certificates are rotated by replacing the files: no restart, no signal.
// Connections already open keep the certificate they were made with.
//
// Issue and GenerateCA make the certificates; they are pure functions of
// their inputs (time and randomness passed in), used by `sched tls`.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is what a certificate's holder may be in a Banyan cluster.
type Role string

// The roles a certificate can name.
const (
	// RoleServer is a scheduler server: it may speak raft, join and remove
	// servers, and forward any call.
	RoleServer Role = "server"
	// RoleAgent is an agent: it may open the agent session for its own id.
	RoleAgent Role = "agent"
	// RoleClient is a CLI user or program calling the client API.
	RoleClient Role = "client"
)

// URIScheme is the scheme of the identity URI in every Banyan certificate.
const URIScheme = "banyan"

// ErrNoIdentity means a connection or certificate carries no valid Banyan
// identity (no TLS, no certificate, or no banyan:// URI).
var ErrNoIdentity = errors.New("no banyan identity")

// Identity is who holds a certificate: a role and an id within that role.
type Identity struct {
	Role Role
	ID   string
}

// String renders the identity as ROLE/ID.
func (i Identity) String() string { return string(i.Role) + "/" + i.ID }

// URI is the identity as the SAN URI banyan://ROLE/ID.
func (i Identity) URI() *url.URL {
	return &url.URL{Scheme: URIScheme, Host: string(i.Role), Path: "/" + i.ID}
}

// Validate checks the role is known and the id is a plain name: non-empty,
// at most 128 characters, letters, digits, '.', '_' and '-' only.
func (i Identity) Validate() error {
	switch i.Role {
	case RoleServer, RoleAgent, RoleClient:
	default:
		return fmt.Errorf("identity role %q: want server, agent or client", i.Role)
	}
	if i.ID == "" || len(i.ID) > 128 {
		return fmt.Errorf("identity %s: id must be 1 to 128 characters", i)
	}
	for _, r := range i.ID {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)
		if !ok {
			return fmt.Errorf("identity %s: id may hold only letters, digits, '.', '_' and '-' (got %q)", i, r)
		}
	}
	return nil
}

// ParseURI reads an identity from a banyan://ROLE/ID URI.
func ParseURI(u *url.URL) (Identity, error) {
	if u == nil || u.Scheme != URIScheme {
		return Identity{}, fmt.Errorf("%w: not a %s:// URI", ErrNoIdentity, URIScheme)
	}
	id := Identity{Role: Role(u.Host), ID: strings.TrimPrefix(u.Path, "/")}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Identity{}, fmt.Errorf("identity URI %s: unexpected user, query or fragment", u)
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("identity URI %s: %w", u, err)
	}
	return id, nil
}

// IdentityOf reads the identity of a certificate: its one banyan:// URI SAN.
// A certificate with none, or with more than one, has no identity.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrNoIdentity)
	}
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		id, err := ParseURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("%w: certificate %q has no %s:// URI", ErrNoIdentity, cert.Subject.CommonName, URIScheme)
	case 1:
		return found[0], nil
	}
	return Identity{}, fmt.Errorf("%w: certificate %q names %d identities", ErrNoIdentity, cert.Subject.CommonName, len(found))
}

// StateIdentity reads the verified peer identity of a TLS connection state
// (also inside tls.Config.VerifyConnection, before the handshake ends).
func StateIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("%w: peer certificate not verified", ErrNoIdentity)
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}

// ConnIdentity reads the verified peer identity of a TLS connection whose
// handshake has completed.
func ConnIdentity(c *tls.Conn) (Identity, error) {
	if c == nil {
		return Identity{}, fmt.Errorf("%w: no connection", ErrNoIdentity)
	}
	return StateIdentity(c.ConnectionState())
}

// PeerIdentity reads the verified identity of the caller of a gRPC call.
// Without TLS it returns an error wrapping ErrNoIdentity.
func PeerIdentity(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, fmt.Errorf("%w: no peer in context", ErrNoIdentity)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, fmt.Errorf("%w: connection is not TLS", ErrNoIdentity)
	}
	return StateIdentity(info.State)
}
