package fingerprint

import (
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/banyan-sched/banyan/agent/internal/nvmlsafe"
	"github.com/banyan-sched/banyan/api/banyanv1"
)

// gpuOptions are the settings describeGPU applies to every device.
type gpuOptions struct {
	sessions int       // NVENC sessions each encoding device offers
	mode     LimitMode // how the session rule is chosen
}

// collectGPUs lists the GPUs NVML sees. Any reason for having none (no
// library, no driver, no devices) is logged as exactly one info line; the
// result is then empty. Problems with a single device are logged as warnings
// and that device is left out or reported partially.
//
// All logging happens before NVML is shut down: a Return's text comes from
// the loaded library.
func collectGPUs(lib nvml.Interface, opts gpuOptions, log *slog.Logger) []*banyanv1.GPU {
	if err := nvmlsafe.Call0("init", lib.Init); err != nil {
		log.Info("NVML unavailable; fingerprint is CPU-only", "reason", err.Error())
		return nil
	}
	defer func() {
		if err := nvmlsafe.Call0("shutdown", lib.Shutdown); err != nil {
			log.Debug("NVML shutdown failed", "err", err.Error())
		}
	}()

	count, err := nvmlsafe.Call("device count", lib.DeviceGetCount)
	if err != nil {
		log.Info("cannot count GPUs; fingerprint is CPU-only", "reason", err.Error())
		return nil
	}
	if count <= 0 {
		log.Info("no GPUs found; fingerprint is CPU-only")
		return nil
	}

	gpus := make([]*banyanv1.GPU, 0, count)
	for i := range count {
		dev, err := nvmlsafe.Call("device handle", func() (nvml.Device, nvml.Return) { return lib.DeviceGetHandleByIndex(i) })
		if err != nil {
			log.Warn("skipping GPU", "index", i, "err", err.Error())
			continue
		}
		gpus = append(gpus, describeGPU(i, dev, opts, log))
	}
	if len(gpus) == 0 {
		log.Info("no usable GPUs found; fingerprint is CPU-only", "devices", count)
		return nil
	}
	return gpus
}

// describeGPU reads one device. Fields NVML cannot supply stay zero.
func describeGPU(index int, dev nvml.Device, opts gpuOptions, log *slog.Logger) *banyanv1.GPU {
	g := &banyanv1.GPU{Index: int32(index)}
	warn := func(what string, err error) {
		log.Warn("cannot read GPU "+what, "index", index, "err", err.Error())
	}

	if name, err := nvmlsafe.Call("name", dev.GetName); err != nil {
		warn("name", err)
	} else {
		g.Model = name
	}
	if uuid, err := nvmlsafe.Call("uuid", dev.GetUUID); err != nil {
		warn("uuid", err)
	} else {
		g.Uuid = uuid
	}
	if m, err := nvmlsafe.Call("memory info", dev.GetMemoryInfo); err != nil {
		warn("memory", err)
	} else {
		g.MemoryBytes = clampInt64(m.Total)
	}

	g.MigEnabled, g.Mig = migInfo(index, dev, log)
	g.MigDevices = int32(len(g.Mig))
	if len(g.Mig) > 0 {
		// A GPU in MIG mode encodes and decodes through its instances.
		for _, m := range g.Mig {
			g.Encoders += m.Encoders
			g.Decoders += m.Decoders
		}
	} else {
		if encodes(index, dev, log) {
			g.Encoders = 1
		}
		if decodes(dev) {
			g.Decoders = 1
		}
	}
	if g.Encoders > 0 {
		brand, err := nvmlsafe.Call("brand", dev.GetBrand)
		if err != nil {
			log.Debug("cannot read GPU brand", "index", index, "err", err.Error())
		}
		g.NvencLimit = SessionRule(opts.mode, brand, err == nil, g.Model)
		g.EncoderSessions = int32(min(opts.sessions, math.MaxInt32))
	}
	return g
}

// encodes says whether dev has NVENC: encoder capacity is a percentage of
// the NVENC engines left free, and a GPU without NVENC (H100, A100) answers
// NOT_SUPPORTED or 0.
func encodes(index int, dev nvml.Device, log *slog.Logger) bool {
	capacity, err := nvmlsafe.Call("encoder capacity", func() (int, nvml.Return) {
		return dev.GetEncoderCapacity(nvml.ENCODER_QUERY_H264)
	})
	if err != nil && !errors.Is(err, nvml.ERROR_NOT_SUPPORTED) {
		log.Debug("treating GPU as without NVENC", "index", index, "err", err.Error())
	}
	return err == nil && capacity > 0
}

// decodes says whether dev has NVDEC: its decoder utilisation can be read.
func decodes(dev nvml.Device) bool {
	_, err := nvmlsafe.Call("decoder utilization", func() (uint32, nvml.Return) {
		u, _, ret := dev.GetDecoderUtilization()
		return u, ret
	})
	return err == nil
}

// SessionRule is the NVENC session rule of an encoding GPU under mode. In
// LimitAuto, consumer brands (GeForce, Titan: read from NVML, or from the
// model name when the brand cannot be read) are capped per host by the
// driver; datacenter and workstation brands have no session cap. It is pure.
func SessionRule(mode LimitMode, brand nvml.BrandType, brandKnown bool, model string) banyanv1.NVENCLimit {
	switch mode {
	case LimitPerDevice:
		return banyanv1.NVENCLimit_NVENC_LIMIT_PER_DEVICE
	case LimitPerSystem:
		return banyanv1.NVENCLimit_NVENC_LIMIT_PER_SYSTEM
	case LimitNone:
		return banyanv1.NVENCLimit_NVENC_LIMIT_NONE
	}
	if consumer(brand, brandKnown, model) {
		return banyanv1.NVENCLimit_NVENC_LIMIT_PER_SYSTEM
	}
	return banyanv1.NVENCLimit_NVENC_LIMIT_NONE
}

// consumer says whether a GPU is a consumer card (GeForce or Titan).
func consumer(brand nvml.BrandType, brandKnown bool, model string) bool {
	if brandKnown {
		switch brand {
		case nvml.BRAND_GEFORCE, nvml.BRAND_GEFORCE_RTX, nvml.BRAND_TITAN, nvml.BRAND_TITAN_RTX:
			return true
		}
		if brand != nvml.BRAND_UNKNOWN {
			return false
		}
	}
	m := strings.ToLower(model)
	return strings.Contains(m, "geforce") || strings.Contains(m, "titan")
}

// migInfo reports whether MIG is currently enabled on dev and describes its
// MIG devices.
func migInfo(index int, dev nvml.Device, log *slog.Logger) (bool, []*banyanv1.MIGInstance) {
	type modes struct{ current, pending int }
	m, err := nvmlsafe.Call("mig mode", func() (modes, nvml.Return) {
		c, p, ret := dev.GetMigMode()
		return modes{c, p}, ret
	})
	if err != nil {
		// NOT_SUPPORTED is the normal answer of GPUs without MIG.
		if !errors.Is(err, nvml.ERROR_NOT_SUPPORTED) {
			log.Debug("cannot read MIG mode", "index", index, "err", err.Error())
		}
		return false, nil
	}
	if m.current != nvml.DEVICE_MIG_ENABLE {
		return false, nil
	}
	maxDevices, err := nvmlsafe.Call("max mig device count", dev.GetMaxMigDeviceCount)
	if err != nil {
		log.Warn("cannot read GPU MIG device count", "index", index, "err", err.Error())
		return true, nil
	}
	var out []*banyanv1.MIGInstance
	for j := range maxDevices {
		mig, err := nvmlsafe.Call("mig device handle", func() (nvml.Device, nvml.Return) { return dev.GetMigDeviceHandleByIndex(j) })
		switch {
		case err == nil:
			out = append(out, describeMIG(index, mig, log))
		case errors.Is(err, nvml.ERROR_NOT_FOUND), errors.Is(err, nvml.ERROR_INVALID_ARGUMENT):
			// An empty MIG slot.
		default:
			log.Debug("cannot read MIG device", "index", index, "slot", j, "err", err.Error())
		}
	}
	return true, out
}

// describeMIG reads one MIG device: its UUID, its profile (from its name,
// else from its slice count and memory), its memory and its engines.
func describeMIG(index int, mig nvml.Device, log *slog.Logger) *banyanv1.MIGInstance {
	m := &banyanv1.MIGInstance{}
	if uuid, err := nvmlsafe.Call("mig uuid", mig.GetUUID); err != nil {
		log.Warn("cannot read MIG device uuid", "index", index, "err", err.Error())
	} else {
		m.Uuid = uuid
	}
	attrs, attrErr := nvmlsafe.Call("mig attributes", mig.GetAttributes)
	if attrErr == nil {
		m.Encoders = int32(min(attrs.SharedEncoderCount, math.MaxInt32))
		m.Decoders = int32(min(attrs.SharedDecoderCount, math.MaxInt32))
		m.MemoryBytes = clampInt64(attrs.MemorySizeMB << 20)
	} else {
		log.Debug("cannot read MIG device attributes", "index", index, "err", attrErr.Error())
	}
	if mem, err := nvmlsafe.Call("mig memory info", mig.GetMemoryInfo); err == nil && mem.Total > 0 {
		m.MemoryBytes = clampInt64(mem.Total)
	}
	if name, err := nvmlsafe.Call("mig name", mig.GetName); err == nil {
		m.Profile = MIGProfile(name)
	}
	if m.Profile == "" && attrErr == nil && attrs.GpuInstanceSliceCount > 0 {
		m.Profile = strconv.FormatUint(uint64(attrs.GpuInstanceSliceCount), 10) + "g." +
			strconv.FormatUint((attrs.MemorySizeMB+512)>>10, 10) + "gb"
	}
	return m
}

// MIGProfile returns the profile named at the end of a MIG device's name
// ("NVIDIA A100-SXM4-40GB MIG 1g.5gb" -> "1g.5gb"), or "" when the name
// has none. It is pure.
func MIGProfile(name string) string {
	i := strings.LastIndex(name, "MIG ")
	if i < 0 {
		return ""
	}
	f := strings.Fields(name[i+len("MIG "):])
	if len(f) == 0 || !strings.Contains(f[0], "g.") {
		return ""
	}
	return f[0]
}
