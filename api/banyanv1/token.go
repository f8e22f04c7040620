package banyanv1

import (
	"context"
	"strings"
)

// Metadata keys that carry an ACL token's secret on a call: the standard
// "authorization: Bearer <secret>", or "x-banyan-token: <secret>".
const (
	AuthorizationHeader = "authorization"
	TokenHeader         = "x-banyan-token"
)

// TokenCredentials is a gRPC per-RPC credential that sends an ACL token's
// secret with every call. It does not demand a secure transport, so the
// same client works on plaintext loopback (sched dev) and over TLS.
type TokenCredentials string

// GetRequestMetadata returns the authorization header, or nothing for an
// empty token.
func (t TokenCredentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{AuthorizationHeader: "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false: see TokenCredentials.
func (t TokenCredentials) RequireTransportSecurity() bool { return false }

// TokenFromMetadata returns the secret from metadata values of
// AuthorizationHeader ("Bearer <secret>") or TokenHeader, "" if none.
func TokenFromMetadata(authorization, token []string) string {
	for _, v := range authorization {
		if s, ok := strings.CutPrefix(v, "Bearer "); ok && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	for _, v := range token {
		if strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
