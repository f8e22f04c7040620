package fingerprint

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
)

const gib = int64(1) << 30

// logBuffer is a concurrency-safe sink for a test logger.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines(level string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, "level="+level) {
			out = append(out, line)
		}
	}
	return out
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// fakeGPU describes one mock device.
type fakeGPU struct {
	name        string
	memory      uint64
	encoderCap  int
	encoderRet  nvml.Return
	migMode     int
	migRet      nvml.Return
	migSlots    int
	migPopulate int
}

func (f fakeGPU) device(i int) *mock.Device {
	return &mock.Device{
		GetNameFunc:       func() (string, nvml.Return) { return f.name, nvml.SUCCESS },
		GetUUIDFunc:       func() (string, nvml.Return) { return "GPU-" + strconv.Itoa(i), nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: f.memory}, nvml.SUCCESS },
		GetEncoderCapacityFunc: func(t nvml.EncoderType) (int, nvml.Return) {
			return f.encoderCap, f.encoderRet
		},
		GetMigModeFunc: func() (int, int, nvml.Return) { return f.migMode, f.migMode, f.migRet },
		GetMaxMigDeviceCountFunc: func() (int, nvml.Return) {
			return f.migSlots, nvml.SUCCESS
		},
		GetMigDeviceHandleByIndexFunc: func(j int) (nvml.Device, nvml.Return) {
			if j < f.migPopulate {
				return &mock.Device{}, nvml.SUCCESS
			}
			return nil, nvml.ERROR_NOT_FOUND
		},
	}
}

func fakeNVML(gpus ...fakeGPU) (*mock.Interface, *int) {
	shutdowns := 0
	devs := make([]nvml.Device, len(gpus))
	for i, g := range gpus {
		devs[i] = g.device(i)
	}
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { shutdowns++; return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}, &shutdowns
}

func TestCollectCPUOnly(t *testing.T) {
	for _, tc := range []struct {
		name string
		lib  nvml.Interface
	}{
		{"library missing", &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}},
		{"driver not loaded", &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}},
		{"init panics", &mock.Interface{InitFunc: func() nvml.Return { panic("symbol lookup failed") }}},
		{"no devices", func() nvml.Interface { l, _ := fakeNVML(); return l }()},
		{"count fails", &mock.Interface{
			InitFunc:           func() nvml.Return { return nvml.SUCCESS },
			ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
			DeviceGetCountFunc: func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN },
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := newLogger()
			fp, err := Collect(context.Background(), Options{NVML: tc.lib, Logger: log})
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			if len(fp.Gpus) != 0 {
				t.Errorf("gpus = %d, want 0", len(fp.Gpus))
			}
			if got := fp.Labels[LabelEncoder]; got != EncoderCPU {
				t.Errorf("encoder label = %q, want cpu", got)
			}
			for _, k := range []string{LabelGPUModel, LabelGPUCount, LabelGPUMemoryGiB} {
				if _, ok := fp.Labels[k]; ok {
					t.Errorf("label %s set on CPU-only host", k)
				}
			}
			c := fp.Capacity
			if c.Gpus != 0 || c.GpuMemoryBytes != 0 || c.Nvenc != 0 {
				t.Errorf("capacity has GPU resources: %v", c)
			}
			if info := logs.lines("INFO"); len(info) != 1 || !strings.Contains(info[0], "CPU-only") {
				t.Errorf("want exactly one CPU-only info line, got %q", info)
			}
		})
	}
}

func TestCollectGPUs(t *testing.T) {
	for _, tc := range []struct {
		name        string
		gpus        []fakeGPU
		sessions    int
		reserve     pool.Resources
		labels      map[string]string
		wantGPUs    []*banyanv1.GPU
		wantCap     pool.Resources // GPU part only
		wantEncoder string
		wantModel   string
		wantMemGiB  string
	}{
		{
			name: "one with NVENC one without",
			gpus: []fakeGPU{
				{name: "NVIDIA L4", memory: uint64(23 * gib), encoderCap: 100, migRet: nvml.ERROR_NOT_SUPPORTED},
				{name: "NVIDIA H100 80GB HBM3", memory: uint64(80 * gib), encoderRet: nvml.ERROR_NOT_SUPPORTED, migMode: 0},
			},
			wantGPUs: []*banyanv1.GPU{
				{Index: 0, Uuid: "GPU-0", Model: "NVIDIA L4", MemoryBytes: 23 * gib, EncoderSessions: DefaultNVENCSessionsPerGPU},
				{Index: 1, Uuid: "GPU-1", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 80 * gib},
			},
			wantCap:     pool.Resources{GPUs: 2, GPUMemoryBytes: 103 * gib, NVENC: DefaultNVENCSessionsPerGPU},
			wantEncoder: EncoderNVENC,
			wantModel:   "NVIDIA L4",
			wantMemGiB:  "23",
		},
		{
			name: "custom sessions, reserve and label override",
			gpus: []fakeGPU{
				{name: "NVIDIA L40S", memory: uint64(48 * gib), encoderCap: 50},
				{name: "NVIDIA L40S", memory: uint64(48 * gib), encoderCap: 100},
			},
			sessions: 3,
			reserve:  pool.Resources{NVENC: 1, GPUMemoryBytes: 8 * gib},
			labels:   map[string]string{LabelEncoder: "forced", "site": "ams"},
			wantGPUs: []*banyanv1.GPU{
				{Index: 0, Uuid: "GPU-0", Model: "NVIDIA L40S", MemoryBytes: 48 * gib, EncoderSessions: 3},
				{Index: 1, Uuid: "GPU-1", Model: "NVIDIA L40S", MemoryBytes: 48 * gib, EncoderSessions: 3},
			},
			wantCap:     pool.Resources{GPUs: 2, GPUMemoryBytes: 88 * gib, NVENC: 5},
			wantEncoder: "forced",
			wantModel:   "NVIDIA L40S",
			wantMemGiB:  "48",
		},
		{
			name: "encoder capacity zero",
			gpus: []fakeGPU{
				{name: "NVIDIA A100-SXM4-40GB", memory: uint64(40 * gib), encoderCap: 0},
			},
			wantGPUs: []*banyanv1.GPU{
				{Index: 0, Uuid: "GPU-0", Model: "NVIDIA A100-SXM4-40GB", MemoryBytes: 40 * gib},
			},
			wantCap:     pool.Resources{GPUs: 1, GPUMemoryBytes: 40 * gib},
			wantEncoder: EncoderCPU,
			wantModel:   "NVIDIA A100-SXM4-40GB",
			wantMemGiB:  "40",
		},
		{
			name: "MIG enabled",
			gpus: []fakeGPU{
				{name: "NVIDIA H100 80GB HBM3", memory: 85520809984, encoderRet: nvml.ERROR_NOT_SUPPORTED,
					migMode: nvml.DEVICE_MIG_ENABLE, migSlots: 7, migPopulate: 3},
				{name: "NVIDIA H100 80GB HBM3", memory: 85520809984, encoderRet: nvml.ERROR_NOT_SUPPORTED,
					migMode: nvml.DEVICE_MIG_DISABLE, migSlots: 7},
			},
			wantGPUs: []*banyanv1.GPU{
				{Index: 0, Uuid: "GPU-0", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 85520809984, MigEnabled: true, MigDevices: 3},
				{Index: 1, Uuid: "GPU-1", Model: "NVIDIA H100 80GB HBM3", MemoryBytes: 85520809984},
			},
			wantCap:     pool.Resources{GPUs: 2, GPUMemoryBytes: 2 * 85520809984},
			wantEncoder: EncoderCPU,
			wantModel:   "NVIDIA H100 80GB HBM3",
			wantMemGiB:  "80",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib, shutdowns := fakeNVML(tc.gpus...)
			log, logs := newLogger()
			fp, err := Collect(context.Background(), Options{
				NVML: lib, NVENCSessionsPerGPU: tc.sessions, Reserve: tc.reserve, Labels: tc.labels, Logger: log,
			})
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			if *shutdowns != 1 {
				t.Errorf("Shutdown called %d times, want 1", *shutdowns)
			}
			if len(fp.Gpus) != len(tc.wantGPUs) {
				t.Fatalf("gpus = %d, want %d", len(fp.Gpus), len(tc.wantGPUs))
			}
			for i, want := range tc.wantGPUs {
				got := fp.Gpus[i]
				if got.Index != want.Index || got.Uuid != want.Uuid || got.Model != want.Model ||
					got.MemoryBytes != want.MemoryBytes || got.EncoderSessions != want.EncoderSessions ||
					got.MigEnabled != want.MigEnabled || got.MigDevices != want.MigDevices {
					t.Errorf("gpu %d = %v, want %v", i, got, want)
				}
			}
			c := fp.Capacity
			if c.Gpus != tc.wantCap.GPUs || c.GpuMemoryBytes != tc.wantCap.GPUMemoryBytes || c.Nvenc != tc.wantCap.NVENC {
				t.Errorf("capacity = %v, want gpu part %v", c, tc.wantCap)
			}
			want := map[string]string{
				LabelEncoder:      tc.wantEncoder,
				LabelGPUModel:     tc.wantModel,
				LabelGPUCount:     strconv.Itoa(len(tc.wantGPUs)),
				LabelGPUMemoryGiB: tc.wantMemGiB,
			}
			for k, v := range tc.labels {
				want[k] = v
			}
			for k, v := range want {
				if got := fp.Labels[k]; got != v {
					t.Errorf("label %s = %q, want %q", k, got, v)
				}
			}
			if info := logs.lines("INFO"); len(info) != 0 {
				t.Errorf("unexpected info lines on a GPU host: %q", info)
			}
		})
	}
}

// TestCollectPartialDevice uses devices that implement only name, UUID and
// memory: the other queries panic in the mock, as they do in go-nvml when a
// symbol is missing from an old driver, and must read as "not supported".
func TestCollectPartialDevice(t *testing.T) {
	devs := make([]nvml.Device, 8)
	for i := range devs {
		devs[i] = &mock.Device{
			GetNameFunc:       func() (string, nvml.Return) { return "NVIDIA A100-SXM4-40GB", nvml.SUCCESS },
			GetUUIDFunc:       func() (string, nvml.Return) { return "GPU-" + strconv.Itoa(i), nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: uint64(40 * gib)}, nvml.SUCCESS },
		}
	}
	lib := &mock.Interface{
		InitFunc:                   func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc:         func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) { return devs[i], nvml.SUCCESS },
		// No ShutdownFunc: the panic on shutdown must be contained too.
	}
	fp, err := Collect(context.Background(), Options{NVML: lib, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if len(fp.Gpus) != 8 {
		t.Fatalf("gpus = %d, want 8", len(fp.Gpus))
	}
	for i, g := range fp.Gpus {
		if g.Index != int32(i) || g.Uuid == "" || g.MemoryBytes != 40*gib || g.EncoderSessions != 0 || g.MigEnabled {
			t.Errorf("gpu %d = %v", i, g)
		}
	}
	if fp.Capacity.Gpus != 8 || fp.Capacity.GpuMemoryBytes != 320*gib || fp.Capacity.Nvenc != 0 {
		t.Errorf("capacity = %v", fp.Capacity)
	}
	if fp.Labels[LabelEncoder] != EncoderCPU || fp.Labels[LabelGPUMemoryGiB] != "40" || fp.Labels[LabelGPUCount] != "8" {
		t.Errorf("labels = %v", fp.Labels)
	}
}

func TestCollectSkipsBrokenDevice(t *testing.T) {
	lib, _ := fakeNVML(fakeGPU{name: "NVIDIA L4", memory: uint64(23 * gib), encoderCap: 100})
	good := lib.DeviceGetHandleByIndexFunc
	lib.DeviceGetCountFunc = func() (int, nvml.Return) { return 2, nvml.SUCCESS }
	lib.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 0 {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return good(0)
	}
	log, logs := newLogger()
	fp, err := Collect(context.Background(), Options{NVML: lib, Logger: log})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if len(fp.Gpus) != 1 || fp.Gpus[0].Index != 1 || fp.Capacity.Nvenc != DefaultNVENCSessionsPerGPU {
		t.Errorf("gpus = %v, capacity = %v", fp.Gpus, fp.Capacity)
	}
	if len(logs.lines("WARN")) != 1 {
		t.Errorf("want one warning, got %q", logs.lines("WARN"))
	}
}

func TestCollectRealHost(t *testing.T) {
	log, logs := newLogger()
	reserve := pool.Resources{CPUMillis: 500, MemoryBytes: 1 << 20}
	fp, err := Collect(context.Background(), Options{
		DisableGPU: true,
		Reserve:    reserve,
		Labels:     map[string]string{"zone": "test"},
		Logger:     log,
	})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if fp.CpuCores <= 0 || fp.MemoryBytes <= 0 || fp.Hostname == "" {
		t.Fatalf("fingerprint = %v", fp)
	}
	if want := int64(fp.CpuCores)*1000 - reserve.CPUMillis; fp.Capacity.CpuMillis != want {
		t.Errorf("cpu_millis = %d, want %d", fp.Capacity.CpuMillis, want)
	}
	if want := fp.MemoryBytes - reserve.MemoryBytes; fp.Capacity.MemoryBytes != want {
		t.Errorf("memory = %d, want %d", fp.Capacity.MemoryBytes, want)
	}
	want := map[string]string{
		LabelHostname: fp.Hostname,
		LabelOS:       runtime.GOOS,
		LabelArch:     runtime.GOARCH,
		LabelCPUCores: strconv.Itoa(int(fp.CpuCores)),
		LabelEncoder:  EncoderCPU,
		"zone":        "test",
	}
	for k, v := range want {
		if got := fp.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if len(fp.Gpus) != 0 {
		t.Errorf("gpus with DisableGPU: %v", fp.Gpus)
	}
	if info := logs.lines("INFO"); len(info) != 0 {
		t.Errorf("DisableGPU should not log at info: %q", info)
	}
}

func TestReserveLargerThanHost(t *testing.T) {
	fp := build(hostInfo{hostname: "h", cpuCores: 2, memoryBytes: gib}, nil,
		Options{Reserve: pool.Resources{CPUMillis: 4000, MemoryBytes: 2 * gib, NVENC: 1}})
	c := fp.Capacity
	if c.CpuMillis != 0 || c.MemoryBytes != 0 || c.Nvenc != 0 {
		t.Errorf("capacity = %v, want zero", c)
	}
}

// TestCollectRealNVML uses the real library: on a host without NVML it must
// yield a CPU-only fingerprint with one info line; on a GPU host, real GPUs.
func TestCollectRealNVML(t *testing.T) {
	log, logs := newLogger()
	fp, err := Collect(context.Background(), Options{Logger: log})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if len(fp.Gpus) == 0 {
		if info := logs.lines("INFO"); len(info) != 1 {
			t.Errorf("want one info line on a host without GPUs, got %q", info)
		}
		if fp.Labels[LabelEncoder] != EncoderCPU {
			t.Errorf("encoder label = %q", fp.Labels[LabelEncoder])
		}
		return
	}
	for _, g := range fp.Gpus {
		t.Logf("gpu %d: %s %s mem=%d nvenc=%d mig=%v/%d", g.Index, g.Model, g.Uuid, g.MemoryBytes, g.EncoderSessions, g.MigEnabled, g.MigDevices)
		if g.Model == "" || g.MemoryBytes <= 0 {
			t.Errorf("gpu %d incomplete: %v", g.Index, g)
		}
	}
}
