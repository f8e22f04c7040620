package server

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
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
