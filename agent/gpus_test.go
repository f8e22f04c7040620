package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/banyan-sched/banyan/agent/process"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// gpuFingerprint: GPU 0 has no session cap, GPU 1 is a consumer card
// capped per system, GPU 2 is in MIG mode without NVENC.
func gpuFingerprint() *pb.Fingerprint {
	return &pb.Fingerprint{
		Gpus: []*pb.GPU{
			{Index: 0, Uuid: "GPU-aaa", Model: "NVIDIA L4", Encoders: 1, Decoders: 1, EncoderSessions: 3, NvencLimit: pb.NVENCLimit_NVENC_LIMIT_NONE},
			{Index: 1, Uuid: "GPU-bbb", Model: "NVIDIA GeForce RTX 4090", Encoders: 1, Decoders: 1, EncoderSessions: 3,
				NvencLimit: pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
			{Index: 2, Uuid: "GPU-ccc", Model: "NVIDIA A100-SXM4-40GB", MigEnabled: true, MigDevices: 1,
				Mig: []*pb.MIGInstance{{Uuid: "MIG-ddd", Profile: "3g.20gb"}}},
		},
		NvencSystemSessions: 5,
		Capacity:            &pb.Resources{Gpus: 3, Nvenc: 6},
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// gpuAgent is testAgent with the GPU fingerprint.
func gpuAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	cfg.ID, cfg.Servers, cfg.Fingerprint = "t", []string{"127.0.0.1:1"}, gpuFingerprint()
	if os.Geteuid() == 0 && cfg.RunAs == nil {
		cfg.RunAs = nobody
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	return a
}

// startTask starts one command task with grants and an NVENC ask.
func startTask(a *Agent, id string, grants []*pb.GPUGrant, nvenc int64, env map[string]string, cmd ...string) {
	a.start(context.Background(), &pb.TaskAssignment{TaskId: id, Attempt: 1, JobId: "j", Gpus: grants,
		Spec: &pb.TaskSpec{Command: cmd, Env: env, Resources: &pb.Resources{CpuMillis: 100, MemoryBytes: 64 << 20, Nvenc: nvenc}}})
}

// waitFinished waits for the finished event of task id.
func waitFinished(t *testing.T, a *Agent, id string) *pb.TaskEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		ev := a.unacked[id+"/1"]
		a.mu.Unlock()
		if ev != nil {
			return ev
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("task %s did not finish", id)
	return nil
}

// TestGPUPinning: a task granted devices sees exactly those in its
// environment, whatever it or the agent set; a task without grants gets
// none of these from the agent and keeps its own.
func TestGPUPinning(t *testing.T) {
	a := gpuAgent(t, Config{Env: map[string]string{"NVIDIA_VISIBLE_DEVICES": "all"}})
	show := `env | grep -E '^(CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES|BANYAN_GPU_INDEX|BANYAN_GPU_UUID)=' | sort`
	for _, tc := range []struct {
		name   string
		grants []*pb.GPUGrant
		env    map[string]string
		want   string
	}{
		{"one GPU, the task's own filter overridden", []*pb.GPUGrant{{Index: 1, Uuid: "GPU-bbb"}}, map[string]string{"CUDA_VISIBLE_DEVICES": "0"},
			"BANYAN_GPU_INDEX=1\nBANYAN_GPU_UUID=GPU-bbb\nCUDA_VISIBLE_DEVICES=GPU-bbb\nNVIDIA_VISIBLE_DEVICES=GPU-bbb\n"},
		{"a MIG instance", []*pb.GPUGrant{{Index: 2, Uuid: "MIG-ddd"}}, nil,
			"BANYAN_GPU_INDEX=2\nBANYAN_GPU_UUID=MIG-ddd\nCUDA_VISIBLE_DEVICES=MIG-ddd\nNVIDIA_VISIBLE_DEVICES=MIG-ddd\n"},
		{"two GPUs", []*pb.GPUGrant{{Index: 1, Uuid: "GPU-bbb"}, {Index: 0, Uuid: "GPU-aaa"}}, nil,
			"BANYAN_GPU_INDEX=1,0\nBANYAN_GPU_UUID=GPU-bbb,GPU-aaa\nCUDA_VISIBLE_DEVICES=GPU-bbb,GPU-aaa\nNVIDIA_VISIBLE_DEVICES=GPU-bbb,GPU-aaa\n"},
		{"no grant: the task's own kept", nil, map[string]string{"CUDA_VISIBLE_DEVICES": "7"},
			"CUDA_VISIBLE_DEVICES=7\nNVIDIA_VISIBLE_DEVICES=all\n"},
		{"no grant: nothing set", nil, nil, "NVIDIA_VISIBLE_DEVICES=all\n"},
	} {
		id := strings.ReplaceAll(tc.name, " ", "-")
		startTask(a, id, tc.grants, 0, tc.env, "sh", "-c", show)
		ev := waitFinished(t, a, id)
		if ev.StdoutTail != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, ev.StdoutTail, tc.want)
		}
	}
}

// offered renders the host cap and the sessions each GPU offers now, and
// says whether a device update is pending (consuming it).
func offered(a *Agent) (string, bool) {
	u := a.deviceUpdate()
	s := []string{fmt.Sprintf("sys%d", u.NvencSystemSessions)}
	for _, g := range u.Gpus {
		v := strings.TrimSpace(strings.Repeat("|", int(g.EncoderSessions)))
		if g.Unhealthy != "" {
			v += "!" + g.Unhealthy
		}
		s = append(s, "["+v+"]")
	}
	select {
	case <-a.devSignal:
		return strings.Join(s, " "), true
	default:
		return strings.Join(s, " "), false
	}
}

// TestSessionLimitRecovery: a session-limit exit on a device lowers its
// sessions to those in use there (and, on a per-system device, the host cap
// to those in use on all of them) and signals a device update; each NVENC
// success and each cool-down (on the injected clock) gives one back, up to
// the configured numbers.
func TestSessionLimitRecovery(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	ticks := make(chan time.Time)
	a := gpuAgent(t, Config{Clock: clock.Now, GPU: GPUConfig{Ticks: ticks, Cooldown: time.Minute}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.watchDevices(ctx) }()
	defer func() { cancel(); <-done }()
	// tick steps the watcher; the second send returns only once the first
	// tick has been handled.
	tick := func() { ticks <- time.Time{}; ticks <- time.Time{} }

	gpu1 := []*pb.GPUGrant{{Index: 1, Uuid: "GPU-bbb"}}
	check := func(step, want string, wantSignal bool) {
		t.Helper()
		got, sig := offered(a)
		if got != want || sig != wantSignal {
			t.Fatalf("%s: offered %s (update %v), want %s (update %v)", step, got, sig, want, wantSignal)
		}
	}
	check("start", "sys5 [|||] [|||] []", false)

	startTask(a, "hold", gpu1, 1, nil, "sleep", "60")
	check("one session held", "sys5 [|||] [|||] []", false)

	startTask(a, "refused", gpu1, 1, nil, "sh", "-c", "echo 'OpenEncodeSessionEx failed: out of memory (10)' >&2; exit 69")
	if ev := waitFinished(t, a, "refused"); ev.Outcome != process.OutcomeFailed || ev.ExitCode != 69 {
		t.Fatalf("refused: %+v", ev)
	}
	check("limit hit: only what is in use, on the device and the host", "sys1 [|||] [|] []", true)

	clock.Add(59 * time.Second)
	tick()
	check("59 s later: still lowered", "sys1 [|||] [|] []", false)

	startTask(a, "ok", gpu1, 1, nil, "true")
	waitFinished(t, a, "ok")
	check("an NVENC success: one more", "sys2 [|||] [||] []", true)

	startTask(a, "no-nvenc", gpu1, 0, nil, "true")
	waitFinished(t, a, "no-nvenc")
	check("a success without NVENC: no step", "sys2 [|||] [||] []", false)

	clock.Add(59 * time.Second)
	tick()
	check("cool-down counts from the last step", "sys2 [|||] [||] []", false)
	clock.Add(time.Second)
	tick()
	check("a cool-down: one more", "sys3 [|||] [|||] []", true)
	clock.Add(time.Hour)
	tick()
	check("the device is back; the host cap steps on", "sys4 [|||] [|||] []", true)
	clock.Add(time.Hour)
	tick()
	check("the host cap is back", "sys5 [|||] [|||] []", true)
	clock.Add(time.Hour)
	tick()
	check("never above the configured numbers", "sys5 [|||] [|||] []", false)

	a.cancelTasks(&pb.CancelTasks{Tasks: []*pb.TaskAssignment{{TaskId: "hold", Attempt: 1}}})
	waitFinished(t, a, "hold")
	startTask(a, "refused-2", gpu1, 1, nil, "sh", "-c", "exit 69")
	waitFinished(t, a, "refused-2")
	check("nothing in use: none offered, the host cap at 1", "sys1 [|||] [] []", true)
	hello := a.hello()
	if g := hello.Fingerprint.Gpus[1]; g.EncoderSessions != 0 || hello.Fingerprint.NvencSystemSessions != 1 || hello.Fingerprint.Capacity.Nvenc != 6 {
		t.Errorf("hello: gpu 1 %v, capacity %v", g, hello.Fingerprint.Capacity)
	}
	if a.cfg.Fingerprint.Gpus[1].EncoderSessions != 3 || a.cfg.Fingerprint.NvencSystemSessions != 5 {
		t.Error("the configured fingerprint was changed")
	}
}

// recorder is a session stream that records what the agent sends.
type recorder struct {
	pb.AgentService_SessionClient
	mu   sync.Mutex
	sent []*pb.AgentMessage
}

func (r *recorder) Send(m *pb.AgentMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, m)
	return nil
}

func (r *recorder) updates() []*pb.DeviceUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*pb.DeviceUpdate
	for _, m := range r.sent {
		if d := m.GetDevices(); d != nil {
			out = append(out, d)
		}
	}
	return out
}

// fakeNVML is a mock NVML over the fixture's GPUs whose GPU 0 encoder
// utilisation the test sets, and whose GPU 1 is lost once lostB is set; it
// has no events.
func fakeNVML(util, lostB *atomicInt) nvml.Interface {
	dev := func(uuid string) *mock.Device {
		return &mock.Device{
			GetEncoderUtilizationFunc: func() (uint32, uint32, nvml.Return) {
				if uuid == "GPU-aaa" {
					return uint32(util.get()), 167000, nvml.SUCCESS
				}
				return 0, 167000, nvml.SUCCESS
			},
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: 1 << 34}, nvml.SUCCESS },
		}
	}
	devs := map[string]*mock.Device{"GPU-aaa": dev("GPU-aaa"), "GPU-bbb": dev("GPU-bbb"), "GPU-ccc": dev("GPU-ccc")}
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		EventSetCreateFunc: func() (nvml.EventSet, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED },
		DeviceGetHandleByUUIDFunc: func(u string) (nvml.Device, nvml.Return) {
			if d, ok := devs[u]; ok && !(u == "GPU-bbb" && lostB.get() == 1) {
				return d, nvml.SUCCESS
			}
			return nil, nvml.ERROR_GPU_IS_LOST
		},
	}
}

type atomicInt struct {
	mu sync.Mutex
	v  int
}

func (i *atomicInt) get() int  { i.mu.Lock(); defer i.mu.Unlock(); return i.v }
func (i *atomicInt) set(v int) { i.mu.Lock(); defer i.mu.Unlock(); i.v = v }

// TestDeviceUpdates: with the monitor on, a device without a session cap
// whose encoder utilisation reaches the ceiling offers only the sessions in
// use there, and a GPU that falls off the bus is reported unhealthy; each change goes to
// the session as one DeviceUpdate, and the next hello carries the view.
func TestDeviceUpdates(t *testing.T) {
	util, lostB := &atomicInt{v: 20}, &atomicInt{}
	ticks := make(chan time.Time)
	a := gpuAgent(t, Config{GPU: GPUConfig{Watch: true, NVML: fakeNVML(util, lostB), Ticks: ticks}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.watchDevices(ctx) }()
	go func() {
		defer wg.Done()
		_ = a.sendLoop(ctx, rec, newEventQueue(), newSessionTerms(&pb.Welcome{HeartbeatMs: time.Hour.Milliseconds()}), &lastHeard{})
	}()
	defer func() { cancel(); wg.Wait() }()
	waitUpdates := func(n int) []*pb.DeviceUpdate {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if u := rec.updates(); len(u) >= n {
				return u
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("fewer than %d device updates: %v", n, rec.updates())
		return nil
	}
	tick := func() { ticks <- time.Time{}; ticks <- time.Time{} }

	tick()
	if u := rec.updates(); len(u) != 0 {
		t.Fatalf("updates without a change: %v", u)
	}
	startTask(a, "enc", []*pb.GPUGrant{{Index: 0, Uuid: "GPU-aaa"}}, 1, nil, "sleep", "60")
	util.set(95)
	tick()
	u := waitUpdates(1)[0]
	if g := u.Gpus[0]; g.EncoderSessions != 1 || g.EncoderUtilization != 95 || u.NvencSystemSessions != 5 {
		t.Fatalf("at the ceiling: %v", u)
	}
	util.set(60)
	tick()
	if g := waitUpdates(2)[1].Gpus[0]; g.EncoderSessions != 3 {
		t.Fatalf("below the ceiling: %v", g)
	}

	lostB.set(1)
	tick()
	if g := waitUpdates(3)[2].Gpus[1]; g.Unhealthy != "fell off the bus" {
		t.Fatalf("unhealthy: %v", g)
	}
	h := a.hello()
	if g := h.Fingerprint.Gpus; g[1].Unhealthy != "fell off the bus" || g[0].EncoderSessions != 3 || len(g[2].Mig) != 1 {
		t.Errorf("hello fingerprint: %v", h.Fingerprint)
	}
	a.cancelTasks(&pb.CancelTasks{Tasks: []*pb.TaskAssignment{{TaskId: "enc", Attempt: 1}}})
}
