package hugeheap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"syscall"
	"time"
)

// DefaultEvery is how often Run checks whether the heap has grown. A
// check that finds no growth reads one runtime metric; the maps are read
// only after growth. Checking every millisecond instead took as many page
// faults in the placement benchmark: the small pages left are those a
// large allocation touches as soon as the runtime maps its piece, before
// any check could come.
const DefaultEvery = 10 * time.Millisecond

// Advisor keeps the heap's mappings advised as the heap grows. Its
// functions are the process's (New) or a test's.
type Advisor struct {
	// Mapped is the memory the Go runtime has mapped, in bytes; the maps
	// are read again only when it has changed.
	Mapped func() uint64
	// ReadMaps returns the text of /proc/self/maps.
	ReadMaps func() ([]byte, error)
	// HeapAddr is an address in the Go heap.
	HeapAddr func() uintptr
	// Advise marks a span for huge pages.
	Advise func(Span) error

	checked  bool
	mapped   uint64
	advised  []Span // sorted, disjoint, not adjacent
	advisedN uint64 // bytes advised, summed over calls
}

// Check advises the parts of the heap's read-write mappings not advised
// before, when the runtime's mapped memory has changed since the last
// Check. It returns the bytes it advised. Each part is advised once: the
// Go runtime maps heap memory once and never maps it again in place
// (unless GODEBUG=harddecommit=1), and advising a part again would undo
// what the scavenger has returned to the kernel in it.
func (a *Advisor) Check() (uint64, error) {
	m := a.Mapped()
	if a.checked && m == a.mapped {
		return 0, nil
	}
	// A failure is tried again when the heap has changed again, not at
	// every tick.
	a.checked, a.mapped = true, m
	text, err := a.ReadMaps()
	if err != nil {
		return 0, fmt.Errorf("read the process's mappings: %w", err)
	}
	maps, err := ParseMaps(text)
	if err != nil {
		return 0, err
	}
	addr := a.HeapAddr()
	spans := HeapSpans(maps, addr)
	if spans == nil {
		return 0, fmt.Errorf("%w: no read-write anonymous mapping found around the heap address %#x", ErrTransient, addr)
	}
	var n uint64
	for _, s := range Subtract(spans, a.advised) {
		if err := a.Advise(s); err != nil {
			err = fmt.Errorf("madvise(MADV_HUGEPAGE) %#x-%#x: %w", s.Start, s.End, err)
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM) {
				// The kernel was short of memory, or the maps changed
				// under the read (it is not one snapshot): next time.
				err = fmt.Errorf("%w: %w", ErrTransient, err)
			}
			a.advisedN += n
			return n, err
		}
		a.advised = Union(a.advised, s)
		n += uint64(s.Len())
	}
	a.advisedN += n
	return n, nil
}

// ErrTransient marks a failed Check that a later one may not repeat.
var ErrTransient = errors.New("transient")

// Subtract returns the parts of spans that no span of done covers. Both
// are sorted by address and disjoint.
func Subtract(spans, done []Span) []Span {
	var out []Span
	j := 0
	for _, s := range spans {
		lo := s.Start
		for j < len(done) && done[j].End <= lo {
			j++
		}
		for k := j; k < len(done) && done[k].Start < s.End && lo < s.End; k++ {
			if done[k].Start > lo {
				out = append(out, Span{lo, done[k].Start})
			}
			lo = max(lo, done[k].End)
		}
		if lo < s.End {
			out = append(out, Span{lo, s.End})
		}
	}
	return out
}

// Union adds s to spans (sorted, disjoint, not adjacent), merging what it
// touches, and returns the result.
func Union(spans []Span, s Span) []Span {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].End >= s.Start })
	j := i
	for j < len(spans) && spans[j].Start <= s.End {
		s.Start, s.End = min(s.Start, spans[j].Start), max(s.End, spans[j].End)
		j++
	}
	return slices.Replace(spans, i, j, s)
}

// Run checks every period, less often while the heap does not change (up
// to 16 periods apart), until ctx ends or a check fails for good; such a
// failure (no /proc, a kernel without transparent huge pages) is logged
// once and ends the advice, never the server. A transient failure is
// logged at debug level and tried again once the heap has changed again.
func (a *Advisor) Run(ctx context.Context, every time.Duration, log *slog.Logger) {
	wait := every
	t := time.NewTimer(0)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mapped, checked := a.mapped, a.checked
		_, err := a.Check()
		switch {
		case errors.Is(err, ErrTransient):
			log.Debug("heap advice for huge pages: will try again", "reason", err)
		case err != nil:
			log.Info("heap left on small pages", "reason", err)
			return
		case !checked:
			log.Debug("heap advised for huge pages", "bytes", a.advisedN)
		}
		if checked && a.mapped == mapped {
			wait = min(2*wait, 16*every) // nothing changed: back off
		} else {
			wait = every
		}
		t.Reset(wait)
	}
}
