package pool

import (
	"slices"
	"strings"
	"testing"
)

func TestParseResources(t *testing.T) {
	tests := []struct {
		in    string
		want  Resources
		names []string
	}{
		{"", Resources{}, nil},
		{"  ", Resources{}, nil},
		{"cpu=4", Resources{CPUMillis: 4000}, []string{"cpu"}},
		{"cpu=0.5", Resources{CPUMillis: 500}, []string{"cpu"}},
		{"cpu=250m", Resources{CPUMillis: 250}, []string{"cpu"}},
		{"cpu=0", Resources{}, []string{"cpu"}},
		{"memory=8Gi", Resources{MemoryBytes: 8 << 30}, []string{"memory"}},
		{"mem=1.5Gi", Resources{MemoryBytes: 3 << 29}, []string{"memory"}},
		{"memory=2G", Resources{MemoryBytes: 2e9}, []string{"memory"}},
		{"memory=1024", Resources{MemoryBytes: 1024}, []string{"memory"}},
		{"memory=1Ti", Resources{MemoryBytes: 1 << 40}, []string{"memory"}},
		{"gpus=2, gpu-memory=16Gi , NVENC=3", Resources{GPUs: 2, GPUMemoryBytes: 16 << 30, NVENC: 3},
			[]string{"gpu", "gpu_memory", "nvenc"}},
		{"cpu=4,memory=8Gi,gpu=1,gpu_memory=16Gi,nvenc=2",
			Resources{CPUMillis: 4000, MemoryBytes: 8 << 30, GPUs: 1, GPUMemoryBytes: 16 << 30, NVENC: 2},
			[]string{"cpu", "memory", "gpu", "gpu_memory", "nvenc"}},
	}
	for _, tt := range tests {
		got, names, err := ParseResourcesNamed(tt.in)
		if err != nil {
			t.Errorf("ParseResourcesNamed(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want || !slices.Equal(names, tt.names) {
			t.Errorf("ParseResourcesNamed(%q) = %+v %v, want %+v %v", tt.in, got, names, tt.want, tt.names)
		}
		if r, err := ParseResources(tt.in); err != nil || r != tt.want {
			t.Errorf("ParseResources(%q) = %+v, %v", tt.in, r, err)
		}
	}
}

func TestParseResourcesErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"cpu", "want name=value"},
		{"cpu=4,", "want name=value"},
		{"disk=1", `unknown resource "disk"`},
		{"cpu=", "empty value"},
		{"cpu=-1", "negative"},
		{"memory=-1Gi", "negative"},
		{"cpu=abc", "bad core count"},
		{"cpu=xm", "bad millicores"},
		{"memory=lots", "bad size"},
		{"gpu=1.5", "bad count"},
		{"nvenc=x", "bad count"},
		{"cpu=2,cpu=3", `resource "cpu" given twice`},
		{"mem=1Gi,memory=2Gi", `resource "memory" given twice`},
	}
	for _, tt := range tests {
		_, err := ParseResources(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseResources(%q) error = %v, want it to mention %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, r := range []Resources{
		{},
		{CPUMillis: 4000},
		{CPUMillis: 1500, MemoryBytes: 3 << 29},
		{CPUMillis: 250, MemoryBytes: 1 << 30, GPUs: 2, GPUMemoryBytes: 48 << 30, NVENC: 5},
		{MemoryBytes: 512},
		{MemoryBytes: 3 << 40},
		{GPUMemoryBytes: 7 << 20},
	} {
		s := r.String()
		if r.IsZero() {
			if s != "none" {
				t.Errorf("zero String = %q, want none", s)
			}
			continue
		}
		back, err := ParseResources(s)
		if err != nil || back != r {
			t.Errorf("round trip %+v -> %q -> %+v, %v", r, s, back, err)
		}
	}
}

func TestFormatQuantity(t *testing.T) {
	tests := []struct {
		name string
		v    int64
		want string
	}{
		{"cpu", 4000, "4"},
		{"cpu", 1500, "1500m"},
		{"cpu", 0, "0"},
		{"memory", 1 << 30, "1Gi"},
		{"memory", 3 << 29, "1.5Gi"},
		{"gpu_memory", 16 << 30, "16Gi"},
		{"memory", 1023, "1023"},
		{"memory", 1 << 10, "1Ki"},
		{"memory", 5 << 40, "5Ti"},
		{"gpu", 3, "3"},
		{"nvenc", 0, "0"},
	}
	for _, tt := range tests {
		if got := FormatQuantity(tt.name, tt.v); got != tt.want {
			t.Errorf("FormatQuantity(%s, %d) = %q, want %q", tt.name, tt.v, got, tt.want)
		}
	}
	if got := FormatBytes(int64(23.5 * (1 << 30))); got != "23.5Gi" {
		t.Errorf("FormatBytes(23.5Gi) = %q", got)
	}
}

func TestVectorOps(t *testing.T) {
	a := Resources{CPUMillis: 2000, GPUs: 1}
	b := Resources{CPUMillis: 3000, MemoryBytes: 10}
	if got := a.Add(b); got != (Resources{CPUMillis: 5000, MemoryBytes: 10, GPUs: 1}) {
		t.Errorf("Add = %+v", got)
	}
	d := a.Sub(b)
	if d.Negative() != "cpu" {
		t.Errorf("Negative of %+v = %q, want cpu", d, d.Negative())
	}
	if a.Fits(b) || !(Resources{CPUMillis: 1}).Fits(b) {
		t.Error("Fits wrong")
	}
	if got := b.Add(a).Exceeds(a); !slices.Equal(got, []string{"cpu", "memory"}) {
		t.Errorf("Exceeds = %v", got)
	}
	if v, ok := a.Get("gpu"); !ok || v != 1 {
		t.Errorf("Get(gpu) = %d %v", v, ok)
	}
	if _, ok := a.Get("disk"); ok {
		t.Error("Get(disk) found")
	}
}
