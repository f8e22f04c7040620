package main

import (
	"math"
	"testing"
	"time"
)

func TestParseTiming(t *testing.T) {
	stderr := "some log line\nsched timing: main_unix_ns=1700000000000000123 build=0.250ms rpc=2.750ms total=3.500ms\n"
	mainNs, phases, err := parseTiming(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if mainNs != 1700000000000000123 {
		t.Errorf("main_unix_ns = %d", mainNs)
	}
	want := map[string]time.Duration{"build": 250 * time.Microsecond, "rpc": 2750 * time.Microsecond, "total": 3500 * time.Microsecond}
	for k, d := range want {
		if phases[k] != d {
			t.Errorf("%s = %v, want %v", k, phases[k], d)
		}
	}
	for _, bad := range []string{"", "sched timing: build=1ms total=2ms", "sched timing: main_unix_ns=x total=1ms", "sched timing: main_unix_ns=5 rpc"} {
		if _, _, err := parseTiming(bad); err == nil {
			t.Errorf("parseTiming(%q) took it", bad)
		}
	}
}

func TestCLIMetrics(t *testing.T) {
	calls := []cliCall{
		{wall: 10 * time.Millisecond, preMain: 4 * time.Millisecond, inMain: 5 * time.Millisecond, cpu: 6 * time.Millisecond,
			phases: map[string]time.Duration{"rpc": 3 * time.Millisecond}},
		{wall: 20 * time.Millisecond, preMain: 6 * time.Millisecond, inMain: 11 * time.Millisecond, cpu: 8 * time.Millisecond,
			phases: map[string]time.Duration{"rpc": 9 * time.Millisecond}},
	}
	m := cliMetrics(calls)
	for k, want := range map[string]float64{"wall_ms": 15, "cpu_ms": 7, "pre_main_ms": 5, "in_main_ms": 8, "exit_ms": 2, "rpc_ms": 6, "wall_p50_ms": 10, "wall_p99_ms": 10} {
		if math.Abs(m[k]-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}
