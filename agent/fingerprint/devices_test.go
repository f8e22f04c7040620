package fingerprint

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// card is a mock GPU model for the per-device tests.
type card struct {
	name    string
	brand   nvml.BrandType
	memGiB  int64
	nvenc   bool // encoder capacity > 0
	nvdec   bool // decoder utilisation readable
	mig     []migSlice
	migMode int
}

// migSlice is one MIG device of a mock GPU.
type migSlice struct {
	profile          string
	memMB            uint64
	encoders, decode uint32
	slices           uint32
}

var (
	l4      = card{name: "NVIDIA L4", brand: nvml.BRAND_NVIDIA, memGiB: 23, nvenc: true, nvdec: true}
	l40s    = card{name: "NVIDIA L40S", brand: nvml.BRAND_NVIDIA, memGiB: 48, nvenc: true, nvdec: true}
	rtx4090 = card{name: "NVIDIA GeForce RTX 4090", brand: nvml.BRAND_GEFORCE_RTX, memGiB: 24, nvenc: true, nvdec: true}
	titan   = card{name: "NVIDIA TITAN RTX", brand: nvml.BRAND_TITAN_RTX, memGiB: 24, nvenc: true, nvdec: true}
	a6000   = card{name: "NVIDIA RTX A6000", brand: nvml.BRAND_NVIDIA_RTX, memGiB: 48, nvenc: true, nvdec: true}
	h100    = card{name: "NVIDIA H100 80GB HBM3", brand: nvml.BRAND_NVIDIA, memGiB: 80, nvdec: true}
	a100mig = card{name: "NVIDIA A100-SXM4-40GB", brand: nvml.BRAND_NVIDIA, memGiB: 40, nvdec: true, migMode: nvml.DEVICE_MIG_ENABLE,
		mig: []migSlice{{"3g.20gb", 19968, 0, 2, 3}, {"2g.10gb", 9856, 0, 1, 2}, {"1g.5gb", 4864, 0, 0, 1}}}
	a30mig = card{name: "NVIDIA A30", brand: nvml.BRAND_NVIDIA, memGiB: 24, nvenc: false, nvdec: true, migMode: nvml.DEVICE_MIG_ENABLE,
		mig: []migSlice{{"2g.12gb", 11968, 1, 2, 2}, {"2g.12gb", 11968, 0, 2, 2}}}
	a30 = card{name: "NVIDIA A30", brand: nvml.BRAND_NVIDIA, memGiB: 24, nvdec: true, migMode: nvml.DEVICE_MIG_DISABLE}
)

func (c card) device(gpu int) *mock.Device {
	migs := make([]nvml.Device, len(c.mig))
	for j, m := range c.mig {
		migs[j] = &mock.Device{
			GetNameFunc: func() (string, nvml.Return) { return c.name + " MIG " + m.profile, nvml.SUCCESS },
			GetUUIDFunc: func() (string, nvml.Return) { return fmt.Sprintf("MIG-%d-%d", gpu, j), nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
				return nvml.Memory{Total: m.memMB << 20}, nvml.SUCCESS
			},
			GetAttributesFunc: func() (nvml.DeviceAttributes, nvml.Return) {
				return nvml.DeviceAttributes{SharedEncoderCount: m.encoders, SharedDecoderCount: m.decode,
					GpuInstanceSliceCount: m.slices, MemorySizeMB: m.memMB}, nvml.SUCCESS
			},
		}
	}
	migRet := nvml.SUCCESS
	if c.migMode == 0 && c.mig == nil {
		migRet = nvml.ERROR_NOT_SUPPORTED
	}
	return &mock.Device{
		GetNameFunc:       func() (string, nvml.Return) { return c.name, nvml.SUCCESS },
		GetUUIDFunc:       func() (string, nvml.Return) { return fmt.Sprintf("GPU-%d", gpu), nvml.SUCCESS },
		GetBrandFunc:      func() (nvml.BrandType, nvml.Return) { return c.brand, nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: uint64(c.memGiB * gib)}, nvml.SUCCESS },
		GetEncoderCapacityFunc: func(nvml.EncoderType) (int, nvml.Return) {
			if c.nvenc {
				return 100, nvml.SUCCESS
			}
			return 0, nvml.ERROR_NOT_SUPPORTED
		},
		GetDecoderUtilizationFunc: func() (uint32, uint32, nvml.Return) {
			if c.nvdec {
				return 0, 1000, nvml.SUCCESS
			}
			return 0, 0, nvml.ERROR_NOT_SUPPORTED
		},
		GetMigModeFunc:           func() (int, int, nvml.Return) { return c.migMode, c.migMode, migRet },
		GetMaxMigDeviceCountFunc: func() (int, nvml.Return) { return 7, nvml.SUCCESS },
		GetMigDeviceHandleByIndexFunc: func(j int) (nvml.Device, nvml.Return) {
			if j < len(migs) {
				return migs[j], nvml.SUCCESS
			}
			return nil, nvml.ERROR_NOT_FOUND
		},
	}
}

// mockHost is a mock NVML with the given cards, in index order.
func mockHost(cards ...card) nvml.Interface {
	devs := make([]nvml.Device, len(cards))
	for i, c := range cards {
		devs[i] = c.device(i)
	}
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}

// gpuLine renders the per-device facts a test compares.
func gpuLine(g *pb.GPU) string {
	s := fmt.Sprintf("%d %s %q mem=%dGiB enc=%d dec=%d sessions=%d %s", g.Index, g.Uuid, g.Model, roundGiB(g.MemoryBytes),
		g.Encoders, g.Decoders, g.EncoderSessions, g.NvencLimit)
	if g.MigEnabled {
		s += fmt.Sprintf(" mig=%d", g.MigDevices)
		for _, m := range g.Mig {
			s += fmt.Sprintf(" [%s %s mem=%dMiB enc=%d dec=%d]", m.Uuid, m.Profile, m.MemoryBytes>>20, m.Encoders, m.Decoders)
		}
	}
	return s
}

func TestCollectPerDevice(t *testing.T) {
	const (
		none  = "NVENC_LIMIT_NONE"
		sys   = "NVENC_LIMIT_PER_SYSTEM"
		dev   = "NVENC_LIMIT_PER_DEVICE"
		unset = "NVENC_LIMIT_UNSPECIFIED"
	)
	for _, tc := range []struct {
		name      string
		cards     []card
		opts      Options
		want      []string
		wantSys   int32
		wantNVENC int64
		wantMemGi int64
	}{
		{
			name:      "1 datacenter GPU, auto: no cap",
			cards:     []card{l4},
			want:      []string{`0 GPU-0 "NVIDIA L4" mem=23GiB enc=1 dec=1 sessions=8 ` + none},
			wantNVENC: 8, wantMemGi: 23,
		},
		{
			name:  "4 mixed GPUs, auto: consumer cards capped per system",
			cards: []card{rtx4090, l40s, titan, h100},
			opts:  Options{NVENCSessionsPerGPU: 4},
			want: []string{
				`0 GPU-0 "NVIDIA GeForce RTX 4090" mem=24GiB enc=1 dec=1 sessions=4 ` + sys,
				`1 GPU-1 "NVIDIA L40S" mem=48GiB enc=1 dec=1 sessions=4 ` + none,
				`2 GPU-2 "NVIDIA TITAN RTX" mem=24GiB enc=1 dec=1 sessions=4 ` + sys,
				`3 GPU-3 "NVIDIA H100 80GB HBM3" mem=80GiB enc=0 dec=1 sessions=0 ` + unset,
			},
			wantSys: DefaultNVENCSystemSessions, wantNVENC: 12, wantMemGi: 176,
		},
		{
			name:  "4 GPUs, per-device",
			cards: []card{rtx4090, l4, a6000, a30},
			opts:  Options{NVENCLimit: LimitPerDevice, NVENCSystemSessions: 3},
			want: []string{
				`0 GPU-0 "NVIDIA GeForce RTX 4090" mem=24GiB enc=1 dec=1 sessions=8 ` + dev,
				`1 GPU-1 "NVIDIA L4" mem=23GiB enc=1 dec=1 sessions=8 ` + dev,
				`2 GPU-2 "NVIDIA RTX A6000" mem=48GiB enc=1 dec=1 sessions=8 ` + dev,
				`3 GPU-3 "NVIDIA A30" mem=24GiB enc=0 dec=1 sessions=0 ` + unset,
			},
			wantNVENC: 24, wantMemGi: 119,
		},
		{
			name:  "1 GPU, per-system with a host cap",
			cards: []card{l4},
			opts:  Options{NVENCLimit: LimitPerSystem, NVENCSystemSessions: 5, NVENCSessionsPerGPU: 3},
			want:  []string{`0 GPU-0 "NVIDIA L4" mem=23GiB enc=1 dec=1 sessions=3 ` + sys},
			// The capacity stays the sum of the devices' sessions.
			wantSys: 5, wantNVENC: 3, wantMemGi: 23,
		},
		{
			name:  "1 consumer GPU, none",
			cards: []card{rtx4090},
			opts:  Options{NVENCLimit: LimitNone},
			want:  []string{`0 GPU-0 "NVIDIA GeForce RTX 4090" mem=24GiB enc=1 dec=1 sessions=8 ` + none},
			// No per-system device: no host cap.
			wantNVENC: 8, wantMemGi: 24,
		},
		{
			name:  "8 GPUs, MIG on and off",
			cards: []card{a100mig, a100mig, a30mig, a30, h100, l4, l40s, rtx4090},
			want: []string{
				`0 GPU-0 "NVIDIA A100-SXM4-40GB" mem=40GiB enc=0 dec=3 sessions=0 ` + unset +
					` mig=3 [MIG-0-0 3g.20gb mem=19968MiB enc=0 dec=2] [MIG-0-1 2g.10gb mem=9856MiB enc=0 dec=1] [MIG-0-2 1g.5gb mem=4864MiB enc=0 dec=0]`,
				`1 GPU-1 "NVIDIA A100-SXM4-40GB" mem=40GiB enc=0 dec=3 sessions=0 ` + unset +
					` mig=3 [MIG-1-0 3g.20gb mem=19968MiB enc=0 dec=2] [MIG-1-1 2g.10gb mem=9856MiB enc=0 dec=1] [MIG-1-2 1g.5gb mem=4864MiB enc=0 dec=0]`,
				`2 GPU-2 "NVIDIA A30" mem=24GiB enc=1 dec=4 sessions=8 ` + none +
					` mig=2 [MIG-2-0 2g.12gb mem=11968MiB enc=1 dec=2] [MIG-2-1 2g.12gb mem=11968MiB enc=0 dec=2]`,
				`3 GPU-3 "NVIDIA A30" mem=24GiB enc=0 dec=1 sessions=0 ` + unset,
				`4 GPU-4 "NVIDIA H100 80GB HBM3" mem=80GiB enc=0 dec=1 sessions=0 ` + unset,
				`5 GPU-5 "NVIDIA L4" mem=23GiB enc=1 dec=1 sessions=8 ` + none,
				`6 GPU-6 "NVIDIA L40S" mem=48GiB enc=1 dec=1 sessions=8 ` + none,
				`7 GPU-7 "NVIDIA GeForce RTX 4090" mem=24GiB enc=1 dec=1 sessions=8 ` + sys,
			},
			wantSys: DefaultNVENCSystemSessions, wantNVENC: 32, wantMemGi: 303,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.NVML, opts.Logger = mockHost(tc.cards...), slog.New(slog.DiscardHandler)
			fp, err := Collect(context.Background(), opts)
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			if len(fp.Gpus) != len(tc.want) {
				t.Fatalf("gpus = %d, want %d", len(fp.Gpus), len(tc.want))
			}
			for i, want := range tc.want {
				if got := gpuLine(fp.Gpus[i]); got != want {
					t.Errorf("gpu %d:\n got %s\nwant %s", i, got, want)
				}
			}
			if fp.NvencSystemSessions != tc.wantSys {
				t.Errorf("nvenc_system_sessions = %d, want %d", fp.NvencSystemSessions, tc.wantSys)
			}
			c := fp.Capacity
			if c.Gpus != int64(len(tc.cards)) || c.Nvenc != tc.wantNVENC || roundGiB(c.GpuMemoryBytes) != tc.wantMemGi {
				t.Errorf("capacity = %v, want %d GPUs, %d GiB, %d NVENC", c, len(tc.cards), tc.wantMemGi, tc.wantNVENC)
			}
		})
	}
}

func TestSessionRuleAuto(t *testing.T) {
	for _, tc := range []struct {
		brand nvml.BrandType
		known bool
		model string
		want  pb.NVENCLimit
	}{
		{nvml.BRAND_GEFORCE, true, "NVIDIA GeForce GTX 1080", pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{nvml.BRAND_GEFORCE_RTX, true, "NVIDIA GeForce RTX 3090", pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{nvml.BRAND_TITAN, true, "NVIDIA TITAN V", pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{nvml.BRAND_TITAN_RTX, true, "NVIDIA TITAN RTX", pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{nvml.BRAND_QUADRO, true, "Quadro RTX 6000", pb.NVENCLimit_NVENC_LIMIT_NONE},
		{nvml.BRAND_TESLA, true, "Tesla T4", pb.NVENCLimit_NVENC_LIMIT_NONE},
		{nvml.BRAND_NVIDIA, true, "NVIDIA L4", pb.NVENCLimit_NVENC_LIMIT_NONE},
		{nvml.BRAND_NVIDIA_RTX, true, "NVIDIA RTX A4000", pb.NVENCLimit_NVENC_LIMIT_NONE},
		// The brand unreadable or unknown: the model name decides.
		{0, false, "NVIDIA GeForce RTX 4080", pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{nvml.BRAND_UNKNOWN, true, "NVIDIA TITAN Xp", pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{0, false, "NVIDIA L40S", pb.NVENCLimit_NVENC_LIMIT_NONE},
	} {
		if got := SessionRule(LimitAuto, tc.brand, tc.known, tc.model); got != tc.want {
			t.Errorf("%s (brand %d known=%v): %s, want %s", tc.model, tc.brand, tc.known, got, tc.want)
		}
	}
}

func TestMIGProfile(t *testing.T) {
	for name, want := range map[string]string{
		"NVIDIA A100-SXM4-40GB MIG 1g.5gb":     "1g.5gb",
		"NVIDIA H100 80GB HBM3 MIG 1g.10gb":    "1g.10gb",
		"NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb": "1c.3g.40gb",
		"NVIDIA A30 MIG 2g.12gb+me":            "2g.12gb+me",
		"NVIDIA A100-SXM4-40GB":                "",
		"MIG ":                                 "",
		"":                                     "",
	} {
		if got := MIGProfile(name); got != want {
			t.Errorf("MIGProfile(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestParseLimitMode(t *testing.T) {
	for in, want := range map[string]LimitMode{"": LimitAuto, "auto": LimitAuto, "per-device": LimitPerDevice,
		"per-system": LimitPerSystem, "none": LimitNone} {
		if got, err := ParseLimitMode(in); err != nil || got != want {
			t.Errorf("ParseLimitMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseLimitMode("per-gpu"); err == nil {
		t.Error("ParseLimitMode(per-gpu): no error")
	}
	if _, err := Collect(context.Background(), Options{NVML: mockHost(l4), NVENCLimit: "bogus", Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Error("Collect with a bad NVENC limit: no error")
	}
}

// TestCollectMIGWithoutAttributes: MIG devices whose names and attributes
// cannot be read still count, with what could be read.
func TestCollectMIGWithoutAttributes(t *testing.T) {
	c := a100mig
	d := c.device(0)
	d.GetMigDeviceHandleByIndexFunc = func(j int) (nvml.Device, nvml.Return) {
		if j < 2 {
			return &mock.Device{GetUUIDFunc: func() (string, nvml.Return) { return fmt.Sprintf("MIG-x-%d", j), nvml.SUCCESS }}, nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	g := describeGPU(0, d, gpuOptions{sessions: 8, mode: LimitAuto}, slog.New(slog.DiscardHandler))
	want := `0 GPU-0 "NVIDIA A100-SXM4-40GB" mem=40GiB enc=0 dec=0 sessions=0 NVENC_LIMIT_UNSPECIFIED mig=2 [MIG-x-0  mem=0MiB enc=0 dec=0] [MIG-x-1  mem=0MiB enc=0 dec=0]`
	if got := gpuLine(g); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}
