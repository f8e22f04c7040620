package pool

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestCostOf(t *testing.T) {
	p := Prices{CPUSecond: 1, GPUSecond: 10, NVENCSecond: 2, MemoryGiBSecond: 0.5, OpportunisticDiscount: 0.6}
	tests := []struct {
		name string
		ask  string
		ms   int64
		opp  bool
		want Cost
	}{
		{"nothing", "cpu=4", 0, false, Cost{}},
		{"negative duration", "cpu=4", -5, false, Cost{}},
		{"cpu", "cpu=2", 1500, false, Cost{CPUSeconds: 3, Billed: 3}},
		{"millicores", "cpu=500m", 2000, false, Cost{CPUSeconds: 1, Billed: 1}},
		{"all", "cpu=1,memory=2Gi,gpu=1,gpu_memory=16Gi,nvenc=2", 10_000, false,
			Cost{CPUSeconds: 10, MemoryGiBSeconds: 20, GPUSeconds: 10, NVENCSeconds: 20, Billed: 10 + 10 + 100 + 40}},
		{"opportunistic pays 40%", "gpu=1", 1000, true, Cost{GPUSeconds: 1, Billed: 4}},
	}
	for _, tt := range tests {
		got := CostOf(res(t, tt.ask), tt.ms, tt.opp, p)
		if !near(got.CPUSeconds, tt.want.CPUSeconds) || !near(got.GPUSeconds, tt.want.GPUSeconds) ||
			!near(got.NVENCSeconds, tt.want.NVENCSeconds) || !near(got.MemoryGiBSeconds, tt.want.MemoryGiBSeconds) ||
			!near(got.Billed, tt.want.Billed) {
			t.Errorf("%s: CostOf = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	for _, d := range []float64{-1, 2} {
		p.OpportunisticDiscount = d
		want := map[float64]float64{-1: 10, 2: 0}[d]
		if got := CostOf(res(t, "gpu=1"), 1000, true, p); !near(got.Billed, want) {
			t.Errorf("discount %v: billed %v, want %v (clamped)", d, got.Billed, want)
		}
	}
}

func TestCostAddAndDefaults(t *testing.T) {
	a := Cost{CPUSeconds: 1, GPUSeconds: 2, NVENCSeconds: 3, MemoryGiBSeconds: 4, Billed: 5}
	if got := a.Add(a); got != (Cost{2, 4, 6, 8, 10}) {
		t.Errorf("Add = %+v", got)
	}
	d := DefaultPrices()
	if d.CPUSecond <= 0 || d.GPUSecond <= d.CPUSecond || d.NVENCSecond <= 0 || d.MemoryGiBSecond <= 0 || d.OpportunisticDiscount != 0.6 {
		t.Errorf("DefaultPrices = %+v", d)
	}
	hour := CostOf(res(t, "gpu=1"), 3_600_000, false, d)
	if !near(hour.Billed, 1.8) {
		t.Errorf("a GPU-hour bills %v, want 1.8", hour.Billed)
	}
}
