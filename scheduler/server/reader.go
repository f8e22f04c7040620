package server

// Read access for the HTTP surface (the web page): the token resolution
// and the pool and cluster checks of the gRPC interceptors (auth.go), for
// callers that only read. Nothing here changes the state.

import (
	"context"
	"errors"
	"fmt"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrUnauthenticated is wrapped by ResolveReader's errors when ACLs are
// enforced and the secret resolves to no token (none given, unknown,
// revoked, or ACLs not bootstrapped yet).
var ErrUnauthenticated = errors.New("unauthenticated")

// Reader is what one caller of a read-only surface may read, resolved
// from its token by ResolveReader. With ACLs off it may read everything.
type Reader struct {
	c *caller
}

// CanReadPool reports whether the reader may read pool path: its jobs and
// tasks, and its line of the pool tree (acl "read" on the pool).
func (r *Reader) CanReadPool(path string) bool {
	return r.c.allow(acl.PoolRead, path) == nil
}

// CanReadCluster reports whether the reader may read the cluster: the
// agents and their devices (cluster "read").
func (r *Reader) CanReadCluster() bool {
	return r.c.allow(acl.ClusterRead, "") == nil
}

// Name is the name of the reader's token ("" with ACLs off).
func (r *Reader) Name() string {
	if r.c.tok == nil {
		return ""
	}
	return r.c.tok.Name
}

// ResolveReader resolves an ACL token's secret ("" when the request
// carried none) the way the gRPC interceptors do. With ACLs off every
// caller may read everything; with ACLs on, a secret that names no token
// is an error wrapping ErrUnauthenticated.
func (s *Server) ResolveReader(secret string) (*Reader, error) {
	ctx := context.Background()
	if secret != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(pb.AuthorizationHeader, "Bearer "+secret))
	}
	c, err := s.resolveCaller(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, status.Convert(err).Message())
	}
	return &Reader{c: c}, nil
}
