// Package devices keeps an agent's live view of its GPUs: their health, the
// latest encoder utilisation, the NVENC sessions its running tasks hold on
// each, and from these the sessions each device offers the scheduler now.
//
// It is pure: a Table is given what happened (a task took or freed a
// session, a session-limit failure, a health report) and the time, and it
// answers whether what the agent advertises changed. It starts no goroutine,
// reads no clock and holds no lock; the agent owns one Table behind its own
// mutex.
//
// The sessions a device offers (GPU.encoder_sessions) are:
//
//   - the configured number (the fingerprint's), lowered after a
//     session-limit failure on the device to the sessions still in use there
//     and raised again by one per recovery step (a successful NVENC task
//     finishing on the device, or a cool-down with no change) until it is
//     back at the configured number;
//   - on a device without a session cap (NVENC_LIMIT_NONE) whose encoder
//     utilisation is at or above the ceiling, no more than the sessions in
//     use there, until the utilisation falls below the ceiling again.
//
// A session-limit failure on a device capped per system (consumer drivers)
// says the host's cap is reached, which may be below the configured one (an
// older driver): the host cap (nvenc_system_sessions) is lowered the same
// way to the sessions in use on all per-system devices, but never below 1
// (0 would mean "no cap"), and recovers by the same steps.
package devices

import (
	"slices"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/protobuf/proto"
)

// Defaults of Config.
const (
	// DefaultUtilCeiling is the encoder utilisation, in percent, at which a
	// device without a session cap stops offering new sessions.
	DefaultUtilCeiling = 90
	// DefaultCooldown is how long a device lowered by a session-limit
	// failure waits before it offers one session more.
	DefaultCooldown = 60 * time.Second
)

// Config tunes a Table.
type Config struct {
	// UtilCeiling is the encoder utilisation ceiling in percent
	// (DefaultUtilCeiling when 0).
	UtilCeiling int32
	// Cooldown is the recovery step of a lowered device without successes
	// (DefaultCooldown when 0).
	Cooldown time.Duration
}

// Report is what the health monitor learned about one GPU.
type Report struct {
	// Index is the GPU's NVML index.
	Index int32
	// Unhealthy says why the GPU must take no work ("" when healthy).
	Unhealthy string
	// Utilization is the encoder utilisation in percent, when UtilKnown.
	Utilization int32
	UtilKnown   bool
}

// state is what a Table tracks about one GPU beyond its fingerprint.
type state struct {
	unhealthy string
	util      int32
	utilKnown bool
	inUse     int32     // NVENC sessions held by running tasks
	limit     int32     // sessions offered after session-limit failures
	changed   time.Time // when limit last moved
}

// Table is the live view of an agent's GPUs. The zero value has no GPUs.
type Table struct {
	cfg    Config
	gpus   []*pb.GPU // as fingerprinted, never modified
	st     []state
	system int32 // the configured host cap (0: none)

	sysLimit   int32     // the host cap offered after session-limit failures
	sysChanged time.Time // when sysLimit last moved
}

// New returns a table for the fingerprinted gpus (copied) and the host's
// NVENC session cap.
func New(gpus []*pb.GPU, systemSessions int32, cfg Config) *Table {
	if cfg.UtilCeiling <= 0 {
		cfg.UtilCeiling = DefaultUtilCeiling
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	t := &Table{cfg: cfg, system: systemSessions, sysLimit: systemSessions}
	for _, g := range gpus {
		t.gpus = append(t.gpus, proto.Clone(g).(*pb.GPU))
		t.st = append(t.st, state{limit: g.EncoderSessions})
	}
	return t
}

// find returns the position of the GPU with NVML index i, or -1.
func (t *Table) find(i int32) int {
	return slices.IndexFunc(t.gpus, func(g *pb.GPU) bool { return g.Index == i })
}

// offered is the number of sessions GPU k offers now.
func (t *Table) offered(k int) int32 {
	g, s := t.gpus[k], t.st[k]
	n := min(g.EncoderSessions, s.limit)
	if g.NvencLimit == pb.NVENCLimit_NVENC_LIMIT_NONE && s.utilKnown && s.util >= t.cfg.UtilCeiling {
		n = min(n, s.inUse)
	}
	return max(n, 0)
}

// advertised is what the scheduler sees of the table, apart from
// utilisation: each GPU's offered sessions and health.
func (t *Table) advertised() []any {
	out := make([]any, 0, 2*len(t.gpus)+1)
	out = append(out, t.sysLimit)
	for k := range t.gpus {
		out = append(out, t.offered(k), t.st[k].unhealthy)
	}
	return out
}

// change runs f and reports whether what the table advertises changed.
func (t *Table) change(f func()) bool {
	before := t.advertised()
	f()
	return !slices.Equal(before, t.advertised())
}

// GPUs returns the GPUs as the agent advertises them now (copies), and the
// host's NVENC session cap as offered now.
func (t *Table) GPUs() ([]*pb.GPU, int32) {
	out := make([]*pb.GPU, len(t.gpus))
	for k, g := range t.gpus {
		c := proto.Clone(g).(*pb.GPU)
		c.EncoderSessions = t.offered(k)
		c.Unhealthy = t.st[k].unhealthy
		c.EncoderUtilization = t.st[k].util
		out[k] = c
	}
	return out, t.sysLimit
}

// Acquire records that a task started holding n NVENC sessions on the GPU
// with index i. It reports whether the advertised view changed.
func (t *Table) Acquire(i, n int32) bool {
	k := t.find(i)
	if k < 0 || n <= 0 {
		return false
	}
	return t.change(func() { t.st[k].inUse += n })
}

// Release records that a task holding n sessions on GPU i ended. It
// reports whether the advertised view changed.
func (t *Table) Release(i, n int32) bool {
	k := t.find(i)
	if k < 0 || n <= 0 {
		return false
	}
	return t.change(func() { t.st[k].inUse = max(t.st[k].inUse-n, 0) })
}

// SessionLimit records that NVENC refused a session on GPU i at now: the
// device offers no more than the sessions still in use there (call Release
// for the failed task first). It reports whether the advertised view
// changed.
func (t *Table) SessionLimit(i int32, now time.Time) bool {
	k := t.find(i)
	if k < 0 {
		return false
	}
	return t.change(func() {
		s := &t.st[k]
		s.limit = min(s.limit, s.inUse, t.gpus[k].EncoderSessions)
		s.changed = now
		if t.perSystem(k) {
			t.sysLimit = max(min(t.sysLimit, t.perSystemInUse()), 1)
			t.sysChanged = now
		}
	})
}

// perSystem says whether GPU k shares the host's session cap.
func (t *Table) perSystem(k int) bool {
	return t.system > 0 && t.gpus[k].NvencLimit == pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM
}

// perSystemInUse is the sessions in use on the GPUs under the host cap.
func (t *Table) perSystemInUse() int32 {
	var n int32
	for k := range t.gpus {
		if t.perSystem(k) {
			n += t.st[k].inUse
		}
	}
	return n
}

// Succeeded records that an NVENC task finished well on GPU i at now: a
// lowered device offers one session more. It reports whether the advertised
// view changed.
func (t *Table) Succeeded(i int32, now time.Time) bool {
	k := t.find(i)
	if k < 0 {
		return false
	}
	return t.change(func() {
		t.raise(k, now)
		if t.perSystem(k) {
			t.raiseSystem(now)
		}
	})
}

// raise lifts a lowered GPU k's limit by one session.
func (t *Table) raise(k int, now time.Time) {
	if s := &t.st[k]; s.limit < t.gpus[k].EncoderSessions {
		s.limit++
		s.changed = now
	}
}

// raiseSystem lifts a lowered host cap by one session.
func (t *Table) raiseSystem(now time.Time) {
	if t.sysLimit < t.system {
		t.sysLimit++
		t.sysChanged = now
	}
}

// Tick raises by one session every lowered GPU, and a lowered host cap,
// whose limit has not moved for a cool-down. It reports whether the
// advertised view changed.
func (t *Table) Tick(now time.Time) bool {
	return t.change(func() {
		if t.sysLimit < t.system && now.Sub(t.sysChanged) >= t.cfg.Cooldown {
			t.raiseSystem(now)
		}
		for k := range t.gpus {
			if t.st[k].limit < t.gpus[k].EncoderSessions && now.Sub(t.st[k].changed) >= t.cfg.Cooldown {
				t.raise(k, now)
			}
		}
	})
}

// Observe applies the health monitor's reports (GPUs it does not name keep
// their state). It reports whether the advertised view changed; a new
// utilisation alone changes it only when it crosses the ceiling of a device
// without a session cap.
func (t *Table) Observe(reports []Report) bool {
	return t.change(func() {
		for _, r := range reports {
			k := t.find(r.Index)
			if k < 0 {
				continue
			}
			s := &t.st[k]
			s.unhealthy = r.Unhealthy
			if r.UtilKnown {
				s.util, s.utilKnown = r.Utilization, true
			}
		}
	})
}
