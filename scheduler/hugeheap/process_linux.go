package hugeheap

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/metrics"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// heapProbe is an object in the Go heap: its address finds the heap's
// mappings. It is allocated at run time (a package-level new(T) may be
// laid out in the binary's data instead).
var heapProbe = sync.OnceValue(func() uintptr {
	heapSink = new([64]byte)
	return uintptr(unsafe.Pointer(heapSink))
})

// heapSink keeps heapProbe's object alive and in the heap.
var heapSink *[64]byte

// New returns an Advisor for this process.
func New() *Advisor {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	return &Advisor{
		Mapped: func() uint64 {
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return 0
			}
			return sample[0].Value.Uint64()
		},
		ReadMaps: func() ([]byte, error) { return os.ReadFile("/proc/self/maps") },
		HeapAddr: heapProbe,
		Advise: func(s Span) error {
			_, _, errno := unix.Syscall(unix.SYS_MADVISE, s.Start, s.Len(), unix.MADV_HUGEPAGE)
			if errno != 0 {
				return errno
			}
			// The runtime has touched the start of a new piece already:
			// those small pages are merged now (Linux 6.1 and later), so
			// that the rest of their 2 MiB does not fault page by page.
			// Best effort: an older kernel, or no free huge page, leaves
			// them small.
			_, _, _ = unix.Syscall(unix.SYS_MADVISE, s.Start, s.Len(), unix.MADV_COLLAPSE)
			return nil
		},
	}
}

// Start advises this process's heap for huge pages in a goroutine that
// ends with ctx (Advisor.Run, every DefaultEvery); the channel it returns
// is closed when the goroutine has ended. It does nothing and returns nil
// when GODEBUG asks the runtime to keep huge pages off (disablethp=1), and
// when the host has none (thpEnabled is missing or says "never").
func Start(ctx context.Context, log *slog.Logger) <-chan struct{} {
	if disabledByGODEBUG(os.Getenv("GODEBUG")) {
		log.Info("heap left on small pages", "reason", "GODEBUG disablethp=1")
		return nil
	}
	text, err := os.ReadFile(thpEnabled)
	if err != nil {
		log.Info("heap left on small pages", "reason", fmt.Errorf("no transparent huge pages in this kernel: %w", err))
		return nil
	}
	if mode := thpMode(string(text)); mode == "never" || mode == "" {
		// MADV_COLLAPSE would make huge pages even so: respect the host.
		log.Info("heap left on small pages", "reason", "the host has transparent huge pages off", "file", thpEnabled, "mode", mode)
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New().Run(ctx, DefaultEvery, log)
	}()
	return done
}

// thpEnabled is where Linux says which memory gets transparent huge pages.
const thpEnabled = "/sys/kernel/mm/transparent_hugepage/enabled"

// thpMode returns the mode thpEnabled's text selects, the word in brackets
// ("always [madvise] never" is "madvise"), or "" when none is.
func thpMode(text string) string {
	for _, w := range strings.Fields(text) {
		if m, ok := strings.CutPrefix(w, "["); ok {
			if m, ok = strings.CutSuffix(m, "]"); ok {
				return m
			}
		}
	}
	return ""
}

// disabledByGODEBUG reports whether the GODEBUG value sets disablethp=1
// (its last setting wins, as in the runtime). A //go:debug line or a
// go.mod godebug setting is not seen: Banyan's builds set neither.
func disabledByGODEBUG(v string) bool {
	off := false
	for _, kv := range strings.Split(v, ",") {
		if val, ok := strings.CutPrefix(strings.TrimSpace(kv), "disablethp="); ok {
			off = val == "1"
		}
	}
	return off
}
