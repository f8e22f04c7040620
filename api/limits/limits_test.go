package limits

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBudgetDerivesBoundsBelowTheMessage(t *testing.T) {
	for _, b := range []Budget{{}, {MessageSize: MinMessageSize}, {MessageSize: 64 << 20}} {
		if err := b.Check(); err != nil {
			t.Fatalf("%+v: %v", b, err)
		}
		m := b.Message()
		// One event carries at most a result, two tails and an error; one
		// assignment at most a task spec: each must fit a batch with room.
		event := ResultBytes + 2*b.TailBytes() + ErrorBytes + 1024
		if event > b.BatchBytes() || TaskSpecBytes+1024 > b.BatchBytes() || JobSpecBytes > m/2 {
			t.Fatalf("%+v: bounds do not fit a message of %d", b, m)
		}
	}
	if Default.Message() != DefaultMessageSize || (Budget{}).Message() != DefaultMessageSize {
		t.Fatal("zero budget is not the default")
	}
	for _, bad := range []int{1, MinMessageSize - 1, MaxMessageSize + 1, -5, 8 << 20} {
		err := Budget{MessageSize: bad}.Check()
		if err == nil || !strings.Contains(err.Error(), "max message size") {
			t.Fatalf("size %d: err %v", bad, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"16MiB": 16 << 20, "16Mi": 16 << 20, "8388608": 8 << 20, "1GiB": 1 << 30, " 512KiB ": 512 << 10} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Fatalf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5MiB", "2GiB", "99999999999999999999"} {
		if _, err := ParseSize(bad); err == nil {
			t.Fatalf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestTruncateKeepsBoundAndSaysWhatWasCut(t *testing.T) {
	long := strings.Repeat("é", 5000) + "END" // 10003 bytes, two-byte runes
	for _, max := range []int{40, 41, 100, 1000, 9999} {
		tail := TruncateTail(long, max)
		if len(tail) > max || !utf8.ValidString(tail) || !strings.HasSuffix(tail, "END") ||
			!strings.HasPrefix(tail, "[... ") {
			t.Fatalf("tail(%d) = %d bytes %q", max, len(tail), tail[:min(len(tail), 40)])
		}
		_, rest, _ := strings.Cut(tail, "]\n")
		if cutN := len(long) - len(rest); !strings.Contains(tail, "[... "+strconv.Itoa(cutN)+" bytes cut]") {
			t.Fatalf("tail(%d): marker does not name the %d bytes cut: %q", max, cutN, tail[:30])
		}
		head := TruncateHead(long, max)
		if len(head) > max || !utf8.ValidString(head) || !strings.HasPrefix(head, "é") || !strings.Contains(head, "bytes cut]") {
			t.Fatalf("head(%d) = %q", max, head)
		}
	}
	if TruncateTail("short", 10) != "short" || TruncateHead("short", 10) != "short" {
		t.Fatal("a string within the bound changed")
	}
}

func TestSplitBoundsEveryGroup(t *testing.T) {
	sizes := []int{3, 3, 3, 10, 1, 1, 9, 2}
	groups := Split(sizes, func(n int) int { return n }, 6)
	var flat []int
	for _, g := range groups {
		sum := 0
		for _, n := range g {
			sum += n
		}
		if sum > 6 && len(g) > 1 {
			t.Fatalf("group %v over budget", g)
		}
		flat = append(flat, g...)
	}
	if len(flat) != len(sizes) || len(groups) != 6 {
		t.Fatalf("groups %v", groups)
	}
	for i := range sizes {
		if flat[i] != sizes[i] {
			t.Fatalf("order changed: %v", groups)
		}
	}
	if Split([]int(nil), func(n int) int { return n }, 6) != nil {
		t.Fatal("nil input gave groups")
	}
}
