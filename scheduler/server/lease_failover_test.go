package server_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent/rotation"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// TestNewLeaderWaitsForAgentsOnTheirWay: a new leader gives an agent it
// has not heard from yet its lease plus rotation.ReconnectBound (the time
// the agent may spend on a silent server and a backoff before it finds the
// leader) before it marks the agent down; an agent that reached this
// leader and went silent again has only its lease.
func TestNewLeaderWaitsForAgentsOnTheirWay(t *testing.T) {
	const lease = 2 * time.Second
	dir := t.TempDir()
	ln := listen(t)
	addr := ln.Addr().String()
	var offset atomic.Int64 // how far the servers' clock is ahead of the wall
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	hello := func(id string) (end func()) { // one session of agent id, until end
		fp := &pb.Fingerprint{Hostname: id, CpuCores: 2, MemoryBytes: 4 << 30,
			Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30}}
		stream, ctx, _ := openAgentSessionWelcome(t, addr, id, fp)
		return func() {
			_ = stream.CloseSend()
			for ctx.Err() == nil { // until the server ends the stream
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}
	}

	s1 := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln, Bootstrap: true, Lease: lease, Clock: clock})
	waitLeader(t, s1)
	endA, endB := hello("a"), hello("b")
	if err := s1.Close(); err != nil { // the leader goes; a and b are up in the log
		t.Fatal(err)
	}
	endA()
	endB()

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, server.Config{NodeID: "s1", DataDir: dir, Listener: ln2, Lease: lease, Clock: clock})
	t.Cleanup(func() { s2.Close() })
	waitLeader(t, s2)
	agents := pb.NewAgentServiceClient(dialConn(t, addr))
	states := func() map[string]string { return agentStates(t, agents) }
	want := func(a, b, when string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			st := states()
			if st["a"] == a && st["b"] == b {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: agents %v; want a %s, b %s", when, st, a, b)
			}
		}
	}
	want("up", "up", "after the restart")

	// Past their lease, within the time an agent takes to find a new
	// leader: both still up, over several lease checks (one every lease/8).
	offset.Store(int64(lease + time.Second))
	time.Sleep(time.Second)
	if st := states(); st["a"] != "up" || st["b"] != "up" {
		t.Fatalf("agents %v %v after a new leader took over (lease %v, plus %v to find the leader); want both up",
			st, time.Duration(offset.Load()), lease, rotation.ReconnectBound)
	}
	// b reaches the new leader, then goes silent past its lease: b is
	// down (it found the leader once), a, never heard, is still up.
	endB = hello("b")
	endB()
	offset.Add(int64(lease + lease/4)) // a: about 5.5 s, and the test's own time
	want("up", "down", "b silent past its lease after reaching the new leader")
	// a past its lease and the reconnection bound: down.
	offset.Store(int64(lease + rotation.ReconnectBound + time.Second))
	want("down", "down", "a past its lease and the reconnection bound")
}
