package process

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestTailBufferMatchesNaive(t *testing.T) {
	for _, size := range []int{0, 1, 3, 7, 16} {
		for _, chunk := range []int{1, 2, 5, 7, 16, 40} {
			t.Run(fmt.Sprintf("size%d/chunk%d", size, chunk), func(t *testing.T) {
				tb := NewTailBuffer(size)
				var all []byte
				for i := range 30 {
					p := bytes.Repeat([]byte{byte('a' + i%26)}, chunk)
					p[0] = byte('A' + i%26)
					n, err := tb.Write(p)
					if n != len(p) || err != nil {
						t.Fatalf("Write = %d, %v", n, err)
					}
					all = append(all, p...)
					want := all[max(0, len(all)-size):]
					if got := tb.Bytes(); !bytes.Equal(got, want) {
						t.Fatalf("after %d writes: %q, want %q", i+1, got, want)
					}
				}
				if tb.Total() != int64(len(all)) {
					t.Errorf("Total = %d, want %d", tb.Total(), len(all))
				}
				if tb.Truncated() != (len(all) > size) {
					t.Errorf("Truncated = %v", tb.Truncated())
				}
			})
		}
	}
}

func TestTailBufferNotTruncated(t *testing.T) {
	tb := NewTailBuffer(10)
	fmt.Fprint(tb, "abc")
	if tb.String() != "abc" || tb.Truncated() {
		t.Errorf("got %q truncated=%v", tb.String(), tb.Truncated())
	}
	var zero TailBuffer
	fmt.Fprint(&zero, "abc")
	if zero.String() != "" || zero.Total() != 3 {
		t.Errorf("zero value kept %q", zero.String())
	}
}

func TestTailBufferConcurrent(t *testing.T) {
	tb := NewTailBuffer(64)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				tb.Write([]byte("0123456789"))
			}
		}()
	}
	wg.Wait()
	if tb.Total() != 80000 || len(tb.Bytes()) != 64 {
		t.Errorf("total %d, kept %d", tb.Total(), len(tb.Bytes()))
	}
	// Whole writes land atomically, so the tail is still the repeated pattern.
	if got := tb.String(); !strings.Contains("0123456789"+strings.Repeat("0123456789", 7), got) {
		t.Errorf("tail %q is not a run of the pattern", got)
	}
}

func TestTailBufferText(t *testing.T) {
	tb := NewTailBuffer(4)
	fmt.Fprint(tb, "ab€cd") // € is 3 bytes; the cut leaves 2 of them
	if got := tb.Text(); got != "cd" {
		t.Errorf("Text = %q, want %q", got, "cd")
	}
	tb = NewTailBuffer(16)
	tb.Write([]byte{'o', 'k', 0xff, '!'})
	if got := tb.Text(); !utf8.ValidString(got) || got != "ok\uFFFD!" {
		t.Errorf("Text = %q", got)
	}
}
