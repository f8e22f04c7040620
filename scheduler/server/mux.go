package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/mem"
)

// raftMagic is the first byte a raft connection sends on the shared port.
// gRPC (HTTP/2) connections start with 'P' of the client preface, so one
// address serves both: a server's raft address is its API address.
const raftMagic byte = 0xB4

// mux splits one TCP listener into a gRPC listener and a raft stream layer.
// With TLS every connection is TLS: the mux completes the handshake, then
// routes by the ALPN protocol the client asked for (tlsconfig.ALPNRaft or
// gRPC's "h2"), and only a certificate naming a server may speak raft.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tls.Config // nil: plaintext, routed by the first byte
	log       *slog.Logger
	grpcCh    chan net.Conn
	raftCh    chan net.Conn
	done      chan struct{}
	ctx       context.Context // ends when the mux closes: bounds handshakes
	stop      context.CancelFunc
	// handshakes bounds the TLS handshakes of clients and agents in
	// progress at once (handshakeSlots).
	handshakes chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup
}

func newMux(ln net.Listener, advertise net.Addr, tlsCfg *tls.Config, log *slog.Logger) *mux {
	m := &mux{ln: ln, advertise: advertise, tls: tlsCfg, log: log, grpcCh: make(chan net.Conn),
		raftCh: make(chan net.Conn), done: make(chan struct{}), handshakes: make(chan struct{}, handshakeSlots())}
	m.ctx, m.stop = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.serve()
	return m
}

func (m *mux) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

func (m *mux) route(c net.Conn) {
	if m.tls != nil {
		m.routeTLS(c)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if first[0] == raftMagic {
		m.hand(m.raftCh, c) // raft's stream starts after the byte that named it
		return
	}
	m.hand(m.grpcCh, newPeekedConn(c, first[0]))
}

// hand passes a routed connection on, or closes it when the mux stops.
func (m *mux) hand(target chan net.Conn, c net.Conn) {
	select {
	case target <- c:
	case <-m.done:
		c.Close()
	}
}

// handshakeSlots is how many TLS handshakes of clients and agents a server
// runs at once. A handshake is a few signatures and verifications of CPU:
// 10,000 agents connecting together (a fleet's start, or a new leader) ran
// 10,000 of them at once on two cores, and the leader's raft goroutines,
// waiting behind them, answered its followers past the leader lease and
// stepped down, so the whole fleet connected again to the next leader.
// Beyond the slots a handshake waits (within its 10 s) before its crypto
// starts; raft's connections never wait (admitHandshake).
func handshakeSlots() int { return 4 * runtime.GOMAXPROCS(0) }

// admitHandshake wraps the TLS config of one connection so that, once the
// client's hello names what it will speak, a client or agent waits for a
// handshake slot (raft between servers does not); held reports whether
// the connection holds a slot, to give back when its handshake ends.
func (m *mux) admitHandshake(held *bool) *tls.Config {
	cfg := m.tls.Clone()
	inner := m.tls.GetConfigForClient
	cfg.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hi.SupportedProtos, tlsconfig.ALPNRaft) {
			select {
			case m.handshakes <- struct{}{}:
				*held = true
			case <-hi.Context().Done():
				return nil, fmt.Errorf("waiting for a TLS handshake slot: %w", hi.Context().Err())
			}
		}
		if inner == nil {
			return nil, nil
		}
		return inner(hi)
	}
	return cfg
}

// routeTLS completes the TLS handshake (the client's certificate verified
// against the CA) and routes by ALPN. A failed handshake (plaintext, an
// unknown CA, no certificate) or raft from a non-server certificate is
// logged and the connection closed.
func (m *mux) routeTLS(c net.Conn) {
	held := false
	tc := tls.Server(c, m.admitHandshake(&held))
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if held {
		<-m.handshakes
	}
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug // a bare TCP probe: connected and closed
		}
		m.log.Log(ctx, level, "TLS handshake refused", "remote", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != tlsconfig.ALPNRaft {
		m.hand(m.grpcCh, tc)
		return
	}
	if err := raftAllowed(cs); err != nil {
		m.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	m.hand(m.raftCh, tc)
}

// raftAllowed admits raft only from a certificate naming a server.
func raftAllowed(cs tls.ConnectionState) error {
	id, err := tlsconfig.StateIdentity(cs)
	if err != nil {
		return fmt.Errorf("raft needs a server certificate: %w", err)
	}
	if id.Role != tlsconfig.RoleServer {
		return fmt.Errorf("raft needs a server certificate; %s may not speak raft", id)
	}
	return nil
}

func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.done)
		m.stop()
		m.ln.Close()
	})
	m.wg.Wait()
}

// peekedConn is a conn whose first byte was read while routing: its
// first Read returns that byte, later ones read the conn itself. It holds
// the byte alone, where a bufio.Reader held 4 KiB for the connection's
// life: 40 MiB of a plaintext leader's heap with 10,000 agents. Read is
// for one goroutine at a time, as gRPC's transport reads.
//
// It also reads as ReadOnReady (see there), so that gRPC holds no read
// buffer while the connection is idle.
type peekedConn struct {
	net.Conn
	raw    syscall.RawConn // the socket's, for ReadOnReady; nil: none
	first  byte
	unread bool
	// ready is a ReadOnReady in progress: its request and result. They
	// live here, and readReady is bound once, so that a read allocates
	// nothing (a closure over locals would escape, every read).
	ready struct {
		size int
		pool mem.BufferPool
		buf  *[]byte
		n    int
		err  error
	}
	readReady func(fd uintptr) bool
}

// readyReader is grpc-go's readyreader.Reader (an internal package), which
// its transport looks for on a connection.
type readyReader interface {
	ReadOnReady(size int, pool mem.BufferPool) (*[]byte, int, error)
}

var _ readyReader = (*peekedConn)(nil)

// newPeekedConn wraps c, whose first byte was read while routing.
func newPeekedConn(c net.Conn, first byte) *peekedConn {
	p := &peekedConn{Conn: c, raw: socketOf(c), first: first, unread: true}
	if p.raw != nil {
		p.readReady = p.readSocket
	}
	return p
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if !p.unread || len(b) == 0 {
		return p.Conn.Read(b)
	}
	b[0], p.unread = p.first, false
	return 1, nil
}

// ReadOnReady waits until the connection has bytes to read, and only then
// takes a buffer of size bytes from pool and reads into it. It returns the
// buffer (the caller gives it back to pool) and the bytes read; n > 0
// comes with a buffer, whatever the error.
//
// gRPC's server transport (grpc-go 1.85 and later) reads a connection
// through this method when the connection has it, and gives the buffer
// back as soon as its bytes are framed. Without it, the transport keeps a
// read buffer of its own (8 KiB here, serverReadBuffer) for the
// connection's life, parked in a read that waits for the next frame: 72
// MiB of a plaintext leader's heap with 10,000 agents, nearly all idle
// between heartbeats. gRPC does this by itself only for a bare
// *net.TCPConn, which the mux's wrapper is not. A TLS connection keeps its
// buffers either way: its record layer reads ahead of what it returns.
func (p *peekedConn) ReadOnReady(size int, pool mem.BufferPool) (*[]byte, int, error) {
	if size <= 0 {
		return nil, 0, fmt.Errorf("mux: read of %d bytes", size)
	}
	if p.unread {
		buf := pool.Get(size)
		(*buf)[0], p.unread = p.first, false
		return buf, 1, nil
	}
	var buf *[]byte
	var n int
	var err error
	if p.raw != nil {
		p.ready.size, p.ready.pool = size, pool
		rerr := p.raw.Read(p.readReady)
		buf, n, err = p.ready.buf, p.ready.n, p.ready.err
		p.ready.pool, p.ready.buf, p.ready.err = nil, nil, nil
		if rerr != nil {
			// Closed, or past a deadline, while waiting: no buffer taken.
			return nil, 0, rerr
		}
	} else {
		buf = pool.Get(size)
		n, err = p.Conn.Read(*buf)
	}
	if n > 0 {
		return buf, n, err
	}
	if buf != nil {
		pool.Put(buf)
	}
	if err == nil {
		err = io.EOF // a read of 0 bytes without an error: the peer closed
	}
	return nil, 0, err
}

// readSocket is ReadOnReady's try at the socket, each time it may have
// bytes: it takes a buffer and reads, or gives the buffer back and
// reports false (nothing yet: wait again).
func (p *peekedConn) readSocket(fd uintptr) bool {
	r := &p.ready
	r.buf = r.pool.Get(r.size)
	var ready bool
	r.n, ready, r.err = readNow(fd, *r.buf)
	if !ready {
		r.pool.Put(r.buf)
		r.buf = nil
	}
	return ready
}

// socketOf returns the raw socket under a TCP or Unix connection, for
// ReadOnReady; nil for any other conn (a wrapper may change what Read
// returns, so only the bare socket is read past its Read).
func socketOf(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	if !canReadNow {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// chanListener is a net.Listener fed by the mux. Closing it stops Accept
// (so gRPC's Stop returns) without closing the shared TCP listener.
type chanListener struct {
	m         *mux
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanListener(m *mux, ch chan net.Conn) *chanListener {
	return &chanListener{m: m, ch: ch, closed: make(chan struct{})}
}

var errListenerClosed = errors.New("listener closed")

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.m.done:
		return nil, errListenerClosed
	case <-l.closed:
		return nil, errListenerClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.m.advertise }

// streamLayer is raft's transport over the shared port. With TLS it dials
// with this server's certificate and asks for the raft ALPN protocol.
type streamLayer struct {
	*chanListener
	tls *tlsconfig.Source // nil: plaintext with the magic byte
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	if s.tls != nil {
		return dialRaftTLS(c, s.tls, string(addr), timeout)
	}
	if _, err := c.Write([]byte{raftMagic}); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	return c, nil
}

func dialRaftTLS(c net.Conn, src *tlsconfig.Source, addr string, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	tc := tls.Client(c, src.ClientConfig(host, tlsconfig.ALPNRaft))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, fmt.Errorf("dial raft peer %s: TLS: %w", addr, err)
	}
	if tc.ConnectionState().NegotiatedProtocol != tlsconfig.ALPNRaft {
		tc.Close()
		return nil, fmt.Errorf("dial raft peer %s: it does not serve raft over TLS", addr)
	}
	return tc, nil
}
