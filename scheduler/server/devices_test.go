package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func dialConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fakeGPUAgent opens an agent session by hand, as a host with four GPUs,
// so that the test can see the grants it is handed and send device
// updates itself.
type fakeGPUAgent struct {
	stream pb.AgentService_SessionClient
	gpus   []*pb.GPU
}

func fourGPUHost() []*pb.GPU {
	var gpus []*pb.GPU
	for i := range 4 {
		gpus = append(gpus, &pb.GPU{Index: int32(i), Uuid: fmt.Sprintf("GPU-%d", i), Model: "NVIDIA L4",
			MemoryBytes: 16 << 30, EncoderSessions: 8, NvencLimit: pb.NVENCLimit_NVENC_LIMIT_NONE, Encoders: 1})
	}
	return gpus
}

func startFakeGPUAgent(t *testing.T, addr, id string) *fakeGPUAgent {
	t.Helper()
	f := &fakeGPUAgent{gpus: fourGPUHost()}
	fp := &pb.Fingerprint{Hostname: id, CpuCores: 16, MemoryBytes: 64 << 30, Gpus: f.gpus,
		Capacity: &pb.Resources{CpuMillis: 16000, MemoryBytes: 64 << 30, Gpus: 4, GpuMemoryBytes: 64 << 30, Nvenc: 32}}
	f.stream, _ = openAgentSession(t, addr, id, fp)
	return f
}

// openAgentSession opens an agent session by hand and returns it once the
// leader welcomed it, with the context that ends it (also ended when the
// test does). The leader takes sessions once its loop runs: it retries
// until welcomed.
func openAgentSession(t *testing.T, addr, id string, fp *pb.Fingerprint) (pb.AgentService_SessionClient, context.Context) {
	t.Helper()
	stream, ctx, _ := openAgentSessionWelcome(t, addr, id, fp)
	return stream, ctx
}

// openAgentSessionWelcome is openAgentSession, also returning the welcome
// the session opened with.
func openAgentSessionWelcome(t *testing.T, addr, id string, fp *pb.Fingerprint) (pb.AgentService_SessionClient, context.Context, *pb.Welcome) {
	t.Helper()
	conn := dialConn(t, addr)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := pb.NewAgentServiceClient(conn).Session(ctx)
		if err == nil {
			err = stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.AgentHello{AgentId: id, Fingerprint: fp}}})
		}
		var m *pb.ServerMessage
		if err == nil {
			m, err = stream.Recv()
		}
		if err == nil && m.GetWelcome() != nil {
			t.Cleanup(cancel)
			return stream, ctx, m.GetWelcome()
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("agent %s: no welcome: %v %v", id, m, err)
		}
	}
}

// recvUntil reads server messages until n task assignments and (if
// wantCancels) cancels arrived, answering nothing.
func (f *fakeGPUAgent) recvUntil(t *testing.T, n int, wantCancels int) (tasks []*pb.TaskAssignment, cancels []*pb.TaskAssignment) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	type msg struct {
		m   *pb.ServerMessage
		err error
	}
	for len(tasks) < n || len(cancels) < wantCancels {
		ch := make(chan msg, 1)
		go func() { m, err := f.stream.Recv(); ch <- msg{m, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("session: %v", r.err)
			}
			tasks = append(tasks, r.m.GetBatch().GetTasks()...)
			cancels = append(cancels, r.m.GetCancel().GetTasks()...)
		case <-deadline:
			t.Fatalf("got %d of %d tasks and %d of %d cancels", len(tasks), n, len(cancels), wantCancels)
		}
	}
	return tasks, cancels
}

// TestGPUGrantsSpreadPinAndDrainUnhealthy: ten NVENC chunks on a host with
// four GPUs go to all four (each assignment names its device), the agent
// listing shows per-device use, and a device update marking one GPU
// unhealthy cancels the chunks on it and places them on the others.
func TestGPUGrantsSpreadPinAndDrainUnhealthy(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	waitLeader(t, s)
	f := startFakeGPUAgent(t, addr, "gpu-host")
	c := dialClient(t, addr)
	spec := &pb.JobSpec{Name: "chunks"}
	for i := range 10 {
		spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Name: fmt.Sprintf("c%d", i), Command: []string{"true"},
			Resources: &pb.Resources{CpuMillis: 500, MemoryBytes: 512 << 20, GpuMemoryBytes: 512 << 20, Nvenc: 1}})
	}
	if _, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
		t.Fatal(err)
	}
	tasks, _ := f.recvUntil(t, 10, 0)
	perGPU := map[string]int{}
	onGPU := map[string]string{}
	for _, ta := range tasks {
		if len(ta.Gpus) != 1 {
			t.Fatalf("task %s granted %v, want one device", ta.TaskId, ta.Gpus)
		}
		perGPU[ta.Gpus[0].Uuid]++
		onGPU[ta.TaskId] = ta.Gpus[0].Uuid
	}
	if len(perGPU) != 4 || perGPU["GPU-0"] != 3 || perGPU["GPU-3"] != 2 {
		t.Fatalf("ten chunks over four GPUs: %v, want 3,3,2,2", perGPU)
	}
	agents, err := pb.NewAgentServiceClient(dialConn(t, addr)).ListAgents(context.Background(), &pb.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if use := agents.Agents[0].GpuUse; len(use) != 4 || use[0].Nvenc != 3 || use[0].MemoryBytes != 3*512<<20 {
		t.Fatalf("gpu_use %v", use)
	}

	f.gpus[2].Unhealthy = "Xid 79"
	if err := f.stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Devices{Devices: &pb.DeviceUpdate{Gpus: f.gpus}}}); err != nil {
		t.Fatal(err)
	}
	again, cancels := f.recvUntil(t, perGPU["GPU-2"], perGPU["GPU-2"])
	for _, ca := range cancels {
		if onGPU[ca.TaskId] != "GPU-2" {
			t.Errorf("cancelled %s, which ran on %s", ca.TaskId, onGPU[ca.TaskId])
		}
	}
	for _, ta := range again {
		if ta.Attempt != 2 || ta.Gpus[0].Uuid == "GPU-2" {
			t.Errorf("requeued %s attempt %d on %v", ta.TaskId, ta.Attempt, ta.Gpus)
		}
	}
	j, err := c.GetJob(context.Background(), &pb.GetJobRequest{Id: tasks[0].JobId, WithTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range j.Tasks {
		if task.RetriesUsed != 0 {
			t.Errorf("task %s used a retry for a device loss", task.Id)
		}
		if onGPU[task.Id] == "GPU-2" && task.Attempts[0].Outcome != "device_lost" {
			t.Errorf("task %s attempt 1 outcome %q, want device_lost", task.Id, task.Attempts[0].Outcome)
		}
	}
}

// TestSessionLimitFallsBackAndLowersSessions runs a real in-process agent
// on a GeForce-like host (two GPUs, a per-system cap of 3 NVENC sessions):
// a chunk whose encoder hits the session limit (exit 69) hands over to its
// CPU fallback without using a retry, the job succeeds, and the leader
// sees the agent offer fewer sessions.
func TestSessionLimitFallsBackAndLowersSessions(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	waitLeader(t, s)
	var gpus []*pb.GPU
	for i := range 2 {
		gpus = append(gpus, &pb.GPU{Index: int32(i), Uuid: fmt.Sprintf("GPU-gf%d", i), Model: "NVIDIA GeForce RTX 4070",
			MemoryBytes: 12 << 30, EncoderSessions: 8, Encoders: 1, NvencLimit: pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM})
	}
	fp := &pb.Fingerprint{Hostname: "gf", CpuCores: 4, MemoryBytes: 8 << 30, Gpus: gpus, NvencSystemSessions: 3,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30, Gpus: 2, GpuMemoryBytes: 24 << 30, Nvenc: 16}}
	runAgent(t, agent.Config{ID: "gf", Servers: []string{addr}, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), KillGrace: 200 * time.Millisecond})
	c := dialClient(t, addr)
	spec := &pb.JobSpec{Name: "chunk", Tasks: []*pb.TaskSpec{{Name: "enc-nv",
		Command:   []string{"sh", "-c", "echo 'OpenEncodeSessionEx failed: out of memory (10)' >&2; exit 69"},
		Resources: &pb.Resources{CpuMillis: 500, GpuMemoryBytes: 512 << 20, Nvenc: 1},
		Retry:     &pb.RetryPolicy{MaxAttempts: 1},
		Fallback: &pb.TaskSpec{Name: "enc-cpu", Command: []string{"true"},
			Resources: &pb.Resources{CpuMillis: 1000}}}}}
	var resp *pb.SubmitJobsResponse
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	j := waitJob(t, c, resp.Jobs[0].Id, 30*time.Second)
	if j.State != pb.JobState_JOB_STATE_SUCCEEDED || len(j.Tasks) != 2 {
		t.Fatalf("job %v %s with %d tasks", j.State, j.Reason, len(j.Tasks))
	}
	nv := j.Tasks[0]
	if nv.RetriesUsed != 0 || nv.ReplacedBy == "" || nv.Attempts[0].FailureClass != "nvenc_session_limit" ||
		len(nv.Attempts[0].Gpus) != 1 {
		t.Fatalf("the NVENC task: retries %d, replaced by %q, attempt %+v", nv.RetriesUsed, nv.ReplacedBy, nv.Attempts[0])
	}
	agents := pb.NewAgentServiceClient(dialConn(t, addr))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := agents.ListAgents(context.Background(), &pb.ListAgentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		fp := r.Agents[0].Fingerprint
		lowered := fp.NvencSystemSessions < 3
		for _, g := range fp.Gpus {
			if g.Uuid == nv.Attempts[0].Gpus[0].Uuid && g.EncoderSessions < 8 {
				lowered = true
			}
		}
		if lowered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader still sees the agent offer %d host sessions and %v", fp.NvencSystemSessions, fp.Gpus)
		}
	}
}
