package cgroup

import (
	"maps"
	"strings"
	"testing"
)

func TestLimitFiles(t *testing.T) {
	all := []string{"cpu", "memory", "pids"}
	cases := []struct {
		name    string
		l       Limits
		enabled []string
		want    map[string]string
	}{
		{"full ask", Limits{MemoryBytes: 64 << 20, CPUMillis: 1500, Pids: 128}, all, map[string]string{
			"memory.max": "67108864", "memory.swap.max": "0", "memory.oom.group": "1",
			"cpu.max": "150000 100000", "pids.max": "128"}},
		{"no ask", Limits{}, all, map[string]string{
			"memory.max": "max", "memory.oom.group": "1", "cpu.max": "max 100000", "pids.max": "max"}},
		{"quarter cpu", Limits{CPUMillis: 250}, []string{"cpu"}, map[string]string{"cpu.max": "25000 100000"}},
		{"no controllers", Limits{MemoryBytes: 1, CPUMillis: 1, Pids: 1}, nil, map[string]string{}},
		{"memory only", Limits{MemoryBytes: 1 << 30, Pids: 5}, []string{"memory"}, map[string]string{
			"memory.max": "1073741824", "memory.swap.max": "0", "memory.oom.group": "1"}},
	}
	for _, c := range cases {
		if got := LimitFiles(c.l, c.enabled); !maps.Equal(got, c.want) {
			t.Errorf("%s: LimitFiles = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []Limits{{MemoryBytes: -1}, {CPUMillis: -1}, {Pids: -1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", l)
		}
	}
	if err := (Limits{MemoryBytes: 1, CPUMillis: 1, Pids: 1}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestParseOwnCgroup(t *testing.T) {
	hybrid := "9:name=systemd:/\n4:memory:/x\n0::/user.slice/agent.service\n"
	if got, err := ParseOwnCgroup(strings.NewReader(hybrid)); err != nil || got != "/user.slice/agent.service" {
		t.Errorf("hybrid: %q, %v", got, err)
	}
	if _, err := ParseOwnCgroup(strings.NewReader("4:memory:/x\n")); err == nil || !strings.Contains(err.Error(), "v1") {
		t.Errorf("v1 only: %v, want an error naming v1", err)
	}
	if _, err := ParseOwnCgroup(strings.NewReader("0::relative\n")); err == nil {
		t.Error("relative path accepted")
	}
}

func TestParseMountInfo(t *testing.T) {
	unified := "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	hybrid := "30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
		"31 25 0:28 / /sys/fs/cgroup/my\\040unified rw - cgroup2 cgroup2 rw\n"
	if got, err := ParseMountInfo(strings.NewReader(unified)); err != nil || got != "/sys/fs/cgroup" {
		t.Errorf("unified: %q, %v", got, err)
	}
	if got, err := ParseMountInfo(strings.NewReader(hybrid)); err != nil || got != "/sys/fs/cgroup/my unified" {
		t.Errorf("hybrid: %q, %v", got, err)
	}
	if _, err := ParseMountInfo(strings.NewReader("30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw\n")); err == nil {
		t.Error("v1-only mountinfo accepted")
	}
}

func TestParseKeyed(t *testing.T) {
	got, err := ParseKeyed(strings.NewReader("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"))
	if err != nil || got["oom_kill"] != 1 || got["max"] != 3 {
		t.Errorf("ParseKeyed = %v, %v", got, err)
	}
	if _, err := ParseKeyed(strings.NewReader("populated x\n")); err == nil {
		t.Error("non-numeric value accepted")
	}
}

func TestSanitizeNameAndHumanBytes(t *testing.T) {
	for in, want := range map[string]string{"a1": "a1", "task/7:x": "task_7_x", "..": "_..", "": "_", "ünï": "__n__"} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	for n, want := range map[int64]string{64 << 20: "64Mi", 1000: "1000", 3 << 30: "3Gi", 1536: "1536"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
