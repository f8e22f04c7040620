package encoder

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNVENCSessionLimit marks an NVENC encode that the driver refused
// because no encode session was free (the consumer drivers' per-system cap,
// or a device out of sessions). The work is sound: it can run later or on
// the CPU.
var ErrNVENCSessionLimit = errors.New("NVENC session limit reached")

// Environment variables by which the agent names a task's granted GPUs.
const (
	// GPUIndexEnv lists the granted GPUs' NVML indices, comma-separated.
	GPUIndexEnv = "BANYAN_GPU_INDEX"
	// GPUUUIDEnv lists the granted devices' UUIDs (GPU or MIG instance).
	GPUUUIDEnv = "BANYAN_GPU_UUID"
	// CUDAVisibleDevicesEnv is CUDA's device filter; the agent sets it to
	// the granted UUIDs, which renumbers them from 0 for CUDA (and NVENC).
	CUDAVisibleDevicesEnv = "CUDA_VISIBLE_DEVICES"
)

// sessionLimitRE matches what ffmpeg's nvenc wrapper logs when the driver
// refuses a new session for lack of one: nvEncOpenEncodeSessionEx returns
// NV_ENC_ERR_OUT_OF_MEMORY (10) on a full device or a consumer card past the
// per-system cap, and some consumer drivers NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY
// (21). ffmpeg 4 and later print "OpenEncodeSessionEx failed: out of memory
// (10)" (5.1 and later add ": <details>"); ffmpeg 3 printed the status in hex.
var sessionLimitRE = lazyRegexp(`OpenEncodeSessionEx failed: (?:out of memory \(10\)|incompatible client key \(21\)|0xa\b|0x15\b)`)

// NVENCSessionLimit says whether an ffmpeg log (stderr) shows that NVENC
// refused a session because the session limit was hit. It is pure.
func NVENCSessionLimit(log []byte) bool { return sessionLimitRE().Match(log) }

// NVENCDevice returns the CUDA device ordinal NVENC must use for the GPU
// the agent granted (ffmpeg's -gpu), read through getenv; "" when no GPU
// was granted (ffmpeg then picks the first usable one). The agent pins a
// task with CUDA_VISIBLE_DEVICES = the granted UUIDs, which CUDA numbers
// from 0 in that order: the ordinal is the first grant's position there,
// not its NVML index (-gpu 3 with one visible device fails with "Requested
// GPU 3, but only 1 GPUs are available!"). Without CUDA_VISIBLE_DEVICES it
// is the NVML index, which CUDA's numbering matches under
// CUDA_DEVICE_ORDER=PCI_BUS_ID. It is pure.
func NVENCDevice(getenv func(string) string) (string, error) {
	indices := getenv(GPUIndexEnv)
	if indices == "" {
		return "", nil
	}
	first, _, _ := strings.Cut(indices, ",")
	if n, err := strconv.Atoi(first); err != nil || n < 0 {
		return "", fmt.Errorf("%s=%q: not a GPU index", GPUIndexEnv, indices)
	}
	visible := getenv(CUDAVisibleDevicesEnv)
	if visible == "" {
		return first, nil
	}
	uuid, _, _ := strings.Cut(getenv(GPUUUIDEnv), ",")
	for i, v := range strings.Split(visible, ",") {
		if v == uuid || uuid == "" && v == first {
			return strconv.Itoa(i), nil
		}
	}
	return "", fmt.Errorf("granted GPU %s (index %s) is not in %s=%s", uuid, first, CUDAVisibleDevicesEnv, visible)
}

// validDevice checks a -gpu value: a CUDA device ordinal or "" (any).
func validDevice(d string) error {
	if d == "" {
		return nil
	}
	if n, err := strconv.Atoi(d); err != nil || n < 0 || strconv.Itoa(n) != d {
		return fmt.Errorf("GPU device %q: want a device ordinal", d)
	}
	return nil
}
