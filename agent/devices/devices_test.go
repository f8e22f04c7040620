package devices

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

var t0 = time.Unix(1_700_000_000, 0)

// fixture: GPU 0 is a datacenter card without a session cap, GPU 1 a
// consumer card capped per system, GPU 2 has no NVENC.
func fixture() *Table {
	return New([]*pb.GPU{
		{Index: 0, Uuid: "GPU-a", EncoderSessions: 4, NvencLimit: pb.NVENCLimit_NVENC_LIMIT_NONE},
		{Index: 1, Uuid: "GPU-b", EncoderSessions: 3, NvencLimit: pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM},
		{Index: 2, Uuid: "GPU-c"},
	}, 5, Config{})
}

// view renders what the table advertises: the host cap, sessions per GPU,
// and reasons.
func view(t *Table) string {
	gpus, sys := t.GPUs()
	parts := []string{fmt.Sprintf("sys%d", sys)}
	for _, g := range gpus {
		s := fmt.Sprint(g.EncoderSessions)
		if g.Unhealthy != "" {
			s += "!" + g.Unhealthy
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestTableScript runs a script of events through one table and checks,
// after each, what it advertises and whether it said so changed.
func TestTableScript(t *testing.T) {
	tb := fixture()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	steps := []struct {
		name    string
		do      func() bool
		changed bool
		want    string
	}{
		{"start", func() bool { return false }, false, "sys5 4 3 0"},
		{"two sessions on 1", func() bool { return tb.Acquire(1, 1) || tb.Acquire(1, 1) }, false, "sys5 4 3 0"},
		{"a third fails: released, then limited", func() bool {
			tb.Acquire(1, 1)
			tb.Release(1, 1)
			return tb.SessionLimit(1, at(0))
		}, true, "sys2 4 2 0"},
		{"a session ends: the limit stays", func() bool { return tb.Release(1, 1) }, false, "sys2 4 2 0"},
		{"59 s: no cool-down yet", func() bool { return tb.Tick(at(59)) }, false, "sys2 4 2 0"},
		{"60 s: one more", func() bool { return tb.Tick(at(60)) }, true, "sys3 4 3 0"},
		{"the device at its number: the host cap steps on", func() bool { return tb.Tick(at(500)) }, true, "sys4 4 3 0"},
		{"a success: the host cap back too, the device no higher", func() bool { return tb.Succeeded(1, at(501)) }, true, "sys5 4 3 0"},
		{"all at their numbers", func() bool { return tb.Tick(at(900)) || tb.Succeeded(1, at(901)) }, false, "sys5 4 3 0"},
		{"a failure with nothing in use: 0", func() bool { tb.Release(1, 1); return tb.SessionLimit(1, at(1000)) }, true, "sys1 4 0 0"},
		{"a success raises by one", func() bool { return tb.Succeeded(1, at(1010)) }, true, "sys2 4 1 0"},
		{"cool-down counts from the last step", func() bool { return tb.Tick(at(1060)) }, false, "sys2 4 1 0"},
		{"then steps", func() bool { return tb.Tick(at(1070)) }, true, "sys3 4 2 0"},
		{"unknown GPU ignored", func() bool { return tb.SessionLimit(9, at(1071)) || tb.Acquire(9, 1) }, false, "sys3 4 2 0"},
		{"GPU 0 busy below the ceiling", func() bool {
			tb.Acquire(0, 1)
			tb.Acquire(0, 1)
			return tb.Observe([]Report{{Index: 0, Utilization: 89, UtilKnown: true}})
		}, false, "sys3 4 2 0"},
		{"at the ceiling: only what is in use", func() bool {
			return tb.Observe([]Report{{Index: 0, Utilization: 90, UtilKnown: true}})
		}, true, "sys3 2 2 0"},
		{"a session ends under the ceiling", func() bool { return tb.Release(0, 1) }, true, "sys3 1 2 0"},
		{"utilisation unknown: the last reading holds", func() bool { return tb.Observe([]Report{{Index: 0}}) }, false, "sys3 1 2 0"},
		{"below the ceiling again", func() bool {
			return tb.Observe([]Report{{Index: 0, Utilization: 40, UtilKnown: true}})
		}, true, "sys3 4 2 0"},
		{"the ceiling does not apply to a capped device", func() bool {
			return tb.Observe([]Report{{Index: 1, Utilization: 100, UtilKnown: true}})
		}, false, "sys3 4 2 0"},
		{"GPU 2 falls off the bus", func() bool {
			return tb.Observe([]Report{{Index: 2, Unhealthy: "fell off the bus"}})
		}, true, "sys3 4 2 0!fell off the bus"},
		{"the same report again", func() bool {
			return tb.Observe([]Report{{Index: 2, Unhealthy: "fell off the bus"}})
		}, false, "sys3 4 2 0!fell off the bus"},
		{"a limit on an uncapped device leaves the host cap", func() bool { return tb.SessionLimit(0, at(1100)) }, true,
			"sys3 1 2 0!fell off the bus"},
	}
	for _, s := range steps {
		if got := s.do(); got != s.changed {
			t.Errorf("%s: changed = %v, want %v", s.name, got, s.changed)
		}
		if got := view(tb); got != s.want {
			t.Fatalf("%s: %q, want %q", s.name, got, s.want)
		}
	}
	gpus, sys := tb.GPUs()
	if sys != 3 || gpus[0].EncoderUtilization != 40 || gpus[1].Uuid != "GPU-b" {
		t.Errorf("GPUs() = %v, %d", gpus, sys)
	}
	gpus[0].EncoderSessions = 99
	if view(tb) != "sys3 1 2 0!fell off the bus" {
		t.Error("GPUs() returned the table's own messages")
	}
}

func TestTableDefaults(t *testing.T) {
	tb := New(nil, 0, Config{})
	if tb.cfg.UtilCeiling != DefaultUtilCeiling || tb.cfg.Cooldown != DefaultCooldown {
		t.Errorf("defaults: %+v", tb.cfg)
	}
	if gpus, sys := tb.GPUs(); len(gpus) != 0 || sys != 0 || tb.Tick(t0) || tb.Observe([]Report{{Index: 0}}) {
		t.Error("an empty table changed")
	}
}
