package server

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftMagic is the first byte a raft connection sends on the shared port.
// gRPC (HTTP/2) connections start with 'P' of the client preface, so one
// address serves both: a server's raft address is its API address.
const raftMagic byte = 0xB4

// mux splits one TCP listener into a gRPC listener and a raft stream layer.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	grpcCh    chan net.Conn
	raftCh    chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func newMux(ln net.Listener, advertise net.Addr) *mux {
	m := &mux{ln: ln, advertise: advertise, grpcCh: make(chan net.Conn), raftCh: make(chan net.Conn),
		done: make(chan struct{})}
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
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	target := m.grpcCh
	if first[0] == raftMagic {
		_, _ = br.Discard(1)
		target = m.raftCh
	}
	select {
	case target <- &peekedConn{Conn: c, r: br}:
	case <-m.done:
		c.Close()
	}
}

func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.done)
		m.ln.Close()
	})
	m.wg.Wait()
}

// peekedConn is a conn whose first bytes were buffered while routing.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

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

// streamLayer is raft's transport over the shared port.
type streamLayer struct{ *chanListener }

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	if _, err := c.Write([]byte{raftMagic}); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial raft peer %s: %w", addr, err)
	}
	return c, nil
}
