package gpuhealth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/banyan-sched/banyan/agent/devices"
)

// fakeHost is a mock NVML whose devices' answers a test changes between
// ticks (under mu) and whose event set delivers the events a test sends.
type fakeHost struct {
	mu      sync.Mutex
	lost    map[string]bool
	fail    map[string]nvml.Return
	util    map[string]uint32
	events  chan nvml.EventData
	devs    map[string]*mock.Device
	freed   bool
	noXid   map[string]bool
	initRet nvml.Return
}

func newFakeHost(uuids ...string) *fakeHost {
	h := &fakeHost{lost: map[string]bool{}, fail: map[string]nvml.Return{}, util: map[string]uint32{},
		events: make(chan nvml.EventData), devs: map[string]*mock.Device{}, noXid: map[string]bool{}}
	for _, u := range uuids {
		h.devs[u] = &mock.Device{
			GetUUIDFunc: func() (string, nvml.Return) { return u, nvml.SUCCESS },
			GetEncoderUtilizationFunc: func() (uint32, uint32, nvml.Return) {
				h.mu.Lock()
				defer h.mu.Unlock()
				if r, ok := h.fail[u]; ok {
					return 0, 0, r
				}
				return h.util[u], 167000, nvml.SUCCESS
			},
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: 1 << 34}, nvml.SUCCESS },
			GetSupportedEventTypesFunc: func() (uint64, nvml.Return) {
				if h.noXid[u] {
					return nvml.EventTypeSingleBitEccError, nvml.SUCCESS
				}
				return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError, nvml.SUCCESS
			},
			RegisterEventsFunc: func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS },
		}
	}
	return h
}

func (h *fakeHost) lib() *mock.Interface {
	return &mock.Interface{
		InitFunc:     func() nvml.Return { return h.initRet },
		ShutdownFunc: func() nvml.Return { return nvml.SUCCESS },
		DeviceGetHandleByUUIDFunc: func(u string) (nvml.Device, nvml.Return) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.lost[u] {
				return nil, nvml.ERROR_GPU_IS_LOST
			}
			d, ok := h.devs[u]
			if !ok {
				return nil, nvml.ERROR_NOT_FOUND
			}
			return d, nvml.SUCCESS
		},
		EventSetCreateFunc: func() (nvml.EventSet, nvml.Return) {
			return &mock.EventSet{
				WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
					select {
					case e := <-h.events:
						return e, nvml.SUCCESS
					case <-time.After(time.Duration(ms) * time.Millisecond):
						return nvml.EventData{}, nvml.ERROR_TIMEOUT
					}
				},
				FreeFunc: func() nvml.Return { h.mu.Lock(); h.freed = true; h.mu.Unlock(); return nvml.SUCCESS },
			}, nvml.SUCCESS
		},
	}
}

func (h *fakeHost) set(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
}

// render shows reports as "index:util:reason" (util "-" when unknown).
func render(rs []devices.Report) string {
	s := ""
	for _, r := range rs {
		u := "-"
		if r.UtilKnown {
			u = fmt.Sprint(r.Utilization)
		}
		s += fmt.Sprintf("[%d:%s:%s]", r.Index, u, r.Unhealthy)
	}
	return s
}

// harness runs a monitor over h and returns a step function: tick once
// (or, with tick false, wait for a report an event causes) and return the
// rendered report.
func harness(t *testing.T, h *fakeHost, devs []Device) (step func(tick bool) string, stop func()) {
	t.Helper()
	m := New(Options{NVML: h.lib(), Devices: devs, EventWait: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ticks := make(chan time.Time)
	reports := make(chan []devices.Report)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, ticks, func(r []devices.Report) { reports <- r })
	}()
	step = func(tick bool) string {
		t.Helper()
		if tick {
			ticks <- time.Time{}
		}
		select {
		case r := <-reports:
			return render(r)
		case <-time.After(10 * time.Second):
			t.Fatal("no report")
			return ""
		}
	}
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	return step, stop
}

func TestMonitorHealth(t *testing.T) {
	h := newFakeHost("GPU-a", "GPU-b", "GPU-c", "GPU-d")
	h.noXid["GPU-d"] = true
	h.util["GPU-a"], h.util["GPU-b"] = 35, 92
	step, stop := harness(t, h, []Device{{0, "GPU-a", true}, {1, "GPU-b", true}, {2, "GPU-c", false}, {3, "GPU-d", true}})

	check := func(name string, tick bool, want string) {
		t.Helper()
		if got := step(tick); got != want {
			t.Fatalf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	check("all healthy", true, "[0:35:][1:92:][2:-:][3:0:]")

	// An application's Xid is ignored: no report comes from it, and the
	// next tick shows every GPU healthy.
	h.events <- nvml.EventData{Device: h.devs["GPU-b"], EventType: nvml.EventTypeXidCriticalError, EventData: 13}
	h.events <- nvml.EventData{Device: h.devs["GPU-b"], EventType: nvml.EventTypeSingleBitEccError, EventData: 79}
	check("Xid 13 ignored", true, "[0:35:][1:92:][2:-:][3:0:]")

	h.events <- nvml.EventData{Device: h.devs["GPU-b"], EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	check("Xid 79 reported at once", false, "[0:35:][1:92:Xid 79][2:-:][3:0:]")
	check("Xid is kept", true, "[0:35:][1:92:Xid 79][2:-:][3:0:]")

	h.set(func() { h.lost["GPU-c"] = true })
	check("fell off the bus", true, "[0:35:][1:92:Xid 79][2:-:fell off the bus][3:0:]")
	h.set(func() { h.lost["GPU-c"] = false })
	check("stays lost", true, "[0:35:][1:92:Xid 79][2:-:fell off the bus][3:0:]")

	h.set(func() { h.fail["GPU-a"] = nvml.ERROR_UNKNOWN })
	check("one failure", true, "[0:-:][1:92:Xid 79][2:-:fell off the bus][3:0:]")
	check("two failures", true, "[0:-:][1:92:Xid 79][2:-:fell off the bus][3:0:]")
	// (The mock library names a Return by its constant; the real one says "Unknown Error".)
	check("three failures", true, "[0:-:NVML: encoder utilization: ERROR_UNKNOWN][1:92:Xid 79][2:-:fell off the bus][3:0:]")
	h.set(func() { delete(h.fail, "GPU-a"); h.util["GPU-a"] = 50 })
	check("NVML recovers", true, "[0:50:][1:92:Xid 79][2:-:fell off the bus][3:0:]")

	h.set(func() { h.fail["GPU-a"] = nvml.ERROR_NOT_SUPPORTED })
	check("utilisation not supported is no failure", true, "[0:-:][1:92:Xid 79][2:-:fell off the bus][3:0:]")
	check("not even thrice", true, "[0:-:][1:92:Xid 79][2:-:fell off the bus][3:0:]")
	check("or more", true, "[0:-:][1:92:Xid 79][2:-:fell off the bus][3:0:]")

	h.set(func() { h.fail["GPU-d"] = nvml.ERROR_GPU_IS_LOST })
	check("lost on a query", true, "[0:-:][1:92:Xid 79][2:-:fell off the bus][3:-:fell off the bus]")

	// An Xid whose device NVML does not name marks every GPU.
	h.events <- nvml.EventData{EventType: nvml.EventTypeXidCriticalError, EventData: 48}
	check("Xid without a device", false, "[0:-:Xid 48][1:92:Xid 48][2:-:fell off the bus][3:-:fell off the bus]")
	stop()
	if !h.freed {
		t.Error("event set not freed")
	}
}

// TestMonitorWithoutNVML: without the library Run still calls back on each
// tick (with nothing), so the agent's cool-downs keep running.
func TestMonitorWithoutNVML(t *testing.T) {
	h := newFakeHost("GPU-a")
	h.initRet = nvml.ERROR_LIBRARY_NOT_FOUND
	step, stop := harness(t, h, []Device{{0, "GPU-a", true}})
	for range 3 {
		if got := step(true); got != "" {
			t.Fatalf("report %q without NVML", got)
		}
	}
	stop()
}

// TestMonitorPanickingLibrary: a library whose every call panics (symbols
// missing) never takes the monitor down.
func TestMonitorPanickingLibrary(t *testing.T) {
	m := New(Options{NVML: &mock.Interface{InitFunc: func() nvml.Return { return nvml.SUCCESS }},
		Devices: []Device{{0, "GPU-a", true}}, EventWait: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ticks := make(chan time.Time)
	got := make(chan []devices.Report)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx, ticks, func(r []devices.Report) { got <- r }) }()
	for i := range DefaultFailLimit {
		ticks <- time.Time{}
		r := <-got
		if want := i == DefaultFailLimit-1; (r[0].Unhealthy != "") != want {
			t.Errorf("poll %d: %+v", i, r)
		}
	}
	cancel()
	<-done
}

func TestCritical(t *testing.T) {
	for code, want := range map[uint64]bool{13: false, 31: false, 43: false, 45: false, 68: false, 109: false,
		48: true, 63: true, 64: true, 74: true, 79: true, 94: true, 95: true, 119: true} {
		if Critical(code) != want {
			t.Errorf("Critical(%d) = %v", code, !want)
		}
	}
}
