package server_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// termsSession is a hand-made agent session that collects the Welcomes the
// leader sends it after the first.
type termsSession struct {
	first    *pb.Welcome
	welcomes chan *pb.Welcome
}

func openTermsSession(t *testing.T, addr, id string) *termsSession {
	t.Helper()
	fp := &pb.Fingerprint{Hostname: id, CpuCores: 2, MemoryBytes: 4 << 30, Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30}}
	stream, ctx, first := openAgentSessionWelcome(t, addr, id, fp)
	s := &termsSession{first: first, welcomes: make(chan *pb.Welcome, 16)}
	go func() { // owned by the test: ends with the stream (ctx)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if w := m.GetWelcome(); w != nil {
				select {
				case s.welcomes <- w:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return s
}

// told waits for the next Welcome and checks its terms.
func (s *termsSession) told(t *testing.T, who string, leaseMs, heartbeatMs int64) {
	t.Helper()
	select {
	case w := <-s.welcomes:
		if w.LeaseMs != leaseMs || w.HeartbeatMs != heartbeatMs {
			t.Fatalf("%s told lease %d ms, heartbeat %d ms; want %d and %d", who, w.LeaseMs, w.HeartbeatMs, leaseMs, heartbeatMs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not told new terms (want lease %d ms)", who, leaseMs)
	}
}

// toldNothing checks that no Welcome comes for a moment.
func (s *termsSession) toldNothing(t *testing.T, who string) {
	t.Helper()
	select {
	case w := <-s.welcomes:
		t.Fatalf("%s told new terms %v; want none", who, w)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestFleetGrowthLengthensHeartbeats: past the leader's heartbeat bound,
// each new session is told a longer interval and lease, the sessions told
// shorter terms are told the new ones, and the leader marks an agent down
// only after the lease it was told, not the configured one.
func TestFleetGrowthLengthensHeartbeats(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	var offset atomic.Int64 // how far the leader's clock is ahead of the wall
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	// A 4 s lease heartbeats every second; at most half a heartbeat a
	// second means one agent every 2 s, two every 4 s, three or four
	// every 8 s.
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		Lease: 4 * time.Second, MaxHeartbeatRate: 0.5, Clock: clock})
	waitLeader(t, s)

	a := openTermsSession(t, addr, "a")
	if a.first.LeaseMs != 8000 || a.first.HeartbeatMs != 2000 {
		t.Fatalf("first agent welcomed with %v; want lease 8000 ms, heartbeat 2000 ms", a.first)
	}
	b := openTermsSession(t, addr, "b")
	if b.first.LeaseMs != 16000 || b.first.HeartbeatMs != 4000 {
		t.Fatalf("second agent welcomed with %v; want lease 16000 ms, heartbeat 4000 ms", b.first)
	}
	a.told(t, "the first agent, when the second came", 16000, 4000)
	c := openTermsSession(t, addr, "c")
	a.told(t, "the first agent, when the third came", 32000, 8000)
	b.told(t, "the second agent, when the third came", 32000, 8000)
	d := openTermsSession(t, addr, "d")
	if d.first.LeaseMs != 32000 {
		t.Fatalf("fourth agent welcomed with %v; want lease 32000 ms", d.first)
	}
	for who, s := range map[string]*termsSession{"a": a, "b": b, "c": c} {
		s.toldNothing(t, who+" when a fourth agent came within the same terms")
	}

	// Silent 20 s: past the configured lease, within the one they were told.
	agents := pb.NewAgentServiceClient(dialConn(t, addr))
	states := func() map[string]string { return agentStates(t, agents) }
	offset.Store(int64(20 * time.Second))
	time.Sleep(1500 * time.Millisecond) // three lease checks
	for id, st := range states() {
		if st != "up" {
			t.Fatalf("agent %s %s 20 s into a 32 s lease", id, st)
		}
	}
	// Silent 35 s: past it.
	offset.Store(int64(35 * time.Second))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		down := 0
		for _, st := range states() {
			if st == "down" {
				down++
			}
		}
		if down == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("35 s silent into a 32 s lease: %v; want all 4 down", states())
		}
	}
}

// agentStates lists the agents' states by id.
func agentStates(t *testing.T, agents pb.AgentServiceClient) map[string]string {
	t.Helper()
	r, err := agents.ListAgents(context.Background(), &pb.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, ag := range r.Agents {
		out[ag.Id] = ag.State
	}
	return out
}
