package placement

import (
	"fmt"
	"strings"

	"github.com/banyan-sched/banyan/pool"
)

// GPU devices.
//
// A node that lists its Devices has its GPU asks placed on them, not on
// the node's totals: a task's gpu_memory and nvenc must fit on a single
// device, and gpu=N takes N whole devices. A node without a device list
// (an older agent, a simulated one) is judged on its totals as before.
//
// The rules, one device at a time:
//
//   - gpu=0 with gpu_memory and/or nvenc: a share of one device. The device
//     must be healthy, not held whole, have that much memory and that many
//     sessions free, and match every device constraint.
//   - gpu=N (N >= 1): N whole devices, each healthy and without any share
//     on it, each with at least gpu_memory/N memory and nvenc/N sessions
//     (rounded up). The task holds them alone until it ends.
//   - A device constraint is one on a label that starts with "gpu."
//     (gpu.model, gpu.uuid, gpu.index, gpu.memory_gib, gpu.mig_profile).
//     For a GPU ask on a node with devices it is checked against each
//     device's labels instead of the node's, so "gpu.model=L4" picks the L4
//     of a host with mixed cards.
//   - MIG instances are devices of their own; only an ask that names a
//     profile (gpu.mig_profile=1g.10gb, or exists(gpu.mig_profile)) gets
//     one, and a GPU in MIG mode takes work only through its instances.
//   - NVENC sessions on devices whose driver caps sessions per system
//     (SystemCapped) count against the node's NVENCSystemCap as well.
//
// Which device, among those that fit (ties go to the lower position in the
// node's device list):
//
//   - NVENC work (nvenc > 0) spreads: the device whose encoder is least
//     used (sessions used over sessions offered) wins, so ten chunks on a
//     four-GPU host run on all four encoders;
//   - other GPU work packs: the device with the least memory left after the
//     placement wins (best fit), keeping whole devices free for big asks;
//   - whole devices are taken in list order.

// DeviceLabelPrefix starts the labels that device constraints match.
const DeviceLabelPrefix = "gpu."

// Device label keys, set on each Device's Labels by whoever builds Nodes.
const (
	DeviceLabelModel      = "gpu.model"
	DeviceLabelUUID       = "gpu.uuid"
	DeviceLabelIndex      = "gpu.index"
	DeviceLabelMemoryGiB  = "gpu.memory_gib"
	DeviceLabelMIGProfile = "gpu.mig_profile"
)

// IsDeviceLabel reports whether a constraint on label is a device constraint.
func IsDeviceLabel(label string) bool { return strings.HasPrefix(label, DeviceLabelPrefix) }

// Device is one GPU, or one MIG instance, of a node.
type Device struct {
	// Index is the GPU's index on its host (for a MIG instance, its GPU's).
	Index int32
	// UUID names the device and is what a task is pinned to; unique within
	// a node.
	UUID string
	// Labels are matched by device constraints.
	Labels map[string]string
	// MIG is true for a MIG instance.
	MIG bool
	// Memory and Sessions are what the device offers in all (Sessions: the
	// NVENC sessions it takes now; 0 for no NVENC).
	Memory, Sessions int64
	// SystemCapped says the device's sessions also count against the
	// node's NVENCSystemCap.
	SystemCapped bool
	// Unhealthy, when set, keeps all new work off the device.
	Unhealthy string
	// Use is what placed tasks hold on the device.
	Use DeviceUse
}

// DeviceUse is what placed tasks hold on one device.
type DeviceUse struct {
	Memory, Sessions int64
	// Tasks counts the tasks placed on the device.
	Tasks int
	// Whole is true while one task holds the device whole (gpu >= 1).
	Whole bool
}

// Grant is one device given to a task: the GPU's index and the UUID the
// task is pinned to.
type Grant struct {
	Index int32
	UUID  string
}

// devState is one device inside a Placer.
type devState struct {
	Device
	pos int // position in the node's list, for deterministic ties
}

// needsDevice reports whether ask is placed on a device: it asks a GPU
// resource, or names a device with a positive device constraint.
func needsDevice(ask *Ask) bool {
	if hasGPU(ask.Resources) {
		return true
	}
	for _, c := range ask.Constraints {
		if IsDeviceLabel(c.Label) && (c.Op == OpEqual || c.Op == "" || c.Op == OpExists) {
			return true
		}
	}
	return false
}

// wantsMIG reports whether ask names a MIG profile.
func wantsMIG(cs []Constraint) bool {
	for _, c := range cs {
		if c.Label == DeviceLabelMIGProfile && (c.Op == OpEqual || c.Op == "" || c.Op == OpExists) {
			return true
		}
	}
	return false
}

// matchesDevice checks the device constraints of cs against d.
func matchesDevice(d *Device, cs []Constraint) bool {
	for _, c := range cs {
		if IsDeviceLabel(c.Label) && !c.Matches(d.Labels) {
			return false
		}
	}
	return true
}

func ceilDiv(a, b int64) int64 {
	if b <= 0 {
		return a
	}
	return (a + b - 1) / b
}

// deviceShort says why device d cannot take a share of a (or a whole-device
// part when whole), or "" if it can. sysFree is the node's free
// system-capped sessions (-1: no cap).
func deviceShort(d *Device, a *[numRes]int64, mig bool, cs []Constraint, sysFree int64, whole bool, n int64) string {
	switch {
	case d.Unhealthy != "":
		return "unhealthy (" + d.Unhealthy + ")"
	case d.MIG != mig:
		if mig {
			return "not a MIG instance"
		}
		return "a MIG instance"
	case !matchesDevice(d, cs):
		return "does not match " + joinConstraints(deviceConstraints(cs))
	case d.Use.Whole:
		return "held whole by a task"
	case whole && d.Use.Tasks > 0:
		return fmt.Sprintf("shared by %d task(s)", d.Use.Tasks)
	}
	mem, ses := a[3], a[4]
	if whole {
		mem, ses = ceilDiv(a[3], n), ceilDiv(a[4], n)
	}
	if free := d.Memory - d.Use.Memory; mem > free {
		return fmt.Sprintf("%s free of %s GPU memory needed", pool.FormatQuantity("gpu_memory", max(free, 0)),
			pool.FormatQuantity("gpu_memory", mem))
	}
	if free := d.Sessions - d.Use.Sessions; ses > free {
		return fmt.Sprintf("%d of %d NVENC sessions free", max(free, 0), ses)
	}
	if d.SystemCapped && sysFree >= 0 && ses > sysFree {
		return fmt.Sprintf("the host's NVENC session cap leaves %d of %d", max(sysFree, 0), ses)
	}
	return ""
}

func deviceConstraints(cs []Constraint) []Constraint {
	var out []Constraint
	for _, c := range cs {
		if IsDeviceLabel(c.Label) {
			out = append(out, c)
		}
	}
	return out
}

// sysFree is the node's free system-capped NVENC sessions, -1 without a cap.
func (n *nodeState) sysFree() int64 {
	if n.sysCap <= 0 {
		return -1
	}
	return n.sysCap - n.sysUsed
}

// pickDevices chooses the devices of n for ask (vector a) by the rules
// above, returning their positions; ok is false when they do not fit.
func (n *nodeState) pickDevices(ask *Ask, a *[numRes]int64) (picks []int, ok bool) {
	mig := wantsMIG(ask.Constraints)
	sys := n.sysFree()
	if g := a[2]; g > 0 {
		for i := range n.devs {
			if deviceShort(&n.devs[i].Device, a, mig, ask.Constraints, sys, true, g) == "" {
				picks = append(picks, i)
				if int64(len(picks)) == g {
					return picks, true
				}
			}
		}
		return nil, false
	}
	best := -1
	for i := range n.devs {
		d := &n.devs[i].Device
		if deviceShort(d, a, mig, ask.Constraints, sys, false, 1) != "" {
			continue
		}
		if best < 0 || betterDevice(d, &n.devs[best].Device, a) {
			best = i
		}
	}
	if best < 0 {
		return nil, false
	}
	return []int{best}, true
}

// betterDevice reports whether d beats cur for a share of a.
func betterDevice(d, cur *Device, a *[numRes]int64) bool {
	if a[4] > 0 { // spread NVENC work: lower encoder use wins
		l, r := d.Use.Sessions*cur.Sessions, cur.Use.Sessions*d.Sessions
		if l != r {
			return l < r
		}
		return d.Use.Tasks < cur.Use.Tasks
	}
	// pack: least memory left after the placement wins
	return d.Memory-d.Use.Memory < cur.Memory-cur.Use.Memory
}

// takeDevices books a on the devices at picks and returns the grants.
func (n *nodeState) takeDevices(picks []int, a *[numRes]int64) []Grant {
	grants := make([]Grant, len(picks))
	whole := a[2] > 0
	for k, i := range picks {
		d := &n.devs[i].Device
		mem, ses := a[3], a[4]
		if whole {
			mem, ses = ceilDiv(a[3], a[2]), ceilDiv(a[4], a[2])
			d.Use.Whole = true
		}
		d.Use.Memory += mem
		d.Use.Sessions += ses
		d.Use.Tasks++
		if d.SystemCapped {
			n.sysUsed += ses
		}
		grants[k] = Grant{Index: d.Index, UUID: d.UUID}
	}
	return grants
}

// releaseDevices undoes takeDevices for the granted devices of n.
func (n *nodeState) releaseDevices(grants []Grant, r pool.Resources) {
	a := vec(r)
	whole := a[2] > 0
	for _, g := range grants {
		for i := range n.devs {
			d := &n.devs[i].Device
			if d.UUID != g.UUID {
				continue
			}
			mem, ses := a[3], a[4]
			if whole {
				mem, ses = ceilDiv(a[3], a[2]), ceilDiv(a[4], a[2])
				d.Use.Whole = false
			}
			d.Use.Memory = max(d.Use.Memory-mem, 0)
			d.Use.Sessions = max(d.Use.Sessions-ses, 0)
			d.Use.Tasks = max(d.Use.Tasks-1, 0)
			if d.SystemCapped {
				n.sysUsed = max(n.sysUsed-ses, 0)
			}
		}
	}
}

// CheckGrants says whether ask may take exactly the granted devices of
// node now: the state machine's check of a placement it is about to
// commit. A node without devices takes no grants; a GPU ask on a node
// with devices needs them. It returns nil when the grants fit.
func CheckGrants(node Node, ask Ask, grants []Grant) error {
	if len(node.Devices) == 0 || !needsDevice(&ask) {
		if len(grants) > 0 {
			return fmt.Errorf("agent %s: %d device grant(s) for an ask that takes no device", node.ID, len(grants))
		}
		return nil
	}
	a := vec(ask.Resources)
	want := int64(1)
	if a[2] > 0 {
		want = a[2]
	}
	if int64(len(grants)) != want {
		return fmt.Errorf("agent %s: %d device grant(s), want %d", node.ID, len(grants), want)
	}
	ns := nodeState{sysCap: node.NVENCSystemCap, sysUsed: node.NVENCSystemUsed}
	mig := wantsMIG(ask.Constraints)
	for k, g := range grants {
		found := false
		for i := range node.Devices {
			d := &node.Devices[i]
			if d.UUID != g.UUID || d.Index != g.Index {
				continue
			}
			for _, prev := range grants[:k] {
				if prev.UUID == g.UUID {
					return fmt.Errorf("agent %s: device %s granted twice", node.ID, g.UUID)
				}
			}
			if why := deviceShort(d, &a, mig, ask.Constraints, ns.sysFree(), a[2] > 0, want); why != "" {
				return fmt.Errorf("agent %s GPU %d (%s): %s", node.ID, d.Index, d.UUID, why)
			}
			found = true
		}
		if !found {
			return fmt.Errorf("agent %s has no device %s (GPU %d)", node.ID, g.UUID, g.Index)
		}
	}
	// Several whole devices may share a system cap: check the sum.
	if a[2] > 1 && ns.sysFree() >= 0 {
		var capped int64
		for _, g := range grants {
			for i := range node.Devices {
				if node.Devices[i].UUID == g.UUID && node.Devices[i].SystemCapped {
					capped += ceilDiv(a[4], a[2])
				}
			}
		}
		if capped > ns.sysFree() {
			return fmt.Errorf("agent %s: the host's NVENC session cap leaves %d of %d", node.ID, ns.sysFree(), capped)
		}
	}
	return nil
}

// explainDevices says, for a node whose totals fit ask but whose devices
// may not, why each device does not: "" if some device (set) fits. now
// judges free capacity; otherwise the devices are judged idle. mismatched
// counts the devices ruled out by kind or constraint rather than by room,
// so that a caller can name the node that came closest.
func explainDevices(n *Node, ask Ask, now bool) (msg string, mismatched int) {
	if len(n.Devices) == 0 || !needsDevice(&ask) {
		return "", 0
	}
	ns := nodeState{id: n.ID, sysCap: n.NVENCSystemCap}
	if now {
		ns.sysUsed = n.NVENCSystemUsed
	}
	for i, d := range n.Devices {
		if !now {
			d.Use = DeviceUse{}
		}
		ns.devs = append(ns.devs, devState{Device: d, pos: i})
	}
	a := vec(ask.Resources)
	if _, ok := ns.pickDevices(&ask, &a); ok {
		return "", 0
	}
	mig := wantsMIG(ask.Constraints)
	whole, parts := a[2] > 0, max(a[2], 1)
	var reasons []string
	for i := range ns.devs {
		d := &ns.devs[i].Device
		why := deviceShort(d, &a, mig, ask.Constraints, ns.sysFree(), whole, parts)
		if why == "" {
			continue
		}
		if d.MIG != mig || !matchesDevice(d, ask.Constraints) {
			mismatched++
		}
		reasons = append(reasons, fmt.Sprintf("GPU %d: %s", d.Index, why))
		if d.MIG {
			reasons[len(reasons)-1] = fmt.Sprintf("GPU %d MIG %s: %s", d.Index, d.Labels[DeviceLabelMIGProfile], why)
		}
	}
	if len(reasons) == 0 {
		return fmt.Sprintf("%s has fewer than %d free devices", n.ID, parts), 0
	}
	return n.ID + ": " + strings.Join(reasons, "; "), mismatched
}
