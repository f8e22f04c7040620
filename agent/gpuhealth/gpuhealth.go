// Package gpuhealth watches an agent's GPUs through NVML: their health and
// their encoder utilisation. A Monitor's Run polls every device on each tick
// of a ticker its caller owns (so tests step time exactly) and waits for
// critical Xid events in between, and hands each round's findings to a
// callback as devices.Reports.
//
// A GPU is unhealthy when it fell off the bus (NVML answers
// ERROR_GPU_IS_LOST), when it reported a critical Xid error, or when NVML
// queries about it failed on FailLimit polls in a row. The first two are
// kept until the agent restarts (the device needs a reset); an NVML reason
// clears on the next poll that succeeds. Xids that applications cause
// (13, 31, 43, 45, 68, 109) are ignored, as the Kubernetes device plugin
// does: they say a program faulted, not that the GPU did.
//
// No NVML failure takes the agent down: without NVML, Run still calls back
// on every tick, with no reports.
package gpuhealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/banyan-sched/banyan/agent/devices"
	"github.com/banyan-sched/banyan/agent/internal/nvmlsafe"
)

// Defaults of Options.
const (
	// DefaultFailLimit is how many polls in a row must fail before a GPU
	// is marked unhealthy for NVML errors.
	DefaultFailLimit = 3
	// DefaultEventWait bounds one wait for NVML events, and so how long Run
	// takes to return after its context ends.
	DefaultEventWait = time.Second
)

// ReasonLost is the unhealthy reason of a GPU that fell off the bus.
const ReasonLost = "fell off the bus"

// applicationXids are the Xid errors that applications cause (their own
// faults, not the GPU's), ignored as the Kubernetes device plugin ignores
// them: 13 graphics engine exception, 31 GPU memory page fault, 43 GPU
// stopped processing, 45 preemptive cleanup, 68 video processor exception,
// 109 context switch timeout.
var applicationXids = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

// Critical says whether Xid code marks a GPU unhealthy.
func Critical(code uint64) bool { return !applicationXids[code] }

// Device names one GPU to watch.
type Device struct {
	// Index is the GPU's NVML index, UUID its UUID.
	Index int32
	UUID  string
	// Encodes says the GPU has NVENC: its encoder utilisation is read.
	Encodes bool
}

// Options configure a Monitor.
type Options struct {
	// NVML is the library (nil: the real one, nvml.New()).
	NVML nvml.Interface
	// Devices are the GPUs to watch.
	Devices []Device
	// FailLimit is DefaultFailLimit when 0.
	FailLimit int
	// EventWait is DefaultEventWait when 0.
	EventWait time.Duration
	// Logger is slog.Default() when nil.
	Logger *slog.Logger
}

// xidEvent is one critical Xid event (uuid "" when NVML did not say which
// device).
type xidEvent struct {
	uuid string
	code uint64
}

// Monitor watches GPUs. Create it with New; call Run once.
type Monitor struct {
	opts Options
	lib  nvml.Interface
	log  *slog.Logger

	// Owned by Run's goroutine.
	lost    []bool
	xid     []string
	fails   []int
	lastErr []error
}

// New returns a monitor for opts.
func New(opts Options) *Monitor {
	if opts.FailLimit <= 0 {
		opts.FailLimit = DefaultFailLimit
	}
	if opts.EventWait <= 0 {
		opts.EventWait = DefaultEventWait
	}
	lib := opts.NVML
	if lib == nil {
		lib = nvml.New()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	n := len(opts.Devices)
	return &Monitor{opts: opts, lib: lib, log: log, lost: make([]bool, n), xid: make([]string, n),
		fails: make([]int, n), lastErr: make([]error, n)}
}

// Run watches the GPUs until ctx ends: on each tick it polls them and calls
// report with what it found, and it does so at once when a critical Xid
// event arrives. report runs on Run's goroutine. Run starts one goroutine
// of its own (the event wait) and returns only after it has ended.
func (m *Monitor) Run(ctx context.Context, ticks <-chan time.Time, report func([]devices.Report)) {
	if err := nvmlsafe.Call0("init", m.lib.Init); err != nil {
		m.log.Info("NVML unavailable; GPUs are not monitored", "reason", err.Error())
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticks:
				report(nil)
			}
		}
	}
	defer func() {
		if err := nvmlsafe.Call0("shutdown", m.lib.Shutdown); err != nil {
			m.log.Debug("NVML shutdown failed", "err", err.Error())
		}
	}()
	events := make(chan xidEvent, 16)
	if set := m.register(); set != nil {
		ectx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.waitEvents(ectx, set, events)
		}()
		defer func() {
			cancel()
			wg.Wait()
			if err := nvmlsafe.Call0("event set free", set.Free); err != nil {
				m.log.Debug("NVML event set free failed", "err", err.Error())
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			report(m.Poll())
		case ev := <-events:
			m.markXid(ev)
			report(m.Poll())
		}
	}
}

// register creates an event set for critical Xid errors on every device
// that supports them; nil when none does or NVML cannot.
func (m *Monitor) register() nvml.EventSet {
	set, err := nvmlsafe.Call("event set create", m.lib.EventSetCreate)
	if err != nil {
		m.log.Info("NVML events unavailable; Xid errors are not watched", "reason", err.Error())
		return nil
	}
	registered := 0
	for _, d := range m.opts.Devices {
		dev, err := nvmlsafe.Call("device handle", func() (nvml.Device, nvml.Return) { return m.lib.DeviceGetHandleByUUID(d.UUID) })
		if err == nil {
			var types uint64
			if types, err = nvmlsafe.Call("supported events", dev.GetSupportedEventTypes); err == nil {
				if types&nvml.EventTypeXidCriticalError == 0 {
					err = errors.New("Xid events not supported")
				} else {
					err = nvmlsafe.Call0("register events", func() nvml.Return {
						return dev.RegisterEvents(nvml.EventTypeXidCriticalError, set)
					})
				}
			}
		}
		if err != nil {
			m.log.Warn("cannot watch GPU for Xid errors", "index", d.Index, "err", err.Error())
			continue
		}
		registered++
	}
	if registered == 0 {
		if err := nvmlsafe.Call0("event set free", set.Free); err != nil {
			m.log.Debug("NVML event set free failed", "err", err.Error())
		}
		return nil
	}
	return set
}

// waitEvents passes critical Xid events from set to out until ctx ends.
func (m *Monitor) waitEvents(ctx context.Context, set nvml.EventSet, out chan<- xidEvent) {
	ms := uint32(max(min(m.opts.EventWait.Milliseconds(), 1<<31), 1)) // 0 would not wait at all
	for ctx.Err() == nil {
		data, err := nvmlsafe.Call("event wait", func() (nvml.EventData, nvml.Return) { return set.Wait(ms) })
		if errors.Is(err, nvml.ERROR_TIMEOUT) {
			continue
		}
		if err != nil {
			m.log.Debug("NVML event wait failed", "err", err.Error())
			select { // do not spin on a broken event set
			case <-ctx.Done():
			case <-time.After(m.opts.EventWait):
			}
			continue
		}
		if data.EventType&nvml.EventTypeXidCriticalError == 0 || !Critical(data.EventData) {
			continue
		}
		ev := xidEvent{code: data.EventData}
		if data.Device != nil {
			ev.uuid, _ = nvmlsafe.Call("event device uuid", data.Device.GetUUID)
		}
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
}

// markXid records a critical Xid on its device; on every device when NVML
// did not say which (as the Kubernetes device plugin does).
func (m *Monitor) markXid(ev xidEvent) {
	reason := fmt.Sprintf("Xid %d", ev.code)
	known := false
	for k, d := range m.opts.Devices {
		if ev.uuid == d.UUID {
			m.xid[k], known = reason, true
		}
	}
	if !known {
		for k := range m.opts.Devices {
			m.xid[k] = reason
		}
	}
	m.log.Warn("GPU critical Xid error", "uuid", ev.uuid, "xid", ev.code)
}

// Poll queries every GPU once and returns what it found. Call it from one
// goroutine at a time (Run does).
func (m *Monitor) Poll() []devices.Report {
	out := make([]devices.Report, len(m.opts.Devices))
	for k, d := range m.opts.Devices {
		r := devices.Report{Index: d.Index}
		err := m.query(d, &r)
		switch {
		case errors.Is(err, nvml.ERROR_GPU_IS_LOST):
			if !m.lost[k] {
				m.log.Error("GPU fell off the bus", "index", d.Index, "uuid", d.UUID)
			}
			m.lost[k] = true
		case err != nil:
			m.fails[k]++
			m.lastErr[k] = err
		default:
			m.fails[k], m.lastErr[k] = 0, nil
		}
		switch {
		case m.lost[k]:
			r.Unhealthy = ReasonLost
		case m.xid[k] != "":
			r.Unhealthy = m.xid[k]
		case m.fails[k] >= m.opts.FailLimit:
			r.Unhealthy = "NVML: " + strings.TrimPrefix(m.lastErr[k].Error(), "nvml ")
		}
		out[k] = r
	}
	return out
}

// query reads one GPU: its encoder utilisation when it encodes, else its
// memory (a query every GPU answers), into r.
func (m *Monitor) query(d Device, r *devices.Report) error {
	dev, err := nvmlsafe.Call("device handle", func() (nvml.Device, nvml.Return) { return m.lib.DeviceGetHandleByUUID(d.UUID) })
	if err != nil {
		return err
	}
	if d.Encodes {
		u, err := nvmlsafe.Call("encoder utilization", func() (uint32, nvml.Return) {
			u, _, ret := dev.GetEncoderUtilization()
			return u, ret
		})
		if err == nil {
			r.Utilization, r.UtilKnown = int32(min(u, 100)), true
			return nil
		}
		if !errors.Is(err, nvml.ERROR_NOT_SUPPORTED) {
			return err
		}
	}
	_, err = nvmlsafe.Call("memory info", dev.GetMemoryInfo)
	return err
}
