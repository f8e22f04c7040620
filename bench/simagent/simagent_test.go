package simagent_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
	"github.com/banyan-sched/banyan/bench/simagent"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

func startServer(t *testing.T) *server.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		Lease: 2 * time.Second, RaftLogLevel: "off", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

func waitJob(t *testing.T, c pb.JobServiceClient, id string) *pb.Job {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, err := c.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
		if err == nil && j.State == pb.JobState_JOB_STATE_SUCCEEDED {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not done: %v %v", id, j.GetState(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFleetRunsJobs: simulated agents connect, receive tasks, report them
// finished (at once and after a per-task duration) and get acknowledgements
// and heartbeat answers.
func TestFleetRunsJobs(t *testing.T) {
	s := startServer(t)
	var assigned, rtts atomic.Int64
	f, err := simagent.Start(context.Background(), simagent.Config{Servers: []string{s.Addr()}, N: 8,
		AgentsPerConn: 3, Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 4 << 30},
		OnAssign:       func(simagent.Assignment) { assigned.Add(1) },
		OnHeartbeatRTT: func(time.Duration) { rtts.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.WaitConnected(ctx, 8); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := pb.NewJobServiceClient(conn)
	spec := &pb.JobSpec{Name: "many"}
	for i := 0; i < 300; i++ {
		ts := &pb.TaskSpec{Command: []string{"x"}}
		if i%10 == 0 {
			ts.Env = map[string]string{simagent.DurationEnv: "30"}
		}
		spec.Tasks = append(spec.Tasks, ts)
	}
	r, err := jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, jobs, r.Jobs[0].Id)
	if j.Counts.Succeeded != 300 {
		t.Fatalf("succeeded %d of 300", j.Counts.Succeeded)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Stats().Acked < 300 || rtts.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, heartbeat rtts %d", f.Stats(), rtts.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := f.Stats(); st.Assigned != 300 || assigned.Load() != 300 || st.Finished != 300 {
		t.Fatalf("stats %+v, OnAssign calls %d", st, assigned.Load())
	}
	if f.Running() != 0 {
		t.Fatalf("%d tasks still running", f.Running())
	}
}

// TestFleetStops: Stop returns promptly with sessions open and tasks running.
func TestFleetStops(t *testing.T) {
	s := startServer(t)
	f, err := simagent.Start(context.Background(), simagent.Config{Servers: []string{s.Addr()}, N: 4,
		Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.WaitConnected(ctx, 4); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { f.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
}

// TestFleetWithTLS: with Credentials each simulated agent dials with its
// own agent certificate, so a TLS server (which refuses a hello for another
// agent id) takes all of them and they run a job; sharing connections is
// refused.
func TestFleetWithTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		RaftLogLevel: "off", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TLS: ca.Source(t, tlstest.Server("s1"))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for deadline := time.Now().Add(10 * time.Second); !s.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
	}
	creds := func(id string) (credentials.TransportCredentials, error) {
		return ca.Source(t, tlstest.Agent(id)).Credentials(), nil
	}
	if _, err := simagent.Start(context.Background(), simagent.Config{Servers: []string{s.Addr()}, N: 4, AgentsPerConn: 2,
		Credentials: creds}); err == nil {
		t.Fatal("agents with their own credentials shared connections")
	}
	fleet, err := simagent.Start(context.Background(), simagent.Config{Servers: []string{s.Addr()}, N: 3, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(ca.Source(t, tlstest.Client("c")).Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewJobServiceClient(conn)
	spec := &pb.JobSpec{Name: "tls"}
	for range 30 {
		spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 100}})
	}
	var resp *pb.SubmitJobsResponse
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	waitJob(t, c, resp.Jobs[0].Id)
	// The job can finish on the first agents before the last one's
	// handshake is done (on a loaded machine it was): wait for it.
	for deadline := time.Now().Add(10 * time.Second); fleet.Stats().Sessions < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions over TLS, want 3", fleet.Stats().Sessions)
		}
	}
}
