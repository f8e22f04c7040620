package fingerprint

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/banyan-sched/banyan/api/banyanv1"
)

// call runs one NVML query and turns its Return into an error (nil on
// SUCCESS). A panic inside the query, which go-nvml raises when a symbol is
// missing from the loaded library (and its mocks raise for methods a test
// did not provide), becomes an error too, so a broken driver install can
// never take the agent down.
func call[T any](op string, f func() (T, nvml.Return)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, fmt.Errorf("nvml %s: panic: %v", op, r)
		}
	}()
	v, ret := f()
	if ret != nvml.SUCCESS {
		return v, fmt.Errorf("nvml %s: %w", op, ret)
	}
	return v, nil
}

// call0 is call for queries that return only a status.
func call0(op string, f func() nvml.Return) error {
	_, err := call(op, func() (struct{}, nvml.Return) { return struct{}{}, f() })
	return err
}

// collectGPUs lists the GPUs NVML sees. Any reason for having none (no
// library, no driver, no devices) is logged as exactly one info line; the
// result is then empty. Problems with a single device are logged as warnings
// and that device is left out or reported partially.
//
// All logging happens before NVML is shut down: a Return's text comes from
// the loaded library.
func collectGPUs(lib nvml.Interface, sessionsPerGPU int, log *slog.Logger) []*banyanv1.GPU {
	if err := call0("init", lib.Init); err != nil {
		log.Info("NVML unavailable; fingerprint is CPU-only", "reason", err.Error())
		return nil
	}
	defer func() {
		if err := call0("shutdown", lib.Shutdown); err != nil {
			log.Debug("NVML shutdown failed", "err", err.Error())
		}
	}()

	count, err := call("device count", lib.DeviceGetCount)
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
		dev, err := call("device handle", func() (nvml.Device, nvml.Return) { return lib.DeviceGetHandleByIndex(i) })
		if err != nil {
			log.Warn("skipping GPU", "index", i, "err", err.Error())
			continue
		}
		gpus = append(gpus, describeGPU(i, dev, sessionsPerGPU, log))
	}
	if len(gpus) == 0 {
		log.Info("no usable GPUs found; fingerprint is CPU-only", "devices", count)
		return nil
	}
	return gpus
}

// describeGPU reads one device. Fields NVML cannot supply stay zero.
func describeGPU(index int, dev nvml.Device, sessionsPerGPU int, log *slog.Logger) *banyanv1.GPU {
	g := &banyanv1.GPU{Index: int32(index)}
	warn := func(what string, err error) {
		log.Warn("cannot read GPU "+what, "index", index, "err", err.Error())
	}

	if name, err := call("name", dev.GetName); err != nil {
		warn("name", err)
	} else {
		g.Model = name
	}
	if uuid, err := call("uuid", dev.GetUUID); err != nil {
		warn("uuid", err)
	} else {
		g.Uuid = uuid
	}
	if m, err := call("memory info", dev.GetMemoryInfo); err != nil {
		warn("memory", err)
	} else {
		g.MemoryBytes = clampInt64(m.Total)
	}

	// Encoder capacity is a percentage of the NVENC engines left free; a
	// GPU without NVENC (H100, A100) answers NOT_SUPPORTED or 0.
	capacity, err := call("encoder capacity", func() (int, nvml.Return) {
		return dev.GetEncoderCapacity(nvml.ENCODER_QUERY_H264)
	})
	switch {
	case err == nil && capacity > 0:
		g.EncoderSessions = int32(min(sessionsPerGPU, math.MaxInt32))
	case err != nil && !errors.Is(err, nvml.ERROR_NOT_SUPPORTED):
		log.Debug("treating GPU as without NVENC", "index", index, "err", err.Error())
	}

	g.MigEnabled, g.MigDevices = migInfo(index, dev, log)
	return g
}

// migInfo reports whether MIG is currently enabled on dev and how many MIG
// devices exist on it.
func migInfo(index int, dev nvml.Device, log *slog.Logger) (bool, int32) {
	type modes struct{ current, pending int }
	m, err := call("mig mode", func() (modes, nvml.Return) {
		c, p, ret := dev.GetMigMode()
		return modes{c, p}, ret
	})
	if err != nil {
		// NOT_SUPPORTED is the normal answer of GPUs without MIG.
		if !errors.Is(err, nvml.ERROR_NOT_SUPPORTED) {
			log.Debug("cannot read MIG mode", "index", index, "err", err.Error())
		}
		return false, 0
	}
	if m.current != nvml.DEVICE_MIG_ENABLE {
		return false, 0
	}
	maxDevices, err := call("max mig device count", dev.GetMaxMigDeviceCount)
	if err != nil {
		log.Warn("cannot read GPU MIG device count", "index", index, "err", err.Error())
		return true, 0
	}
	var n int32
	for j := range maxDevices {
		_, err := call("mig device handle", func() (nvml.Device, nvml.Return) { return dev.GetMigDeviceHandleByIndex(j) })
		switch {
		case err == nil:
			n++
		case errors.Is(err, nvml.ERROR_NOT_FOUND), errors.Is(err, nvml.ERROR_INVALID_ARGUMENT):
			// An empty MIG slot.
		default:
			log.Debug("cannot read MIG device", "index", index, "slot", j, "err", err.Error())
		}
	}
	return true, n
}
