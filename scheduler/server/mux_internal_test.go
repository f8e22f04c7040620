package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
)

// TestHandshakeSlotsSpareRaft: with every handshake slot taken (a fleet
// connecting at once), a client's or agent's TLS handshake waits for one,
// while a server's raft connection is let through at once; the waiting
// handshake completes as soon as a slot is given back.
func TestHandshakeSlotsSpareRaft(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Source(t, tlstest.Server("s1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(ln, ln.Addr(), srv.ServerConfig(tlsconfig.ALPNGRPC, tlsconfig.ALPNRaft), slog.New(slog.DiscardHandler))
	defer m.close()
	for range cap(m.handshakes) {
		m.handshakes <- struct{}{}
	}
	dial := func(src *tlsconfig.Source, proto string) <-chan error {
		done := make(chan error, 1)
		go func() {
			c, err := tls.Dial("tcp", ln.Addr().String(), src.ClientConfig("127.0.0.1", proto))
			if err == nil {
				c.Close()
			}
			done <- err
		}()
		return done
	}
	accepted := func(ch chan net.Conn, what string) {
		t.Helper()
		select {
		case c := <-ch:
			c.Close()
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not handed on", what)
		}
	}

	raft := dial(ca.Source(t, tlstest.Server("s2")), tlsconfig.ALPNRaft)
	accepted(m.raftCh, "a raft connection, all slots taken")
	if err := <-raft; err != nil {
		t.Fatalf("raft handshake with all slots taken: %v", err)
	}

	agent := dial(ca.Source(t, tlstest.Agent("a1")), tlsconfig.ALPNGRPC)
	select {
	case c := <-m.grpcCh:
		c.Close()
		t.Fatal("an agent's handshake completed with every slot taken")
	case err := <-agent:
		t.Fatalf("an agent's handshake ended with every slot taken: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	<-m.handshakes // a slot comes free
	accepted(m.grpcCh, "the waiting agent's connection")
	if err := <-agent; err != nil && err != io.EOF {
		t.Fatalf("agent handshake after a slot came free: %v", err)
	}
	select {
	case m.handshakes <- struct{}{}: // its slot was given back: one is free again
	case <-time.After(time.Second):
		t.Fatal("the agent's handshake did not give its slot back")
	}
}

// plaintextMux is a mux without TLS on a loopback port, closed when the
// test ends.
func plaintextMux(t *testing.T) (*mux, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(ln, ln.Addr(), nil, slog.New(slog.DiscardHandler))
	t.Cleanup(m.close)
	return m, ln
}

// A plaintext connection goes where its first byte says: raft's stream
// without the byte that named it, gRPC's whole (its first byte read back
// first, then the conn itself); one closed before a byte goes nowhere.
func TestPlaintextRoutesByFirstByte(t *testing.T) {
	m, ln := plaintextMux(t)
	send := func(b []byte) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		return c
	}
	handed := func(ch chan net.Conn, what string) net.Conn {
		t.Helper()
		select {
		case c := <-ch:
			t.Cleanup(func() { c.Close() })
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not handed on", what)
			return nil
		}
	}
	read := func(c net.Conn, n, step int) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var out []byte
		buf := make([]byte, step)
		for len(out) < n {
			k, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %q: %v", out, err)
			}
			out = append(out, buf[:k]...)
		}
		return string(out)
	}

	send(append([]byte{raftMagic}, "append entries"...))
	if got := read(handed(m.raftCh, "raft"), len("append entries"), 64); got != "append entries" {
		t.Errorf("raft read %q", got)
	}
	for _, step := range []int{1, 3, 4096} {
		client := send([]byte("PRI * HTTP/2.0"))
		srv := handed(m.grpcCh, "gRPC")
		if got := read(srv, len("PRI * HTTP/2.0"), step); got != "PRI * HTTP/2.0" {
			t.Errorf("gRPC read %q in reads of %d bytes", got, step)
		}
		if _, err := client.Write([]byte("SETTINGS")); err != nil {
			t.Fatal(err)
		}
		if got := read(srv, len("SETTINGS"), step); got != "SETTINGS" {
			t.Errorf("gRPC then read %q in reads of %d bytes", got, step)
		}
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case c := <-m.grpcCh:
		t.Errorf("a connection closed before its first byte was handed on: %v", c.RemoteAddr())
	case c := <-m.raftCh:
		t.Errorf("a connection closed before its first byte was handed on to raft: %v", c.RemoteAddr())
	case <-time.After(200 * time.Millisecond):
	}
}

// A routed plaintext connection holds its first byte, not a read buffer:
// a bufio.Reader of 4 KiB a connection was 40 MiB of a leader's heap with
// 10,000 agents. Counted here with both ends of each connection in this
// process.
func TestPlaintextRouteHoldsNoBuffer(t *testing.T) {
	m, ln := plaintextMux(t)
	const n = 200
	conns := make([]net.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("P")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-m.grpcCh:
			conns = append(conns, s)
		case <-time.After(10 * time.Second):
			t.Fatal("gRPC connection not handed on")
		}
	}
	per := float64(heap()-before) / n
	t.Logf("%.0f B of heap per routed connection, both ends", per)
	if per > 2048 {
		t.Errorf("%.0f B of heap per routed connection, want under 2 KiB", per)
	}
}

// countingPool is a mem.BufferPool that counts the buffers out of it.
type countingPool struct{ out atomic.Int64 }

func (p *countingPool) Get(n int) *[]byte {
	p.out.Add(1)
	b := make([]byte, n)
	return &b
}

func (p *countingPool) Put(*[]byte) { p.out.Add(-1) }

// reusePool is a mem.BufferPool of one buffer, given out again and again.
type reusePool struct{ buf *[]byte }

func (p reusePool) Get(int) *[]byte { return p.buf }

func (reusePool) Put(*[]byte) {}

// A routed gRPC connection read with ReadOnReady takes a buffer only once
// bytes have arrived: none while it waits, its first byte first, then
// what the peer sent, and io.EOF with no buffer when the peer closes.
func TestReadOnReadyHoldsNoBufferWhileWaiting(t *testing.T) {
	if !canReadNow {
		t.Skip("sockets are read through Read on this system")
	}
	m, ln := plaintextMux(t)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("PRI")); err != nil {
		t.Fatal(err)
	}
	var srv *peekedConn
	select {
	case c := <-m.grpcCh:
		defer c.Close()
		srv = c.(*peekedConn)
	case <-time.After(10 * time.Second):
		t.Fatal("gRPC connection not handed on")
	}
	if srv.raw == nil {
		t.Fatal("a TCP connection was routed without its socket")
	}
	pool := &countingPool{}
	type read struct {
		got string
		err error
	}
	readOnce := func() <-chan read {
		ch := make(chan read, 1)
		go func() {
			buf, n, err := srv.ReadOnReady(64, pool)
			r := read{err: err}
			if n > 0 {
				r.got = string((*buf)[:n])
				pool.Put(buf)
			} else if buf != nil {
				r.err = fmt.Errorf("a buffer with no bytes (error %v)", err)
			}
			ch <- r
		}()
		return ch
	}
	want := func(ch <-chan read, got string, err error) {
		t.Helper()
		select {
		case r := <-ch:
			if r.got != got || !errors.Is(r.err, err) {
				t.Fatalf("read %q, %v; want %q, %v", r.got, r.err, got, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no read of %q", got)
		}
	}
	want(readOnce(), "P", nil)
	want(readOnce(), "RI", nil)

	waiting := readOnce()
	time.Sleep(100 * time.Millisecond) // the read is parked on the socket
	if n := pool.out.Load(); n != 0 {
		t.Fatalf("%d buffers held by a read waiting for bytes", n)
	}
	if _, err := client.Write([]byte(" * HTTP/2.0")); err != nil {
		t.Fatal(err)
	}
	want(waiting, " * HTTP/2.0", nil)

	// A read allocates nothing of its own (the pool here reuses one
	// buffer): an agent's every message goes through it.
	one := make([]byte, 64)
	reuse, x := reusePool{&one}, []byte("x")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := client.Write(x); err != nil {
			t.Fatal(err)
		}
		if _, n, err := srv.ReadOnReady(64, reuse); n != 1 || err != nil {
			t.Fatalf("read %d bytes, %v; want 1", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations a read, want 0", allocs)
	}

	client.Close()
	want(readOnce(), "", io.EOF)
	if n := pool.out.Load(); n != 0 {
		t.Fatalf("%d buffers not given back", n)
	}
}

// Idle gRPC connections through the mux hold no read buffer: gRPC reads
// them with ReadOnReady. Without it each held serverReadBuffer (8 KiB) for
// its life. The clients are bare HTTP/2 connections that have exchanged
// settings and a ping with the server, so the heap counted is nearly all
// the server's.
func TestIdleGRPCConnectionsHoldNoReadBuffer(t *testing.T) {
	if !canReadNow {
		t.Skip("sockets are read through Read on this system")
	}
	m, ln := plaintextMux(t)
	gs := grpc.NewServer(grpc.ReadBufferSize(serverReadBuffer))
	go func() { _ = gs.Serve(newChanListener(m, m.grpcCh)) }()
	defer gs.Stop()

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fr := http2.NewFramer(c, c)
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		if err := fr.WritePing(false, [8]byte{1}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("connection %d: %v", len(conns), err)
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
			if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
				break // the server has read all we sent: it waits for more
			}
		}
		_ = c.SetDeadline(time.Time{})
	}
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC() // and sync.Pool's victims
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	const n = 200
	open() // gRPC's one-time set-up is not counted
	before := heap()
	for range n {
		open()
	}
	per := float64(heap()-before) / n
	t.Logf("%.0f B of heap per idle gRPC connection", per)
	if per > serverReadBuffer {
		t.Errorf("%.0f B of heap per idle gRPC connection, want under %d: a read buffer held while idle?", per, serverReadBuffer)
	}
}
