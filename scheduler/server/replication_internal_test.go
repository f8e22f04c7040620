package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// failingLog is a raft log store whose writes fail while fail is set, as
// a full disk's do.
type failingLog struct {
	raft.LogStore
	fail *atomic.Bool
}

func (l failingLog) StoreLogs(logs []*raft.Log) error {
	if l.fail.Load() {
		time.Sleep(20 * time.Millisecond) // the write takes a while to fail, and the leader sends on meanwhile
		return fmt.Errorf("write raft.db: %w", syscall.ENOSPC)
	}
	return l.LogStore.StoreLogs(logs)
}

func (l failingLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// TestFollowerCatchesUpAfterFailedWrites: a follower whose log writes fail
// for a while (a full disk) refuses the leader's entries; once it can
// write again, the same leader brings it up to date. With raft's pipelined
// replication (MaxRPCsInFlight 2) this failed every time: the pipeline's
// reader ends on the refusal while its sender waits for it
// (hashicorp/raft #612), the leader sent the follower no entry again (it
// stayed at index 23-25 of 146), and raft's shutdown then hung on the
// stuck sender.
func TestFollowerCatchesUpAfterFailedWrites(t *testing.T) {
	var lns []net.Listener
	var peers []Peer
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, Peer{ID: fmt.Sprintf("s%d", i+1), Addr: ln.Addr().String()})
	}
	fails := make([]*atomic.Bool, 3)
	servers := make([]*Server, 3)
	for i, ln := range lns {
		fails[i] = new(atomic.Bool)
		fail := fails[i]
		s, err := New(Config{NodeID: peers[i].ID, DataDir: filepath.Join(t.TempDir(), peers[i].ID), Listener: ln, Peers: peers,
			RaftLogLevel: "off", Logger: quietTestLogger(), Lease: time.Second,
			wrapLogStore: func(l raft.LogStore) raft.LogStore { return failingLog{LogStore: l, fail: fail} }})
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = s
	}
	// Closed with a bound: a wedged replication goroutine holds raft's
	// shutdown forever, and the test says so rather than hang.
	defer func() {
		closed := make(chan struct{})
		go func() {
			for _, s := range servers {
				s.Close()
			}
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(15 * time.Second):
			t.Error("the servers did not close within 15 s: a raft replication goroutine is stuck")
		}
	}()
	var leader *Server
	for deadline := time.Now().Add(10 * time.Second); leader == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		for _, s := range servers {
			if s.IsLeader() {
				leader = s
			}
		}
	}
	var follower int
	for i, s := range servers {
		if s != leader {
			follower = i
			break
		}
	}
	conn, err := grpc.NewClient(leader.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := pb.NewJobServiceClient(conn)
	// submit sends n one-job submissions from 8 clients at once, so that
	// the leader keeps several appends in flight to each follower.
	var seq atomic.Int64
	submit := func(n int) {
		t.Helper()
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				for range n / 8 {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: "j", Pool: "default",
						IdempotencyKey: fmt.Sprintf("k-%d", seq.Add(1)),
						Tasks:          []*pb.TaskSpec{{Name: "t", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 10, MemoryBytes: 1 << 20}}}}}})
					cancel()
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatalf("submit: %v", err)
			}
		}
	}
	submit(80)
	fails[follower].Store(true)
	submit(400) // committed by the leader and the other follower
	fails[follower].Store(false)
	submit(80)
	want := leader.raft.LastIndex()
	deadline := time.Now().Add(10 * time.Second)
	for servers[follower].raft.LastIndex() < want {
		if !leader.IsLeader() {
			t.Fatal("leadership changed (which would heal the follower by itself): the test cannot judge")
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower %s at index %d 10 s after its writes work again; the leader at %d",
				peers[follower].ID, servers[follower].raft.LastIndex(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
