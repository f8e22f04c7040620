package agent

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/proto"

	"github.com/banyan-sched/banyan/agent/devices"
	"github.com/banyan-sched/banyan/agent/gpuhealth"
	"github.com/banyan-sched/banyan/agent/process"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
)

// How the agent offers its GPUs.
//
// The agent keeps a live view of its GPUs (agent/devices) beside the
// fingerprint it started with: the NVENC sessions each device offers now
// and its health. A session-limit failure (a task granted a device exits
// with failure.ExitNVENCSessionLimit) lowers that device's sessions to those
// still in use there (on a per-system device, the host cap too); each NVENC
// task that then succeeds on it, and each cool-down without one, gives one
// back. With GPUConfig.Watch, a monitor
// (agent/gpuhealth) polls NVML for health and encoder utilisation; a device
// without a session cap stops offering new sessions while its utilisation
// is at or above the ceiling. Whenever what the agent advertises (a
// device's sessions or health) changes, the session sends a DeviceUpdate;
// every hello carries the current view. The capacity totals stay the
// fingerprint's.

// DefaultGPUPollInterval is how often GPUs are polled and cool-downs
// checked when GPUConfig.PollInterval is 0.
const DefaultGPUPollInterval = 5 * time.Second

// Environment variables that pin a task to its granted GPUs.
const (
	// EnvCUDAVisibleDevices and EnvNVIDIAVisibleDevices hold the granted
	// UUIDs, comma-separated (CUDA and the NVIDIA container runtime).
	EnvCUDAVisibleDevices   = "CUDA_VISIBLE_DEVICES"
	EnvNVIDIAVisibleDevices = "NVIDIA_VISIBLE_DEVICES"
	// EnvGPUIndex holds the granted GPUs' NVML indices, EnvGPUUUID their
	// UUIDs (the GPU's, or its MIG instance's), both comma-separated.
	EnvGPUIndex = "BANYAN_GPU_INDEX"
	EnvGPUUUID  = "BANYAN_GPU_UUID"
)

// GPUConfig configures how the agent watches and offers its GPUs.
type GPUConfig struct {
	// Watch runs the NVML health and utilisation monitor. Without it the
	// fingerprint's GPUs stay healthy and only session-limit failures
	// change what they offer.
	Watch bool
	// NVML is the library the monitor uses (nil: the real one).
	NVML nvml.Interface
	// PollInterval is DefaultGPUPollInterval when 0.
	PollInterval time.Duration
	// Ticks, when set, replaces the poll ticker (tests step time with it).
	Ticks <-chan time.Time
	// UtilCeiling is the encoder utilisation in percent at which a device
	// without a session cap offers no new session (devices.DefaultUtilCeiling
	// when 0).
	UtilCeiling int32
	// Cooldown is how long a device lowered by a session-limit failure
	// waits before it offers one session more (devices.DefaultCooldown when
	// 0).
	Cooldown time.Duration
}

// GPUEnv returns the environment that pins a task to grants: empty
// without grants. It is pure.
func GPUEnv(grants []*pb.GPUGrant) map[string]string {
	if len(grants) == 0 {
		return nil
	}
	idx := make([]string, len(grants))
	uuids := make([]string, len(grants))
	for i, g := range grants {
		idx[i], uuids[i] = strconv.Itoa(int(g.Index)), g.Uuid
	}
	u := strings.Join(uuids, ",")
	return map[string]string{EnvCUDAVisibleDevices: u, EnvNVIDIAVisibleDevices: u,
		EnvGPUIndex: strings.Join(idx, ","), EnvGPUUUID: u}
}

// gpuUse is what one run holds of its granted GPU.
type gpuUse struct {
	index int32 // the first grant's GPU
	nvenc int32 // NVENC sessions held there (0: none)
}

// newDeviceTable is the live view of the fingerprint's GPUs.
func newDeviceTable(fp *pb.Fingerprint, cfg GPUConfig) *devices.Table {
	return devices.New(fp.Gpus, fp.NvencSystemSessions, devices.Config{UtilCeiling: cfg.UtilCeiling, Cooldown: cfg.Cooldown})
}

// acquireLocked records that r starts on its granted GPU.
func (a *Agent) acquireLocked(r *run, t *pb.TaskAssignment) {
	if len(t.Gpus) == 0 {
		return
	}
	r.gpu = &gpuUse{index: t.Gpus[0].Index, nvenc: int32(min(t.Spec.GetResources().GetNvenc(), 1<<20))}
	if a.devices.Acquire(r.gpu.index, r.gpu.nvenc) {
		a.signalDevices()
	}
}

// releaseLocked records that r ended as ev says: its sessions are free; a
// session-limit failure lowers its GPU, an NVENC success raises it.
func (a *Agent) releaseLocked(r *run, ev *pb.TaskEvent) {
	u := r.gpu
	if u == nil {
		return
	}
	r.gpu = nil
	now := a.cfg.Clock()
	changed := a.devices.Release(u.index, u.nvenc)
	switch {
	case ev.Outcome == process.OutcomeFailed && ev.ExitCode == failure.ExitNVENCSessionLimit:
		changed = a.devices.SessionLimit(u.index, now) || changed
		a.log.Warn("NVENC session limit hit; offering fewer sessions on the GPU", "task", ev.TaskId, "gpu", u.index)
	case ev.Outcome == process.OutcomeSucceeded && u.nvenc > 0:
		changed = a.devices.Succeeded(u.index, now) || changed
	}
	if changed {
		a.signalDevices()
	}
}

// signalDevices tells the session that the advertised GPUs changed (it
// sends one DeviceUpdate however many changes wait).
func (a *Agent) signalDevices() {
	select {
	case a.devSignal <- struct{}{}:
	default:
	}
}

// deviceUpdate is the GPUs as the agent advertises them now.
func (a *Agent) deviceUpdate() *pb.DeviceUpdate {
	a.mu.Lock()
	defer a.mu.Unlock()
	gpus, sys := a.devices.GPUs()
	return &pb.DeviceUpdate{Gpus: gpus, NvencSystemSessions: sys}
}

// fingerprintLocked is the fingerprint with the GPUs as advertised now.
func (a *Agent) fingerprintLocked() *pb.Fingerprint {
	fp := a.cfg.Fingerprint
	if len(fp.Gpus) == 0 {
		return fp
	}
	fp = proto.Clone(fp).(*pb.Fingerprint)
	fp.Gpus, fp.NvencSystemSessions = a.devices.GPUs()
	return fp
}

// watchDevices polls the GPUs (with GPUConfig.Watch) and checks the
// cool-downs on every tick until ctx ends.
func (a *Agent) watchDevices(ctx context.Context) {
	cfg := a.cfg.GPU
	ticks := cfg.Ticks
	if ticks == nil {
		every := cfg.PollInterval
		if every <= 0 {
			every = DefaultGPUPollInterval
		}
		t := time.NewTicker(every)
		defer t.Stop()
		ticks = t.C
	}
	if !cfg.Watch {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticks:
				a.devicesObserved(nil)
			}
		}
	}
	var watch []gpuhealth.Device
	for _, g := range a.cfg.Fingerprint.Gpus {
		watch = append(watch, gpuhealth.Device{Index: g.Index, UUID: g.Uuid, Encodes: g.Encoders > 0})
	}
	gpuhealth.New(gpuhealth.Options{NVML: cfg.NVML, Devices: watch, Logger: a.log}).Run(ctx, ticks, a.devicesObserved)
}

// devicesObserved applies a poll's reports and the cool-downs.
func (a *Agent) devicesObserved(reports []devices.Report) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := a.devices.Observe(reports)
	changed = a.devices.Tick(a.cfg.Clock()) || changed
	if changed {
		a.signalDevices()
	}
}
