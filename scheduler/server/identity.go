package server

import (
	"context"
	"fmt"
	"net"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Which certificate roles may call which methods, when TLS is on. Raft on
// the shared port is checked in the mux (raftAllowed). Without TLS nothing
// here applies: such a server serves loopback only, unless told it is
// insecure (checkInsecureBind).
const (
	methodJoin    = "/banyan.v1.ClusterService/Join"
	methodRemove  = "/banyan.v1.ClusterService/Remove"
	methodSession = "/banyan.v1.AgentService/Session"
)

// roleAllowed decides whether a caller holding a certificate of id may call
// method: Join and Remove are for servers, the agent session for agents,
// health and reflection for every role, every other call for clients and
// servers (servers forward clients' calls to the leader). It is a pure
// function.
func roleAllowed(method string, id tlsconfig.Identity) error {
	var allowed []tlsconfig.Role
	switch method {
	case methodHealthCheck, methodHealthWatch, methodHealthList, methodReflection, methodReflectionAlpha1:
		allowed = []tlsconfig.Role{tlsconfig.RoleClient, tlsconfig.RoleServer, tlsconfig.RoleAgent}
	case methodJoin, methodRemove:
		allowed = []tlsconfig.Role{tlsconfig.RoleServer}
	case methodSession:
		allowed = []tlsconfig.Role{tlsconfig.RoleAgent}
	default:
		allowed = []tlsconfig.Role{tlsconfig.RoleClient, tlsconfig.RoleServer}
	}
	for _, r := range allowed {
		if id.Role == r {
			return nil
		}
	}
	return fmt.Errorf("certificate %s may not call %s (needs a %s certificate)", id, method, allowed[0])
}

// helloAllowed decides whether an agent holding a certificate of id may say
// hello as agentID: only for itself, so no one takes over another agent's
// session. It is a pure function.
func helloAllowed(id tlsconfig.Identity, agentID string) error {
	if id.Role != tlsconfig.RoleAgent || id.ID != agentID {
		return fmt.Errorf("certificate %s may not open a session for agent %q (only agent/%s may)", id, agentID, agentID)
	}
	return nil
}

// joinAllowed decides whether a server holding a certificate of id may ask
// to add the server named in req: only itself, unless the call was
// forwarded by another server (which checked the original caller). It is a
// pure function.
func joinAllowed(id tlsconfig.Identity, req *pb.JoinRequest, forwarded bool) error {
	if forwarded || (id.Role == tlsconfig.RoleServer && id.ID == req.GetId()) {
		return nil
	}
	return fmt.Errorf("certificate %s may not join the cluster as server %q (a server joins only as itself)", id, req.GetId())
}

// checkInsecureBind refuses to serve plaintext on an address other than
// loopback unless insecure says so. It is a pure function of its inputs.
func checkInsecureBind(addr string, withTLS, insecure bool) error {
	if withTLS || insecure || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("refusing to serve %s without TLS: it is not a loopback address; "+
		"give --tls-ca, --tls-cert and --tls-key (see `sched tls`), or --insecure to serve it in plaintext anyway", addr)
}

// isLoopback reports whether host:port names only the loopback interface.
// An unspecified host (":7400", "0.0.0.0") and other names are not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// callerIdentity reads the caller's certificate identity for a TLS server.
func (s *Server) callerIdentity(ctx context.Context, method string) (tlsconfig.Identity, error) {
	id, err := tlsconfig.PeerIdentity(ctx)
	if err != nil {
		return tlsconfig.Identity{}, status.Errorf(codes.Unauthenticated, "%s: %v", method, err)
	}
	if err := roleAllowed(method, id); err != nil {
		s.log.Warn("call refused", "method", method, "identity", id.String(), "err", err)
		return tlsconfig.Identity{}, status.Error(codes.PermissionDenied, err.Error())
	}
	return id, nil
}

// identityUnary checks the caller's role before anything else sees a call
// (it runs before forwarding, so a follower refuses what the leader would).
func (s *Server) identityUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.cfg.TLS == nil {
		return handler(ctx, req)
	}
	id, err := s.callerIdentity(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if jr, ok := req.(*pb.JoinRequest); ok && info.FullMethod == methodJoin {
		md, _ := metadata.FromIncomingContext(ctx)
		if err := joinAllowed(id, jr, len(md.Get(forwardedKey)) > 0); err != nil {
			s.log.Warn("join refused", "identity", id.String(), "join_id", jr.GetId(), "join_addr", jr.GetAddress())
			return nil, status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return handler(ctx, req)
}

// identityStream checks the caller's role on streams, and that an agent's
// session opens with a hello for the agent its certificate names.
func (s *Server) identityStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if s.cfg.TLS == nil {
		return handler(srv, ss)
	}
	id, err := s.callerIdentity(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if info.FullMethod == methodSession {
		ss = &helloCheckedStream{ServerStream: ss, id: id, s: s}
	}
	return handler(srv, ss)
}

// helloCheckedStream refuses an agent session whose first message is a
// hello for another agent than the certificate names.
type helloCheckedStream struct {
	grpc.ServerStream
	id      tlsconfig.Identity
	s       *Server
	checked bool
}

func (h *helloCheckedStream) RecvMsg(m any) error {
	if err := h.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if h.checked {
		return nil
	}
	h.checked = true
	msg, ok := m.(*pb.AgentMessage)
	if !ok || msg.GetHello() == nil {
		return nil // the session itself refuses a first message that is not a hello
	}
	if err := helloAllowed(h.id, msg.GetHello().AgentId); err != nil {
		h.s.log.Warn("agent session refused", "identity", h.id.String(), "agent", msg.GetHello().AgentId)
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}
