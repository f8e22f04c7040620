package pool

import (
	"strings"
	"testing"
)

// NaN, infinities, negative amounts and amounts that overflow are refused
// with a message naming the resource.
func TestParseQuantityRefusesNaNInfOverflow(t *testing.T) {
	for _, in := range []string{"cpu=NaN", "cpu=nan", "cpu=Inf", "cpu=+Inf", "cpu=1e400", "cpu=1e300",
		"memory=NaN", "memory=Inf", "memory=1e30", "memory=9999999Ti", "gpu_memory=1e19", "gpu_memory=-1",
		"nvenc=99999999999999999999", "gpu=2000000000000000", "cpu=9223372036854775807m", "cpu=-0.5"} {
		_, err := ParseResources(in)
		name, _, _ := strings.Cut(in, "=")
		if err == nil || !strings.Contains(err.Error(), "resource "+name) {
			t.Errorf("%s: err %v, want one naming %s", in, err, name)
		}
	}
	r, err := ParseResources("cpu=0.5,memory=1.5Gi,gpu=1,gpu_memory=16Gi,nvenc=2")
	if err != nil || r.CPUMillis != 500 || r.MemoryBytes != 3<<29 || r.TooLarge() != "" {
		t.Fatalf("valid quantities: %+v %v", r, err)
	}
	if (Resources{NVENC: MaxQuantity + 1}).TooLarge() != "nvenc" {
		t.Fatal("TooLarge missed nvenc")
	}
}

// A quota over MaxQuantity (a raw gRPC pool set) is refused naming the field.
func TestPutRefusesOverflowingQuota(t *testing.T) {
	tr := NewTree()
	q := Quota{Guaranteed: Resources{GPUMemoryBytes: MaxQuantity + 1}}
	if err := tr.Put("p", q, true); err == nil || !strings.Contains(err.Error(), "guaranteed gpu_memory is larger") {
		t.Fatalf("guaranteed overflow: %v", err)
	}
	q = Quota{Max: Resources{CPUMillis: 1 << 62}, MaxSet: [5]bool{true}}
	if err := tr.Put("p", q, true); err == nil || !strings.Contains(err.Error(), "max cpu is larger") {
		t.Fatalf("max overflow: %v", err)
	}
}
