package metrics

import (
	"strings"
	"sync"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft reports its own metrics through go-metrics' process-wide sink (it
// offers no other hook), so the bridge is one per process: InstallRaftBridge
// sets it as go-metrics' global sink once, and every server's registry
// registers the same collector. In a process with several servers (tests)
// their raft series add up.
//
// Bridged (times from milliseconds to seconds):
//
//	raft.commitTime              banyan_raft_commit_seconds (histogram)
//	raft.fsm.apply               banyan_raft_fsm_apply_seconds (histogram)
//	raft.snapshot.create|persist banyan_raft_snapshot_seconds{phase} (histogram)
//	raft.state.<state>           banyan_raft_state_changes_total{state} (leader changes: state="leader")
//	raft.transition.<reason>     banyan_raft_transitions_total{reason}
//	raft.apply                   banyan_raft_applies_total
//	raft.peers                   banyan_raft_peers (gauge)
//
// Other keys are dropped.
type bridge struct {
	commit     prometheus.Histogram
	fsmApply   prometheus.Histogram
	snapshot   *prometheus.HistogramVec
	states     *prometheus.CounterVec
	transition *prometheus.CounterVec
	applies    prometheus.Counter
	peers      prometheus.Gauge
}

var (
	raftBridge  = newBridge()
	installOnce sync.Once
)

func newBridge() *bridge {
	ms := prometheus.ExponentialBuckets(0.0005, 2, 16) // 0.5 ms to 16 s
	b := &bridge{
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banyan_raft_commit_seconds",
			Help: "Time from a leader appending an entry to its commit (raft.commitTime).", Buckets: ms}),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banyan_raft_fsm_apply_seconds",
			Help: "Time to apply one entry to the state (raft.fsm.apply).", Buckets: ms}),
		snapshot: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "banyan_raft_snapshot_seconds",
			Help: "Time to create or persist a raft snapshot (raft.snapshot.*).", Buckets: ms}, []string{"phase"}),
		states: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banyan_raft_state_changes_total",
			Help: "Raft state changes by the state entered (raft.state.*); state=\"leader\" counts leader changes."},
			[]string{"state"}),
		transition: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banyan_raft_transitions_total",
			Help: "Raft timeouts that started a state change (raft.transition.*)."}, []string{"reason"}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{Name: "banyan_raft_applies_total",
			Help: "Entries proposed to raft on this process's leaders (raft.apply)."}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "banyan_raft_peers",
			Help: "Voting peers in the raft configuration (raft.peers)."}),
	}
	for _, st := range []string{"leader", "follower", "candidate"} {
		b.states.WithLabelValues(st) // a series from the start, at 0
	}
	return b
}

// InstallRaftBridge makes go-metrics (which raft reports to) write raft's
// metrics into the bridge. It is idempotent.
func InstallRaftBridge() {
	installOnce.Do(func() {
		conf := gometrics.DefaultConfig("")
		conf.EnableHostname = false
		conf.EnableRuntimeMetrics = false // no collecting goroutine
		conf.EnableServiceLabel = false
		_, _ = gometrics.NewGlobal(conf, sink{raftBridge})
	})
}

// Describe implements prometheus.Collector.
func (b *bridge) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range b.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (b *bridge) Collect(ch chan<- prometheus.Metric) {
	for _, c := range b.collectors() {
		c.Collect(ch)
	}
}

func (b *bridge) collectors() []prometheus.Collector {
	return []prometheus.Collector{b.commit, b.fsmApply, b.snapshot, b.states, b.transition, b.applies, b.peers}
}

// sink is the go-metrics sink feeding the bridge.
type sink struct{ b *bridge }

var _ gometrics.MetricSink = sink{}

func keyOf(key []string) string { return strings.Join(key, ".") }

// SetGauge implements go-metrics' MetricSink.
func (s sink) SetGauge(key []string, val float32) {
	if keyOf(key) == "raft.peers" {
		s.b.peers.Set(float64(val))
	}
}

// SetGaugeWithLabels implements go-metrics' MetricSink.
func (s sink) SetGaugeWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.SetGauge(key, val)
}

// EmitKey implements go-metrics' MetricSink.
func (s sink) EmitKey([]string, float32) {}

// IncrCounter implements go-metrics' MetricSink.
func (s sink) IncrCounter(key []string, val float32) {
	k := keyOf(key)
	switch {
	case k == "raft.apply":
		s.b.applies.Add(float64(val))
	case strings.HasPrefix(k, "raft.state."):
		s.b.states.WithLabelValues(strings.TrimPrefix(k, "raft.state.")).Add(float64(val))
	case strings.HasPrefix(k, "raft.transition."):
		s.b.transition.WithLabelValues(strings.TrimPrefix(k, "raft.transition.")).Add(float64(val))
	}
}

// IncrCounterWithLabels implements go-metrics' MetricSink.
func (s sink) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.IncrCounter(key, val)
}

// AddSample implements go-metrics' MetricSink; raft's timings come in ms.
func (s sink) AddSample(key []string, val float32) {
	sec := float64(val) / 1000
	switch keyOf(key) {
	case "raft.commitTime":
		s.b.commit.Observe(sec)
	case "raft.fsm.apply":
		s.b.fsmApply.Observe(sec)
	case "raft.snapshot.create":
		s.b.snapshot.WithLabelValues("create").Observe(sec)
	case "raft.snapshot.persist":
		s.b.snapshot.WithLabelValues("persist").Observe(sec)
	}
}

// AddSampleWithLabels implements go-metrics' MetricSink.
func (s sink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.AddSample(key, val)
}
