package main

import (
	"bytes"
	"flag"
	"os"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

var rewriteGolden = flag.Bool("rewrite-golden", false, "rewrite cmd/sched/testdata golden files")

// TestAgentShowDevices renders `sched agent show` for a host with a healthy
// L4 running two chunks, an unhealthy one, and an A100 in MIG mode with one
// instance held whole, against testdata/agent_show.golden.
func TestAgentShowDevices(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	a := &pb.Agent{Id: "gpu-7", State: "up", LastSeenUnixMs: now.UnixMilli() - 2000, RunningTasks: 3,
		Used: &pb.Resources{CpuMillis: 1500, MemoryBytes: 1 << 30, Gpus: 1, GpuMemoryBytes: 11 << 30, Nvenc: 2},
		Fingerprint: &pb.Fingerprint{Hostname: "gpu-7.farm", CpuCores: 32, MemoryBytes: 128 << 30, NvencSystemSessions: 0,
			Capacity: &pb.Resources{CpuMillis: 32000, MemoryBytes: 128 << 30, Gpus: 3, GpuMemoryBytes: 88 << 30, Nvenc: 16},
			Labels:   map[string]string{"encoder": "nvenc", "hostname": "gpu-7.farm"},
			Gpus: []*pb.GPU{
				{Index: 0, Uuid: "GPU-aaa", Model: "NVIDIA L4", MemoryBytes: 24 << 30, EncoderSessions: 8, Encoders: 2,
					NvencLimit: pb.NVENCLimit_NVENC_LIMIT_NONE, EncoderUtilization: 41},
				{Index: 1, Uuid: "GPU-bbb", Model: "NVIDIA L4", MemoryBytes: 24 << 30, EncoderSessions: 8, Encoders: 2,
					NvencLimit: pb.NVENCLimit_NVENC_LIMIT_NONE, Unhealthy: "Xid 79"},
				{Index: 2, Uuid: "GPU-ccc", Model: "NVIDIA A100", MemoryBytes: 40 << 30, MigEnabled: true, MigDevices: 2,
					Mig: []*pb.MIGInstance{{Uuid: "MIG-111", Profile: "3g.20gb", MemoryBytes: 20 << 30},
						{Uuid: "MIG-222", Profile: "3g.20gb", MemoryBytes: 20 << 30}}},
			}},
		GpuUse: []*pb.GPUUse{{Index: 0, Uuid: "GPU-aaa", MemoryBytes: 1 << 30, Nvenc: 2, Tasks: 2},
			{Index: 2, Uuid: "MIG-222", MemoryBytes: 10 << 30, Tasks: 1, Whole: true}},
	}
	var out bytes.Buffer
	if err := writeAgentShow(&out, a, now); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/agent_show.golden"
	if *rewriteGolden {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Fatalf("agent show:\n%s\nwant:\n%s", out.String(), want)
	}
	if got, want := gpuSummary(a), "2x NVIDIA L4, 1x NVIDIA A100 (1 unhealthy, 1 in MIG mode)"; got != want {
		t.Fatalf("gpuSummary = %q, want %q", got, want)
	}
	if got := gpuSummary(&pb.Agent{}); got != "-" {
		t.Fatalf("gpuSummary of a CPU host = %q", got)
	}
}

// TestDevAgentsShareTheHost: n local agents together offer what the host
// has, not n times it; the GPUs stay on the first.
func TestDevAgentsShareTheHost(t *testing.T) {
	fp := &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 2000, MemoryBytes: 7, Gpus: 1, GpuMemoryBytes: 8 << 30, Nvenc: 8},
		Gpus: []*pb.GPU{{Uuid: "GPU-1"}}}
	var cpu, mem int64
	for i := 1; i <= 3; i++ {
		s := shareOfHost(fp, 3, i)
		cpu += s.Capacity.CpuMillis
		mem += s.Capacity.MemoryBytes
		if (i == 1) != (len(s.Gpus) == 1 && s.Capacity.Nvenc == 8) {
			t.Fatalf("agent %d: GPUs %v, capacity %v", i, s.Gpus, s.Capacity)
		}
	}
	if cpu != 2000 || mem != 7 {
		t.Fatalf("3 agents offer cpu %d, memory %d; the host has 2000, 7", cpu, mem)
	}
	if fp.Capacity.CpuMillis != 2000 || len(fp.Gpus) != 1 {
		t.Fatal("shareOfHost changed the host's fingerprint")
	}
	if s := shareOfHost(fp, 1, 1); s.Capacity.CpuMillis != 2000 {
		t.Fatalf("one agent offers %v", s.Capacity)
	}
}
