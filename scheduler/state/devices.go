package state

import (
	"fmt"
	"strconv"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/placement"
)

// GPU devices in the state: an agent's fingerprint lists its GPUs (and
// their MIG instances); placement puts a GPU ask on one device, or on N
// whole ones (scheduler/placement/devices.go), and the assignment records
// the grants. The state books each grant on its device, so what a device
// holds is known after a restart from the placed attempts alone.

// gibRound is GiB rounded to the nearest, for the gpu.memory_gib label.
func gibRound(b int64) int64 { return (b + 1<<29) >> 30 }

// devicesOf lists the devices of a fingerprint as placement sees them,
// without use: each GPU not in MIG mode, and each MIG instance of those
// that are. A GPU without a UUID cannot be pinned and is left out.
func devicesOf(fp *pb.Fingerprint) []placement.Device {
	var out []placement.Device
	for _, g := range fp.GetGpus() {
		if g.Uuid == "" {
			continue
		}
		capped := g.NvencLimit == pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM && fp.GetNvencSystemSessions() > 0
		labels := func(uuid string, mem int64) map[string]string {
			return map[string]string{placement.DeviceLabelModel: g.Model, placement.DeviceLabelUUID: uuid,
				placement.DeviceLabelIndex:     strconv.Itoa(int(g.Index)),
				placement.DeviceLabelMemoryGiB: strconv.FormatInt(gibRound(mem), 10)}
		}
		if !g.MigEnabled {
			out = append(out, placement.Device{Index: g.Index, UUID: g.Uuid, Labels: labels(g.Uuid, g.MemoryBytes),
				Memory: g.MemoryBytes, Sessions: int64(max(g.EncoderSessions, 0)), SystemCapped: capped,
				Unhealthy: g.Unhealthy})
			continue
		}
		for _, m := range g.Mig {
			if m.Uuid == "" {
				continue
			}
			l := labels(m.Uuid, m.MemoryBytes)
			l[placement.DeviceLabelMIGProfile] = m.Profile
			var sessions int64
			if m.Encoders > 0 {
				sessions = int64(max(g.EncoderSessions, 0))
			}
			out = append(out, placement.Device{Index: g.Index, UUID: m.Uuid, Labels: l, MIG: true,
				Memory: m.MemoryBytes, Sessions: sessions, SystemCapped: capped, Unhealthy: g.Unhealthy})
		}
	}
	return out
}

// MaxGPUs bounds the GPUs one agent may list (the largest hosts have 16).
const MaxGPUs = 256

// ValidateGPUs checks an agent's GPU list: at most MaxGPUs, no UUID listed
// twice, no negative amounts. It names the first problem. (A GPU without a
// UUID, which NVML failed to read, is allowed; it cannot be pinned, so no
// GPU work is placed on it.)
func ValidateGPUs(gpus []*pb.GPU) error {
	if len(gpus) > MaxGPUs {
		return fmt.Errorf("%d GPUs listed, more than the limit of %d", len(gpus), MaxGPUs)
	}
	seen := map[string]bool{}
	check := func(uuid string, mem int64, what string) error {
		if uuid != "" && seen[uuid] {
			return fmt.Errorf("%s: UUID %s listed twice", what, uuid)
		}
		seen[uuid] = true
		if mem < 0 {
			return fmt.Errorf("%s: negative memory", what)
		}
		return nil
	}
	for i, g := range gpus {
		what := fmt.Sprintf("GPU %d (entry %d)", g.Index, i)
		if err := check(g.Uuid, g.MemoryBytes, what); err != nil {
			return err
		}
		if g.EncoderSessions < 0 {
			return fmt.Errorf("%s: negative NVENC sessions", what)
		}
		if len(g.Mig) > MaxGPUs {
			return fmt.Errorf("%s: %d MIG instances listed", what, len(g.Mig))
		}
		for _, m := range g.Mig {
			if err := check(m.Uuid, m.MemoryBytes, what+" MIG instance"); err != nil {
				return err
			}
		}
	}
	return nil
}

// setFingerprint installs an agent's fingerprint and rebuilds its device
// list; what placed tasks hold stays booked.
func (a *Agent) setFingerprint(fp *pb.Fingerprint) {
	a.PB.Fingerprint = fp
	a.Capacity = fp.GetCapacity().Vector()
	a.devices = devicesOf(fp)
	if a.devUse == nil {
		a.devUse = map[string]placement.DeviceUse{}
	}
}

// node is the agent as placement sees it, with its devices' use.
func (a *Agent) node(id string) placement.Node {
	n := placement.Node{ID: id, Capacity: a.Capacity, Used: a.Used, Labels: a.PB.GetFingerprint().GetLabels(),
		Up: a.schedulable()}
	if len(a.devices) > 0 {
		n.Devices = make([]placement.Device, len(a.devices))
		for i, d := range a.devices {
			d.Use = a.devUse[d.UUID]
			n.Devices[i] = d
		}
		n.NVENCSystemCap, n.NVENCSystemUsed = int64(a.PB.GetFingerprint().GetNvencSystemSessions()), a.sysUsed
	}
	return n
}

// grantsOf converts an attempt's grants for placement.
func grantsOf(gs []*pb.GPUGrant) []placement.Grant {
	if len(gs) == 0 {
		return nil
	}
	out := make([]placement.Grant, len(gs))
	for i, g := range gs {
		out[i] = placement.Grant{Index: g.Index, UUID: g.Uuid}
	}
	return out
}

// grantsPB converts placement's grants for an attempt.
func grantsPB(gs []placement.Grant) []*pb.GPUGrant {
	if len(gs) == 0 {
		return nil
	}
	out := make([]*pb.GPUGrant, len(gs))
	for i, g := range gs {
		out[i] = &pb.GPUGrant{Index: g.Index, Uuid: g.UUID}
	}
	return out
}

// shareOf is what a task holds on each granted device: its whole ask on
// one device, or an even share of it over N whole devices.
func shareOf(t *Task) (mem, sessions int64, whole bool) {
	if g := t.Ask().GPUs; g > 0 {
		return (t.Ask().GPUMemoryBytes + g - 1) / g, (t.Ask().NVENC + g - 1) / g, true
	}
	return t.Ask().GPUMemoryBytes, t.Ask().NVENC, false
}

// holdDevices books t's grants on the agent's devices.
func (a *Agent) holdDevices(t *Task, grants []*pb.GPUGrant) {
	if len(grants) == 0 {
		return
	}
	mem, ses, whole := shareOf(t)
	for _, g := range grants {
		u := a.devUse[g.Uuid]
		u.Memory += mem
		u.Sessions += ses
		u.Tasks++
		u.Whole = u.Whole || whole
		a.devUse[g.Uuid] = u
		if a.systemCapped(g.Uuid) {
			a.sysUsed += ses
		}
	}
}

// releaseDevices undoes holdDevices.
func (a *Agent) releaseDevices(t *Task, grants []*pb.GPUGrant) {
	if len(grants) == 0 {
		return
	}
	mem, ses, whole := shareOf(t)
	for _, g := range grants {
		u, ok := a.devUse[g.Uuid]
		if !ok {
			continue
		}
		u.Memory, u.Sessions, u.Tasks = max(u.Memory-mem, 0), max(u.Sessions-ses, 0), max(u.Tasks-1, 0)
		if whole {
			u.Whole = false
		}
		if u.Tasks == 0 {
			delete(a.devUse, g.Uuid)
		} else {
			a.devUse[g.Uuid] = u
		}
		if a.systemCapped(g.Uuid) {
			a.sysUsed = max(a.sysUsed-ses, 0)
		}
	}
}

func (a *Agent) systemCapped(uuid string) bool {
	for i := range a.devices {
		if a.devices[i].UUID == uuid {
			return a.devices[i].SystemCapped
		}
	}
	return false
}

// unhealthyGrant returns the reason a granted device is unhealthy, or "".
func (a *Agent) unhealthyGrant(grants []*pb.GPUGrant) (string, string) {
	for _, g := range grants {
		for i := range a.devices {
			if d := &a.devices[i]; d.UUID == g.Uuid && d.Unhealthy != "" {
				return d.UUID, d.Unhealthy
			}
		}
	}
	return "", ""
}

// gpuUse lists what placed tasks hold on each device, in device order.
func (a *Agent) gpuUse() []*pb.GPUUse {
	var out []*pb.GPUUse
	for _, d := range a.devices {
		if u, ok := a.devUse[d.UUID]; ok {
			out = append(out, &pb.GPUUse{Index: d.Index, Uuid: d.UUID, MemoryBytes: u.Memory,
				Nvenc: int32(min(u.Sessions, 1<<31-1)), Tasks: int32(u.Tasks), Whole: u.Whole})
		}
	}
	return out
}

// applyAgentDevices replaces an up agent's GPU list. Tasks running on a
// device that is now unhealthy go back to the queue without using a retry
// (class device_lost) and are cancelled on the agent.
func (s *State) applyAgentDevices(now int64, c *fsmpb.AgentDevices, r *Result) {
	ag, ok := s.agents[c.AgentId]
	if !ok || c.Update == nil {
		r.Err = fmt.Errorf("%w: %s", ErrAgentNotFound, c.AgentId)
		return
	}
	s.wAgent(ag)
	fp := clone(ag.PB.GetFingerprint())
	if fp == nil {
		fp = &pb.Fingerprint{}
	}
	fp.Gpus, fp.NvencSystemSessions = c.Update.Gpus, c.Update.NvencSystemSessions
	ag.setFingerprint(fp)
	s.agentChanged(c.AgentId)
	s.noteAgent(ag, KindDevices, ag.PB.State, "")
	for _, id := range sortedKeys(ag.Running) {
		t := s.task(id)
		uuid, why := ag.unhealthyGrant(t.current().GetGpus())
		if uuid == "" {
			continue
		}
		reason := fmt.Sprintf("GPU %s of agent %s is unhealthy: %s", uuid, c.AgentId, why)
		s.wTask(t)
		t.current().Error = reason
		r.Cancels = append(r.Cancels, Cancel{AgentID: c.AgentId, TaskID: id, Attempt: t.Attempt(), Reason: reason})
		s.finish(now, t, failure.OutcomeDeviceLost, failure.DeviceLost, r)
	}
}

// sessionLimited handles an attempt that hit the NVENC session limit: the
// work is sound, so no retry is used. A task with a fallback hands over to
// it at once (the CPU encode); one without goes back to the queue as a lost
// attempt does.
func (s *State) sessionLimited(now int64, t *Task, r *Result) {
	if fb := t.spec.GetFallback(); fb != nil {
		if _, taken := s.taskNames(s.job(t.PB.JobId))[fb.Name]; !taken {
			s.setTaskState(t, pb.TaskState_TASK_STATE_FAILED)
			s.startFallback(now, t)
			return
		}
	}
	s.lostOrFail(now, t, r)
}
