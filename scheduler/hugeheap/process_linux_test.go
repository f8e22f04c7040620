package hugeheap

import (
	"context"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAdviseThisProcess: on Linux the advice reaches this process's heap:
// the mapping that holds a heap object carries the kernel's "hg" flag
// (MADV_HUGEPAGE) in /proc/self/smaps, whatever the host's huge page mode.
func TestAdviseThisProcess(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		t.Skip("this kernel has no transparent huge pages:", err)
	}
	keep := make([]byte, 8<<20) // some heap to advise
	if n, err := New().Check(); err != nil || n == 0 {
		t.Fatalf("check: %d bytes advised, %v", n, err)
	}
	flags := smapsFlags(t, New().HeapAddr())
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Fatalf("the heap's mapping has VmFlags %q, want hg", flags)
	}
	_ = keep[len(keep)-1]
}

// smapsFlags returns the VmFlags of the mapping of /proc/self/smaps that
// holds addr.
func smapsFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	text, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	head := regexp.MustCompile(`^([0-9a-f]+)-([0-9a-f]+) `)
	in := false
	for _, line := range strings.Split(string(text), "\n") {
		if m := head.FindStringSubmatch(line); m != nil {
			lo, _ := strconv.ParseUint(m[1], 16, 64)
			hi, _ := strconv.ParseUint(m[2], 16, 64)
			in = uint64(addr) >= lo && uint64(addr) < hi
			continue
		}
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no mapping of /proc/self/smaps holds %#x", addr)
	return ""
}

// TestGODEBUGDisablesAdvice: GODEBUG's disablethp=1 (its last setting)
// keeps Start from advising; Start's goroutine ends with its context.
func TestGODEBUGDisablesAdvice(t *testing.T) {
	for v, want := range map[string]bool{
		"": false, "disablethp=1": true, "gctrace=1,disablethp=1": true,
		"disablethp=0": false, "disablethp=1,disablethp=0": false, " disablethp=1 ": true,
	} {
		if got := disabledByGODEBUG(v); got != want {
			t.Errorf("GODEBUG=%q: disabled %v, want %v", v, got, want)
		}
	}
	t.Setenv("GODEBUG", "disablethp=1")
	if done := Start(context.Background(), slog.New(slog.DiscardHandler)); done != nil {
		t.Fatal("Start ran with GODEBUG=disablethp=1")
	}
	t.Setenv("GODEBUG", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := Start(ctx, slog.New(slog.DiscardHandler))
	cancel()
	if done != nil { // nil where the host has huge pages off
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Start's goroutine did not end with its context")
		}
	}
}

// TestTHPMode: the mode is the bracketed word of the sysfs file.
func TestTHPMode(t *testing.T) {
	for text, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]\n": "never",
		"always madvise never\n":   "",
		"":                         "",
	} {
		if got := thpMode(text); got != want {
			t.Errorf("%q: %q, want %q", text, got, want)
		}
	}
}
