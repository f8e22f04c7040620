package main

import (
	"bytes"
	"testing"
	"time"
)

func TestPhaseTimerReport(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 123)
	var p phaseTimer
	p.begin(true, t0)
	p.mark("build", t0.Add(250*time.Microsecond))
	p.mark("rpc", t0.Add(3*time.Millisecond))
	var b bytes.Buffer
	p.report(&b, t0.Add(3500*time.Microsecond))
	want := "sched timing: main_unix_ns=1700000000000000123 build=0.250ms rpc=2.750ms total=3.500ms\n"
	if b.String() != want {
		t.Fatalf("report:\n got %q\nwant %q", b.String(), want)
	}
}

func TestPhaseTimerOff(t *testing.T) {
	var p phaseTimer
	p.begin(false, time.Now())
	p.markNow("build")
	var b bytes.Buffer
	p.report(&b, time.Now())
	if b.Len() != 0 || len(p.marks) != 0 {
		t.Fatalf("timer off recorded %v and wrote %q", p.marks, b.String())
	}
	var nilTimer *phaseTimer
	nilTimer.markNow("x") // must not panic
	nilTimer.report(&b, time.Now())
	for _, v := range []string{"", "0"} {
		if timingWanted(v) {
			t.Errorf("SCHED_TIMING=%q turned timing on", v)
		}
	}
	if !timingWanted("1") {
		t.Error("SCHED_TIMING=1 left timing off")
	}
}
