package server

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestHelloRefusedForFullDiskRestartsLease: while the leader's data dir is
// full it cannot commit an agent's hello, and refuses it; the agent is
// alive all the same, so the hello restarts its lease. When the disk has
// room again the leader does not mark the agent down for the silence its
// own full disk caused, only once the agent is silent a lease after its
// last hello.
func TestHelloRefusedForFullDiskRestartsLease(t *testing.T) {
	const lease = 10 * time.Second
	var offset atomic.Int64 // how far the server's clock is ahead of the wall
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true, RaftLogLevel: "off",
		Logger: quietTestLogger(), Lease: lease, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitReady(t, s)
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	agents := pb.NewAgentServiceClient(conn)
	hello := func() error { // one session of agent "a", ended once welcomed
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := agents.Session(ctx)
		if err != nil {
			return err
		}
		fp := &pb.Fingerprint{Hostname: "a", CpuCores: 2, MemoryBytes: 4 << 30,
			Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30}}
		if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.AgentHello{AgentId: "a", Fingerprint: fp}}}); err != nil {
			return err
		}
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if m.GetWelcome() == nil {
			return fmt.Errorf("first message %v, want a welcome", m)
		}
		return nil
	}
	agentState := func() string {
		r, err := agents.ListAgents(context.Background(), &pb.ListAgentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ag := range r.Agents {
			if ag.Id == "a" {
				return ag.State
			}
		}
		return "absent"
	}
	diskFull := func(full bool) {
		s.disk.mu.Lock()
		s.disk.free = statfsFree
		if full {
			s.disk.free = func(string) (uint64, uint64, error) { return 0, 1 << 30, nil }
		}
		s.disk.mu.Unlock()
		if low, _, err := s.disk.check(); err != nil || low != full {
			t.Fatalf("disk guard low %v (%v), want %v", low, err, full)
		}
	}

	if err := hello(); err != nil {
		t.Fatal(err)
	}
	diskFull(true)
	offset.Store(int64(7 * time.Second))
	if err := hello(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("hello to a leader with a full data dir: %v, want ResourceExhausted", err)
	}
	// 10.5 s after its session, past the lease; 3.5 s after its last hello.
	offset.Store(int64(10500 * time.Millisecond))
	diskFull(false)
	time.Sleep(3 * time.Second) // two lease checks (one every lease/8), each able to commit
	if st := agentState(); st != "up" {
		t.Fatalf("agent %s 6.5 s after a hello the leader refused for its full disk (lease %v); want up", st, lease)
	}
	// A lease after that hello: down.
	offset.Store(int64(18 * time.Second))
	for deadline := time.Now().Add(10 * time.Second); agentState() != "down"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent %s 11 s after its last hello (lease %v); want down", agentState(), lease)
		}
	}
}
