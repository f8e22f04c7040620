// Package hugeheap asks Linux to back a server's Go heap with transparent
// huge pages (madvise(MADV_HUGEPAGE) on the heap's mappings).
//
// Why: a scheduler server's heap grows with its queue and its finished
// jobs, and every 4 KiB page the heap grows into costs a page fault. On
// bare metal a fault costs well under a microsecond; on some VMs the first
// touch of a page costs 12 to 13 µs. On such a VM one benchmark run of
// the placement and submission scenarios took about 800,000 page faults,
// most of them in the three servers' heaps; with the advice, about
// 370,000, and the cluster placed about 14% more tasks a second
// (bench/RESULTS.md, section 8). Backed by 2 MiB pages, heap growth takes
// as few as one fault where it took 512.
//
// Why here and not in the Go runtime: Go 1.21.0 marked its heap
// MADV_HUGEPAGE and 1.21.1 stopped, because with the scavenger returning
// 4 KiB pieces to the kernel, khugepaged could fill them back and raise the
// resident size of programs with small, shrinking heaps. Linux in the mode
// many distributions ship ("madvise") gives huge pages only to memory
// marked so, so a Go program on such a host gets none. A scheduler server's heap is large and
// long-lived, and its growth is where the faults are; the trade (a
// resident size that may stay up to the heap's high-water mark) is worth
// it there, and servers turn it off with --heap-huge-pages=false.
//
// How: the Go heap is reserved in 64 MiB arenas and mapped into use in
// pieces of 4 MiB or more (mmap MAP_FIXED, which replaces any advice given
// before it). So the advice follows the heap: Advisor.Run looks at
// /proc/self/maps whenever the runtime's mapped memory has changed (every
// 10 ms it reads one runtime metric, less often while nothing changes),
// finds the heap's mappings (those the runtime has named "[anon: Go:
// heap]" where the kernel can name them, else the run of adjacent
// anonymous mappings that holds a heap object's address: the heap's
// arenas, mapped and reserved), and advises the read-write parts it has
// not advised before. The runtime has usually touched the start of a new piece by then
// (a large allocation touches all of it at once): on Linux 6.1 and later
// those small pages are merged into huge ones at once (MADV_COLLAPSE), so
// that the rest of each 2 MiB does not fault page by page. A heap arena
// not adjacent to the first run of them is not found and stays on small
// pages. Where the host has huge pages off ("never"), or its kernel has
// none, Start does nothing (MADV_COLLAPSE would make huge pages even
// then); where it has them "always", the heap had them already and the
// advice only merges the first pages of a piece sooner.
package hugeheap

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Span is a range of addresses [Start, End).
type Span struct{ Start, End uintptr }

// Len is the span's length in bytes.
func (s Span) Len() uintptr { return s.End - s.Start }

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Span
	// Perms is the permissions field, e.g. "rw-p" or "---p".
	Perms string
	// Name is the pathname field: a file, a pseudo-name such as [stack],
	// a name a program gave anonymous memory such as [anon: Go: heap]
	// (Go 1.25 and later name theirs where the kernel lets them), or "".
	Name string
	// Anonymous is true for memory backed by no file: inode 0 and no name,
	// or a name of the form [anon: ...].
	Anonymous bool
}

// goHeapName is the name the Go runtime gives the heap memory it has
// mapped for use, where the kernel can name anonymous memory
// (CONFIG_ANON_VMA_NAME); the reserved rest is "[anon: Go: heap
// reservation]".
const goHeapName = "[anon: Go: heap]"

// ParseMaps parses the text of /proc/PID/maps.
func ParseMaps(text []byte) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var f [5]string
		rest := line
		for i := range f {
			f[i], rest = cutField(rest)
		}
		if f[4] == "" {
			return nil, fmt.Errorf("maps line %d: want at least 5 fields: %q", n, line)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %d: address range %q has no '-'", n, f[0])
		}
		start, err := strconv.ParseUint(lo, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps line %d: start address: %w", n, err)
		}
		end, err := strconv.ParseUint(hi, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps line %d: end address: %w", n, err)
		}
		if end <= start {
			return nil, fmt.Errorf("maps line %d: empty or reversed range %q", n, f[0])
		}
		name := strings.TrimSpace(rest)
		out = append(out, Mapping{
			Span:      Span{uintptr(start), uintptr(end)},
			Perms:     f[1],
			Name:      name,
			Anonymous: f[4] == "0" && (name == "" || strings.HasPrefix(name, "[anon:")),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return out, nil
}

// cutField returns the first space-separated field of s and the rest
// after it ("" and "" when s holds none).
func cutField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// HeapSpans returns the Go heap's read-write mappings, adjacent ones
// merged into one span. Where the runtime has named them ([anon: Go:
// heap]) those are the heap, wherever they are. Otherwise they are the
// read-write private mappings in the run of address-adjacent anonymous
// mappings (read-write or reserved) that holds addr, an address in the
// heap. It returns nil when there are none. Mappings must be sorted by
// address, as the kernel lists them.
func HeapSpans(maps []Mapping, addr uintptr) []Span {
	var out []Span
	add := func(m Mapping) {
		if m.Perms != "rw-p" {
			return
		}
		if n := len(out); n > 0 && out[n-1].End == m.Start {
			out[n-1].End = m.End // advice splits and merges mappings: one call per run
			return
		}
		out = append(out, m.Span)
	}
	for _, m := range maps {
		if m.Name == goHeapName {
			add(m)
		}
	}
	if out != nil {
		return out
	}
	at := -1
	for i, m := range maps {
		if m.Start <= addr && addr < m.End {
			at = i
			break
		}
	}
	if at < 0 || !maps[at].Anonymous {
		return nil
	}
	lo, hi := at, at
	for lo > 0 && maps[lo-1].Anonymous && maps[lo-1].End == maps[lo].Start {
		lo--
	}
	for hi+1 < len(maps) && maps[hi+1].Anonymous && maps[hi+1].Start == maps[hi].End {
		hi++
	}
	for _, m := range maps[lo : hi+1] {
		add(m)
	}
	return out
}
