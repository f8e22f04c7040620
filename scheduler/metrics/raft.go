package metrics

import (
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/prometheus/client_golang/prometheus"
)

// raftCollector reads one server's raft indexes, leadership, readiness and
// latest snapshot at scrape time.
type raftCollector struct {
	s *server.Server
}

func newRaftCollector(s *server.Server) *raftCollector { return &raftCollector{s: s} }

var (
	descApplied = prometheus.NewDesc("banyan_raft_applied_index",
		"Last raft log index this server applied to its state.", nil, nil)
	descCommit = prometheus.NewDesc("banyan_raft_commit_index",
		"Last raft log index this server knows committed.", nil, nil)
	descLast = prometheus.NewDesc("banyan_raft_last_index",
		"Last index in this server's raft log.", nil, nil)
	descApplyLag = prometheus.NewDesc("banyan_raft_apply_lag",
		"Committed raft entries this server has not applied yet (commit index minus applied index).", nil, nil)
	descLeader = prometheus.NewDesc("banyan_raft_leader",
		"1 while this server leads, else 0.", nil, nil)
	descReady = prometheus.NewDesc("banyan_server_ready",
		"1 while this server knows a leader and has applied up to the commit index (as /readyz), else 0.", nil, nil)
	descSnapSize = prometheus.NewDesc("banyan_raft_snapshot_size_bytes",
		"Size of this server's latest raft snapshot (0 before the first).", nil, nil)
	descSnapIndex = prometheus.NewDesc("banyan_raft_snapshot_index",
		"Raft log index of this server's latest snapshot (0 before the first).", nil, nil)
	descDeadLeader = prometheus.NewDesc("banyan_raft_dead_leader_elections_total",
		"Elections this server stood for at once because its leader's port refused connections (the leader's process was gone).", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descApplied, descCommit, descLast, descApplyLag, descLeader, descReady,
		descSnapSize, descSnapIndex, descDeadLeader} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	ix := c.s.RaftIndexes()
	gauge(descApplied, float64(ix.Applied))
	gauge(descCommit, float64(ix.Commit))
	gauge(descLast, float64(ix.Last))
	gauge(descApplyLag, float64(ix.Commit-min(ix.Applied, ix.Commit)))
	gauge(descLeader, b2f(c.s.IsLeader()))
	gauge(descReady, b2f(c.s.Ready() == nil))
	snap, _ := c.s.LatestSnapshot() // zero until the first snapshot
	gauge(descSnapSize, float64(snap.Size))
	gauge(descSnapIndex, float64(snap.Index))
	ch <- prometheus.MustNewConstMetric(descDeadLeader, prometheus.CounterValue, float64(c.s.DeadLeaderElections()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
