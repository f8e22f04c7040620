// Package fingerprint describes the agent's host: CPU, memory, GPUs and their
// hardware video encoders, and the capacity the agent offers to the
// scheduler. GPUs are found through NVML; a host without NVML or without GPUs
// is reported as CPU-only rather than as an error.
package fingerprint

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"runtime"
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/mem"

	"github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
)

// DefaultNVENCSessionsPerGPU is the number of encoder sessions offered per
// NVENC-capable GPU when Options.NVENCSessionsPerGPU is zero.
const DefaultNVENCSessionsPerGPU = 8

// DefaultNVENCSystemSessions is the host-wide NVENC session cap assumed for
// consumer (GeForce, Titan) GPUs when Options.NVENCSystemSessions is zero:
// NVIDIA's consumer drivers allow 8 concurrent sessions per system since
// driver 551 (it was 3, then 5). Hosts on older drivers set it lower.
const DefaultNVENCSystemSessions = 8

// LimitMode chooses the NVENC session rule of a host's GPUs.
type LimitMode string

// The values of LimitMode (the agent's --nvenc-limit).
const (
	// LimitAuto: consumer brands (GeForce, Titan) are capped per system,
	// others have no session cap.
	LimitAuto LimitMode = "auto"
	// LimitPerDevice: each GPU offers its own sessions.
	LimitPerDevice LimitMode = "per-device"
	// LimitPerSystem: the host's GPUs share one session cap.
	LimitPerSystem LimitMode = "per-system"
	// LimitNone: no session cap; the agent watches encoder utilisation.
	LimitNone LimitMode = "none"
)

// ParseLimitMode parses a LimitMode ("" is LimitAuto).
func ParseLimitMode(s string) (LimitMode, error) {
	switch m := LimitMode(s); m {
	case "":
		return LimitAuto, nil
	case LimitAuto, LimitPerDevice, LimitPerSystem, LimitNone:
		return m, nil
	}
	return "", fmt.Errorf("NVENC limit %q: want auto, per-device, per-system or none", s)
}

// Label keys set by Collect.
const (
	LabelHostname     = "hostname"
	LabelOS           = "os"
	LabelArch         = "arch"
	LabelCPUCores     = "cpu.cores"
	LabelGPUModel     = "gpu.model"
	LabelGPUCount     = "gpu.count"
	LabelGPUMemoryGiB = "gpu.memory_gib"
	LabelEncoder      = "encoder"
)

// Values of the LabelEncoder label.
const (
	EncoderNVENC = "nvenc"
	EncoderCPU   = "cpu"
)

// Options configure Collect.
type Options struct {
	// NVML is the NVML implementation; nil means the real library (nvml.New()).
	NVML nvml.Interface
	// DisableGPU skips NVML entirely.
	DisableGPU bool
	// NVENCSessionsPerGPU is how many encoder sessions each NVENC-capable GPU
	// offers (DefaultNVENCSessionsPerGPU when 0).
	NVENCSessionsPerGPU int
	// NVENCLimit chooses each GPU's session rule ("" is LimitAuto).
	NVENCLimit LimitMode
	// NVENCSystemSessions caps the sessions of the host's per-system GPUs
	// together (DefaultNVENCSystemSessions when 0).
	NVENCSystemSessions int
	// Reserve is held back from the capacity offered (for the OS and agent).
	Reserve pool.Resources
	// Labels are extra labels merged over the detected ones.
	Labels map[string]string
	// Logger receives progress and diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

// hostInfo is what Collect learns about the host outside NVML.
type hostInfo struct {
	hostname    string
	cpuCores    int
	cpuModel    string
	memoryBytes int64
}

// Collect returns the host fingerprint. A host without the NVML library or
// without GPUs yields a CPU-only fingerprint and logs exactly one info line
// saying so; it never fails for that reason. It fails only when the CPU count
// or the memory size cannot be read.
func Collect(ctx context.Context, opts Options) (*banyanv1.Fingerprint, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	h, err := collectHost(ctx, log)
	if err != nil {
		return nil, err
	}
	var gpus []*banyanv1.GPU
	if opts.DisableGPU {
		log.Debug("GPU detection disabled; fingerprint is CPU-only")
	} else {
		lib := opts.NVML
		if lib == nil {
			lib = nvml.New()
		}
		sessions := opts.NVENCSessionsPerGPU
		if sessions <= 0 {
			sessions = DefaultNVENCSessionsPerGPU
		}
		mode, err := ParseLimitMode(string(opts.NVENCLimit))
		if err != nil {
			return nil, fmt.Errorf("fingerprint: %w", err)
		}
		gpus = collectGPUs(lib, gpuOptions{sessions: sessions, mode: mode}, log)
	}
	return build(h, gpus, opts), nil
}

// collectHost reads hostname, CPU and memory through gopsutil.
func collectHost(ctx context.Context, log *slog.Logger) (hostInfo, error) {
	var h hostInfo
	name, err := os.Hostname()
	if err != nil || name == "" {
		info, herr := host.InfoWithContext(ctx)
		if herr != nil {
			return h, fmt.Errorf("fingerprint: hostname: %w", herr)
		}
		name = info.Hostname
	}
	h.hostname = name

	cores, err := cpu.CountsWithContext(ctx, true)
	if err != nil {
		return h, fmt.Errorf("fingerprint: cpu count: %w", err)
	}
	if cores <= 0 {
		return h, fmt.Errorf("fingerprint: cpu count: got %d", cores)
	}
	h.cpuCores = cores

	// The model name is descriptive only; a host that hides it still works.
	if infos, err := cpu.InfoWithContext(ctx); err != nil {
		log.Warn("cannot read CPU model", "err", err)
	} else {
		for _, in := range infos {
			if in.ModelName != "" {
				h.cpuModel = in.ModelName
				break
			}
		}
	}

	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return h, fmt.Errorf("fingerprint: memory: %w", err)
	}
	h.memoryBytes = clampInt64(vm.Total)
	return h, nil
}

// build assembles the fingerprint from host facts, GPUs and options.
func build(h hostInfo, gpus []*banyanv1.GPU, opts Options) *banyanv1.Fingerprint {
	total := pool.Resources{
		CPUMillis:   int64(h.cpuCores) * 1000,
		MemoryBytes: h.memoryBytes,
		GPUs:        int64(len(gpus)),
	}
	for _, g := range gpus {
		total.GPUMemoryBytes += g.MemoryBytes
		total.NVENC += int64(g.EncoderSessions)
	}
	offered := clampZero(total.Sub(opts.Reserve))

	labels := map[string]string{
		LabelHostname: h.hostname,
		LabelOS:       runtime.GOOS,
		LabelArch:     runtime.GOARCH,
		LabelCPUCores: strconv.Itoa(h.cpuCores),
		LabelEncoder:  EncoderCPU,
	}
	if len(gpus) > 0 {
		labels[LabelGPUModel] = gpus[0].Model
		labels[LabelGPUCount] = strconv.Itoa(len(gpus))
		labels[LabelGPUMemoryGiB] = strconv.FormatInt(roundGiB(gpus[0].MemoryBytes), 10)
	}
	if total.NVENC > 0 {
		labels[LabelEncoder] = EncoderNVENC
	}
	maps.Copy(labels, opts.Labels)

	return &banyanv1.Fingerprint{
		NvencSystemSessions: SystemSessions(gpus, opts.NVENCSystemSessions),
		Hostname:            h.hostname,
		CpuCores:            int32(h.cpuCores),
		CpuModel:            h.cpuModel,
		MemoryBytes:         h.memoryBytes,
		Gpus:                gpus,
		Capacity: &banyanv1.Resources{
			CpuMillis:      offered.CPUMillis,
			MemoryBytes:    offered.MemoryBytes,
			Gpus:           offered.GPUs,
			GpuMemoryBytes: offered.GPUMemoryBytes,
			Nvenc:          offered.NVENC,
		},
		Labels: labels,
	}
}

// SystemSessions is the host-wide NVENC session cap of gpus: configured
// (DefaultNVENCSystemSessions when 0) when one of them is capped per
// system, else 0. It is pure.
func SystemSessions(gpus []*banyanv1.GPU, configured int) int32 {
	for _, g := range gpus {
		if g.NvencLimit == banyanv1.NVENCLimit_NVENC_LIMIT_PER_SYSTEM {
			if configured <= 0 {
				configured = DefaultNVENCSystemSessions
			}
			return int32(min(configured, math.MaxInt32))
		}
	}
	return 0
}

// clampZero raises negative fields of r to zero: a reserve larger than the
// host leaves nothing to offer, not a debt.
func clampZero(r pool.Resources) pool.Resources {
	for _, f := range []*int64{&r.CPUMillis, &r.MemoryBytes, &r.GPUs, &r.GPUMemoryBytes, &r.NVENC} {
		if *f < 0 {
			*f = 0
		}
	}
	return r
}

// roundGiB converts bytes to whole GiB, rounded to nearest, so that a card
// sold as "80GB" whose usable memory is slightly less still reads 80.
func roundGiB(b int64) int64 {
	const gib = 1 << 30
	return (b + gib/2) / gib
}

// clampInt64 converts v to int64, saturating at the maximum.
func clampInt64(v uint64) int64 {
	const maxInt64 = 1<<63 - 1
	if v > maxInt64 {
		return maxInt64
	}
	return int64(v)
}
