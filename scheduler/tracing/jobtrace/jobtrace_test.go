package jobtrace

import (
	"bytes"
	"testing"
)

func TestSpanIDIsStableAndDistinct(t *testing.T) {
	tr := "4bf92f3577b34da6a3ce929d0e0e4736"
	a := SpanID(tr, KindRun, "t1", 1)
	if a != SpanID(tr, KindRun, "t1", 1) || !ValidSpanID(a) {
		t.Fatalf("SpanID not stable or not valid: %q", a)
	}
	seen := map[string]bool{a: true}
	for _, other := range []string{SpanID(tr, KindPlace, "t1", 1), SpanID(tr, KindRun, "t1", 2),
		SpanID(tr, KindRun, "t2", 1), SpanID("5bf92f3577b34da6a3ce929d0e0e4736", KindRun, "t1", 1)} {
		if seen[other] {
			t.Fatalf("span id %q repeats", other)
		}
		seen[other] = true
	}
}

func TestTraceparent(t *testing.T) {
	tr, sp := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if got := Traceparent(tr, sp); got != "00-"+tr+"-"+sp+"-01" {
		t.Fatalf("Traceparent = %q", got)
	}
	for _, bad := range [][2]string{{"", sp}, {tr, ""}, {"00000000000000000000000000000000", sp},
		{tr, "0000000000000000"}, {"4BF92F3577B34DA6A3CE929D0E0E4736", sp}, {tr[:30], sp}} {
		if got := Traceparent(bad[0], bad[1]); got != "" {
			t.Errorf("Traceparent(%q, %q) = %q, want empty", bad[0], bad[1], got)
		}
	}
	if RunTraceparent("", "t", 1) != "" {
		t.Error("RunTraceparent without a trace id is not empty")
	}
}

func TestNewTraceIDSkipsZero(t *testing.T) {
	r := bytes.NewReader(append(make([]byte, 16), bytes.Repeat([]byte{0xab}, 16)...))
	id, err := NewTraceID(r)
	if err != nil || id != "abababababababababababababababab" {
		t.Fatalf("NewTraceID = %q, %v", id, err)
	}
	if _, err := NewTraceID(bytes.NewReader(nil)); err == nil {
		t.Fatal("NewTraceID of an empty reader did not fail")
	}
}
