package server

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
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
