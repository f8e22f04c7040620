// Package metrics is the Prometheus view of a Banyan server or agent, in a
// registry of its own (never the global one), served by scheduler/httpapi.
//
// Three kinds of series, each read the cheapest way:
//   - what the leader does (scheduling passes, starts, outcomes,
//     preemptions, fallbacks, lease misses): counters and histograms the
//     leader updates through the server.Observer that Metrics implements;
//   - what the replicated state holds (queue depth, tasks and jobs by
//     state, pool usage against quotas, agents, GPUs): gauges read at
//     scrape time under the state's read lock from totals the state keeps
//     up to date (state.Counts copies two small maps; pools and agents
//     are few);
//   - how raft is doing: raft's own go-metrics, bridged (bridge.go), and
//     this server's log indexes, read at scrape time.
//
// Every name starts with banyan_. State gauges are exported by every
// server (followers hold the same replicated state): aggregate them with
// max, not sum.
package metrics

import (
	"time"

	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds a server's registry and the series its leader updates.
// It implements server.Observer: pass it as server.Config.Observer, then
// call WatchServer once the server is up.
type Metrics struct {
	// Registry is what /metrics serves.
	Registry *prometheus.Registry

	passDuration  prometheus.Histogram
	passPlaced    prometheus.Histogram
	submitToStart *prometheus.HistogramVec
	preemptions   prometheus.Counter
	fallbacks     prometheus.Counter
	outcomes      *prometheus.CounterVec
	leaseMisses   *prometheus.CounterVec
}

var _ server.Observer = (*Metrics)(nil)

// latencyBuckets span 1 ms to about 9 hours: a latency-class task starts in
// milliseconds, an opportunistic one may wait hours.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 20)

// New returns Metrics with the Go runtime and process collectors and the
// leader's series registered.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.passDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banyan_scheduling_pass_duration_seconds",
		Help:    "Time one scheduling pass with queued work took: planning and committing its assignments.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)})
	m.passPlaced = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banyan_scheduling_pass_placements",
		Help:    "Tasks placed by one scheduling pass with queued work.",
		Buckets: []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}})
	m.submitToStart = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "banyan_task_submit_to_start_seconds",
		Help:    "Time from a job's submission to each of its tasks' first start, by job class.",
		Buckets: latencyBuckets}, []string{"class"})
	m.preemptions = prometheus.NewCounter(prometheus.CounterOpts{Name: "banyan_preemptions_total",
		Help: "Running tasks the leader preempted."})
	m.fallbacks = prometheus.NewCounter(prometheus.CounterOpts{Name: "banyan_fallbacks_total",
		Help: "Queued tasks handed to their fallback after waiting longer than allowed."})
	m.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banyan_task_outcomes_total",
		Help: "Attempts agents finished, by outcome and failure class (\"\" on success)."},
		[]string{"outcome", "failure_class"})
	m.leaseMisses = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banyan_agent_lease_misses_total",
		Help: "Times an agent was marked down for missing its lease."}, []string{"agent"})
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.passDuration, m.passPlaced, m.submitToStart, m.preemptions, m.fallbacks, m.outcomes, m.leaseMisses)
	return m
}

// SchedulingPass implements server.Observer.
func (m *Metrics) SchedulingPass(took time.Duration, placed int) {
	m.passDuration.Observe(took.Seconds())
	m.passPlaced.Observe(float64(placed))
}

// Preempted implements server.Observer.
func (m *Metrics) Preempted(n int) { m.preemptions.Add(float64(n)) }

// FellBack implements server.Observer.
func (m *Metrics) FellBack(n int) { m.fallbacks.Add(float64(n)) }

// TaskStarted implements server.Observer.
func (m *Metrics) TaskStarted(class string, wait time.Duration) {
	m.submitToStart.WithLabelValues(class).Observe(wait.Seconds())
}

// TaskFinished implements server.Observer.
func (m *Metrics) TaskFinished(outcome, failureClass string) {
	m.outcomes.WithLabelValues(outcome, failureClass).Inc()
}

// LeaseMissed implements server.Observer.
func (m *Metrics) LeaseMissed(agentID string) { m.leaseMisses.WithLabelValues(agentID).Inc() }

// WatchServer registers the series read from s at scrape time: its
// replicated state, its raft indexes and readiness, and raft's own metrics
// (bridged from go-metrics; see InstallRaftBridge).
func (m *Metrics) WatchServer(s *server.Server) error {
	InstallRaftBridge()
	return registerAll(m.Registry, NewStateCollector(s.FSM().Read), newRaftCollector(s), raftBridge)
}

func registerAll(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
