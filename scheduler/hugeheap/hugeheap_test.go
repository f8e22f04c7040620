package hugeheap

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func readMaps(t *testing.T, name string) []Mapping {
	t.Helper()
	text, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := ParseMaps(text)
	if err != nil {
		t.Fatal(err)
	}
	return maps
}

// TestHeapSpans: the spans advised are the read-write mappings of the run
// of adjacent anonymous mappings around the heap address (a Go 1.26
// server's maps: its heap arena reserved, partly mapped in 4 MiB pieces,
// and the next arena after it), adjacent ones merged into one span; an
// address in a file, brk or stack mapping, or in none, gives none.
func TestHeapSpans(t *testing.T) {
	maps := readMaps(t, "testdata/server.maps")
	if len(maps) != 23 {
		t.Fatalf("%d mappings parsed, want 23", len(maps))
	}
	heap := []Span{{0x2fd2d7400000, 0x2fd2d7c00000}, {0x2fd2d8000000, 0x2fd2d8800000}}
	for _, tc := range []struct {
		name string
		addr uintptr
		want []Span
	}{
		{"in the first mapped piece", 0x2fd2d7400010, heap},
		{"at the last byte of the run's last piece", 0x2fd2d87fffff, heap},
		{"in the next arena's first piece", 0x2fd2d8000000, heap},
		{"in the arena's reserved part", 0x2fd2d4000000, heap},
		{"in a glibc malloc arena", 0x7f8de8000010, []Span{{0x7f8de8000000, 0x7f8de8021000}}},
		{"in the binary's data", 0x01af8000, nil},
		{"in brk's [heap]", 0x19da2000, nil},
		{"in the stack", 0x7ffc00b87000, nil},
		{"in no mapping", 0x1000, nil},
		{"just past the run", 0x2fd2dc000000, nil},
	} {
		if got := HeapSpans(maps, tc.addr); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s (%#x): %#v, want %#v", tc.name, tc.addr, got, tc.want)
		}
	}
	// The bss right after the binary's data is anonymous too, but the run
	// stops at the file mapping before it.
	if got := HeapSpans(maps, 0x01b9b000); !reflect.DeepEqual(got, []Span{{0x01b9b000, 0x03be3000}}) {
		t.Errorf("bss: %#v", got)
	}
}

// TestHeapSpansNamed: where the runtime has named its mappings (Go 1.25
// and later, on kernels that allow it), the heap is what it named
// "[anon: Go: heap]", wherever the heap address is: pieces in two arenas,
// adjacent pieces merged, the reservations and the runtime's other named
// memory left out. Names with spaces and "(deleted)" are kept whole.
func TestHeapSpansNamed(t *testing.T) {
	maps := readMaps(t, "testdata/named.maps")
	want := []Span{{0x3a1c03400000, 0x3a1c03c00000}, {0x3a1c08000000, 0x3a1c08400000}}
	for _, addr := range []uintptr{0x3a1c03400010, 0x1000, 0x7ffc00b87000} {
		if got := HeapSpans(maps, addr); !reflect.DeepEqual(got, want) {
			t.Errorf("heap address %#x: %#v, want %#v", addr, got, want)
		}
	}
	for i, w := range []struct {
		name string
		anon bool
	}{
		{"/usr/local/bin/banyand", false},
		{"/usr/local/bin/banyand", false},
		{"", true},
		{"[anon: Go: heap reservation]", true},
		{"[anon: Go: heap]", true},
	} {
		if maps[i].Name != w.name || maps[i].Anonymous != w.anon {
			t.Errorf("mapping %d: name %q anonymous %v, want %q %v", i, maps[i].Name, maps[i].Anonymous, w.name, w.anon)
		}
	}
	if m := maps[12]; m.Name != "/var/lib/banyan/raft db (deleted)" || m.Anonymous || m.Perms != "r--s" {
		t.Errorf("a deleted file with a space in its name: %+v", m)
	}
	if m := maps[13]; m.Name != "[stack]" || m.Anonymous {
		t.Errorf("the stack: %+v", m)
	}
}

// TestParseMapsErrors: a malformed line is an error naming its number.
func TestParseMapsErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"00400000-00410000 r--p 00000000 fd:00\n", "line 1: want at least 5 fields"},
		{"ok\n", "line 1: want at least 5 fields"},
		{"00400000-00410000 rw-p 0 00:00 0\n00400000 rw-p 0 00:00 0\n", "line 2: address range \"00400000\" has no '-'"},
		{"zz-00410000 rw-p 0 00:00 0\n", "line 1: start address"},
		{"00400000-zz rw-p 0 00:00 0\n", "line 1: end address"},
		{"00410000-00400000 rw-p 0 00:00 0\n", "line 1: empty or reversed range"},
	} {
		_, err := ParseMaps([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.text, err, tc.want)
		}
	}
	if maps, err := ParseMaps(nil); err != nil || len(maps) != 0 {
		t.Errorf("empty maps: %v, %v", maps, err)
	}
}

// fakeProc is a process for the Advisor: its maps and mapped bytes change
// when the test says so; it records what was advised.
type fakeProc struct {
	maps      string
	mapped    uint64
	reads     int
	advised   []Span
	adviseErr error
}

func (p *fakeProc) advisor() *Advisor {
	return &Advisor{
		Mapped:   func() uint64 { return p.mapped },
		ReadMaps: func() ([]byte, error) { p.reads++; return []byte(p.maps), nil },
		HeapAddr: func() uintptr { return 0xc000001000 },
		Advise: func(s Span) error {
			if p.adviseErr != nil {
				return p.adviseErr
			}
			p.advised = append(p.advised, s)
			return nil
		},
	}
}

const (
	arena  = "c000000000-c000400000 rw-p 00000000 00:00 0\nc000400000-c004000000 ---p 00000000 00:00 0\n"
	grown  = "c000000000-c000400000 rw-p 00000000 00:00 0\nc000400000-c000800000 rw-p 00000000 00:00 0\nc000800000-c004000000 ---p 00000000 00:00 0\n"
	merged = "c000000000-c000800000 rw-p 00000000 00:00 0\nc000800000-c004000000 ---p 00000000 00:00 0\n"
)

// TestAdvisorCheck: the first check advises the heap; a check with the
// mapped bytes unchanged reads nothing; after growth only the new piece is
// advised, and a mapping the kernel merged from advised pieces is not
// advised again; errors name what failed.
func TestAdvisorCheck(t *testing.T) {
	p := &fakeProc{maps: arena, mapped: 4 << 20}
	a := p.advisor()
	if n, err := a.Check(); err != nil || n != 4<<20 {
		t.Fatalf("first check: %d bytes, %v", n, err)
	}
	if n, err := a.Check(); err != nil || n != 0 || p.reads != 1 {
		t.Fatalf("unchanged: %d bytes, %v, %d reads of the maps, want 0, nil, 1", n, err, p.reads)
	}
	p.maps, p.mapped = grown, 8<<20
	if n, err := a.Check(); err != nil || n != 4<<20 {
		t.Fatalf("grown: %d bytes, %v, want the new 4 MiB", n, err)
	}
	p.maps = merged // the kernel merged the advised pieces
	p.mapped++
	if n, err := a.Check(); err != nil || n != 0 {
		t.Fatalf("merged: %d bytes, %v, want 0 (advised as it is)", n, err)
	}
	want := []Span{{0xc000000000, 0xc000400000}, {0xc000400000, 0xc000800000}}
	if !reflect.DeepEqual(p.advised, want) {
		t.Fatalf("advised %#v, want %#v", p.advised, want)
	}

	p = &fakeProc{maps: "c000000000-c000400000 rw-p 0 00:00 0 /memfd\n", mapped: 1}
	if _, err := p.advisor().Check(); !errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "no read-write anonymous mapping found around the heap address 0xc000001000") {
		t.Fatalf("heap address in a file mapping: %v, want a transient error naming the address", err)
	}
	p = &fakeProc{maps: arena, mapped: 1, adviseErr: syscall.EINVAL}
	if _, err := p.advisor().Check(); err == nil || errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "madvise(MADV_HUGEPAGE) 0xc000000000-0xc000400000: invalid argument") {
		t.Fatalf("advice refused: %v, want a lasting error naming the span", err)
	}
	// Short of memory: transient, tried again once the heap has changed,
	// and then advised.
	p = &fakeProc{maps: arena, mapped: 1, adviseErr: syscall.EAGAIN}
	a = p.advisor()
	if _, err := a.Check(); !errors.Is(err, ErrTransient) {
		t.Fatalf("EAGAIN: %v, want a transient error", err)
	}
	p.adviseErr = nil
	if n, err := a.Check(); n != 0 || err != nil || p.reads != 1 {
		t.Fatalf("the heap unchanged after a transient failure: %d bytes, %v, %d reads, want no new read", n, err, p.reads)
	}
	p.mapped++
	if n, err := a.Check(); n != 4<<20 || err != nil {
		t.Fatalf("after the heap changed: %d bytes, %v, want the span advised", n, err)
	}
	p = &fakeProc{maps: "garbage\n", mapped: 1}
	if _, err := p.advisor().Check(); err == nil || !strings.Contains(err.Error(), "maps line 1") {
		t.Fatalf("bad maps: %v", err)
	}
	a = &Advisor{Mapped: func() uint64 { return 1 }, ReadMaps: func() ([]byte, error) { return nil, os.ErrNotExist }}
	if _, err := a.Check(); err == nil || !strings.Contains(err.Error(), "read the process's mappings") {
		t.Fatalf("no /proc: %v", err)
	}
}

// TestSubtractUnion: the parts of the heap not advised yet, and the
// advised set growing, as interval arithmetic.
func TestSubtractUnion(t *testing.T) {
	sp := func(pairs ...uintptr) []Span {
		var out []Span
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, Span{pairs[i], pairs[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name              string
		spans, done, want []Span
	}{
		{"nothing done", sp(10, 20, 30, 40), nil, sp(10, 20, 30, 40)},
		{"all done", sp(10, 20), sp(0, 100), nil},
		{"done exactly", sp(10, 20, 30, 40), sp(10, 20, 30, 40), nil},
		{"grown at the end", sp(10, 30), sp(10, 20), sp(20, 30)},
		{"grown at the start", sp(0, 20), sp(10, 20), sp(0, 10)},
		{"holes between done", sp(0, 100), sp(10, 20, 40, 50), sp(0, 10, 20, 40, 50, 100)},
		{"one done span over two spans", sp(0, 10, 20, 30), sp(5, 25), sp(0, 5, 25, 30)},
		{"done spans outside", sp(40, 50), sp(0, 10, 60, 70), sp(40, 50)},
		{"touching but not overlapping", sp(10, 20), sp(0, 10, 20, 30), sp(10, 20)},
	} {
		if got := Subtract(tc.spans, tc.done); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Subtract %s: %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name        string
		spans, want []Span
		add         Span
	}{
		{"into nothing", nil, sp(10, 20), Span{10, 20}},
		{"before", sp(30, 40), sp(10, 20, 30, 40), Span{10, 20}},
		{"after", sp(10, 20), sp(10, 20, 30, 40), Span{30, 40}},
		{"adjacent merges", sp(10, 20, 30, 40), sp(10, 40), Span{20, 30}},
		{"overlapping several", sp(0, 5, 10, 20, 30, 40, 50, 60), sp(0, 5, 10, 45, 50, 60), Span{15, 45}},
		{"inside one", sp(10, 40), sp(10, 40), Span{20, 30}},
	} {
		if got := Union(slices.Clone(tc.spans), tc.add); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Union %s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAdvisorRun: Run advises at once, keeps checking, and returns when its
// context ends; a check that failed for good ends it at once.
func TestAdvisorRun(t *testing.T) {
	p := &fakeProc{maps: arena, mapped: 1}
	a := p.advisor()
	checks := make(chan struct{}, 100)
	mapped := a.Mapped
	a.Mapped = func() uint64 {
		select {
		case checks <- struct{}{}:
		default:
		}
		return mapped()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx, time.Millisecond, slog.New(slog.DiscardHandler)); close(done) }()
	for i := 0; i < 3; i++ {
		select {
		case <-checks:
		case <-time.After(10 * time.Second):
			t.Fatalf("Run made %d checks in 10 s", i)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if len(p.advised) != 1 {
		t.Fatalf("advised %d times, want once", len(p.advised))
	}
	p = &fakeProc{maps: arena, mapped: 1, adviseErr: syscall.EINVAL}
	done = make(chan struct{})
	go func() {
		p.advisor().Run(context.Background(), time.Millisecond, slog.New(slog.DiscardHandler))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run went on after a failed check")
	}
}
