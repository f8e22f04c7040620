package metrics

import (
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/prometheus/client_golang/prometheus"
)

// Reader runs fn with the state under its read lock (FSM.Read).
type Reader func(fn func(*state.State))

// StateCollector reads the state's gauges at scrape time. Under the read
// lock it copies the state's maintained totals and reads the pools and the
// agents (never the jobs or tasks); the metrics are built after the lock
// is released.
type StateCollector struct {
	read Reader
}

// NewStateCollector returns a collector reading the state through read.
func NewStateCollector(read Reader) *StateCollector { return &StateCollector{read: read} }

var (
	descQueueDepth = prometheus.NewDesc("banyan_queue_depth",
		"Queued tasks by pool and job class.", []string{"pool", "class"}, nil)
	descTasks = prometheus.NewDesc("banyan_tasks",
		"Tasks by state (running includes assigned).", []string{"state"}, nil)
	descJobs = prometheus.NewDesc("banyan_jobs",
		"Jobs by state.", []string{"state"}, nil)
	descPoolUsage = prometheus.NewDesc("banyan_pool_usage",
		"What a pool's running tasks use, children included, per resource (cpu in millicores, memory and gpu_memory in bytes).",
		[]string{"pool", "resource"}, nil)
	descPoolGuaranteed = prometheus.NewDesc("banyan_pool_guaranteed",
		"A pool's guaranteed quota per resource.", []string{"pool", "resource"}, nil)
	descPoolMax = prometheus.NewDesc("banyan_pool_max",
		"A pool's max quota per resource (absent when unlimited).", []string{"pool", "resource"}, nil)
	descAgents = prometheus.NewDesc("banyan_agents",
		"Agents by state (up, down).", []string{"state"}, nil)
	descAgentGPUs = prometheus.NewDesc("banyan_agent_gpus",
		"An agent's GPU devices, used (running a task) or free.", []string{"agent", "state"}, nil)
	descAgentGPUMemory = prometheus.NewDesc("banyan_agent_gpu_memory_bytes",
		"An agent's GPU memory, used (granted to tasks) or free.", []string{"agent", "state"}, nil)
	descAgentNVENC = prometheus.NewDesc("banyan_agent_nvenc_sessions",
		"An agent's NVENC encoder sessions, used (granted to tasks) or free.", []string{"agent", "state"}, nil)
)

// Describe implements prometheus.Collector.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descTasks, descJobs, descPoolUsage, descPoolGuaranteed,
		descPoolMax, descAgents, descAgentGPUs, descAgentGPUMemory, descAgentNVENC} {
		ch <- d
	}
}

// snapshot is what one scrape reads under the lock.
type snapshot struct {
	tasks  state.TaskTotals
	queued map[state.PoolClass]int
	jobs   map[pb.JobState]int
	pools  map[string]pool.Quota
	usage  map[string]pool.Resources
	agents []*pb.Agent
}

func (c *StateCollector) snapshot() snapshot {
	var s snapshot
	c.read(func(st *state.State) {
		s.tasks, s.queued, s.jobs = st.Counts()
		s.usage = st.PoolUsage()
		s.pools = map[string]pool.Quota{}
		for _, p := range st.Pools().Paths() {
			if q, ok := st.Pools().Get(p); ok {
				s.pools[p] = q
			}
		}
		for _, id := range st.AgentIDs() {
			if a := st.AgentView(id); a != nil {
				s.agents = append(s.agents, a)
			}
		}
	})
	return s
}

// Collect implements prometheus.Collector.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for k, n := range s.queued {
		gauge(descQueueDepth, float64(n), k.Pool, server.ClassName(k.Class))
	}
	// Every pool/class pair reads 0 when nothing is queued, so that a
	// drained queue shows 0 rather than no series.
	for p := range s.pools {
		for _, cl := range []pb.JobClass{pb.JobClass_JOB_CLASS_LATENCY, pb.JobClass_JOB_CLASS_BATCH, pb.JobClass_JOB_CLASS_OPPORTUNISTIC} {
			if _, ok := s.queued[state.PoolClass{Pool: p, Class: cl}]; !ok {
				gauge(descQueueDepth, 0, p, server.ClassName(cl))
			}
		}
	}
	t := s.tasks
	for _, kv := range []struct {
		name string
		n    int64
	}{{"waiting", t.Waiting}, {"queued", t.Queued}, {"running", t.Running}, {"succeeded", t.Succeeded},
		{"failed", t.Failed}, {"cancelled", t.Cancelled}, {"replaced", t.Replaced}} {
		gauge(descTasks, float64(kv.n), kv.name)
	}
	for st, n := range s.jobs {
		gauge(descJobs, float64(n), jobStateName(st))
	}
	for p, q := range s.pools {
		u := s.usage[p]
		for i, res := range pool.ResourceNames {
			used, _ := u.Get(res)
			g, _ := q.Guaranteed.Get(res)
			gauge(descPoolUsage, float64(used), p, res)
			gauge(descPoolGuaranteed, float64(g), p, res)
			if q.MaxSet[i] {
				m, _ := q.Max.Get(res)
				gauge(descPoolMax, float64(m), p, res)
			}
		}
	}
	c.collectAgents(s.agents, gauge)
}

func (c *StateCollector) collectAgents(agents []*pb.Agent, gauge func(*prometheus.Desc, float64, ...string)) {
	byState := map[string]int{state.AgentUp: 0, state.AgentDown: 0}
	for _, a := range agents {
		byState[a.State]++
		g := agentGPUs(a)
		if g.devices == 0 {
			continue
		}
		gauge(descAgentGPUs, float64(g.devicesUsed), a.Id, "used")
		gauge(descAgentGPUs, float64(g.devices-g.devicesUsed), a.Id, "free")
		gauge(descAgentGPUMemory, float64(g.memUsed), a.Id, "used")
		gauge(descAgentGPUMemory, float64(max(g.mem-g.memUsed, 0)), a.Id, "free")
		gauge(descAgentNVENC, float64(g.nvencUsed), a.Id, "used")
		gauge(descAgentNVENC, float64(max(g.nvenc-g.nvencUsed, 0)), a.Id, "free")
	}
	for st, n := range byState {
		gauge(descAgents, float64(n), st)
	}
}

// gpuTotals sums an agent's GPUs and what is granted on them.
type gpuTotals struct {
	devices, devicesUsed int
	mem, memUsed         int64
	nvenc, nvencUsed     int64
}

// agentGPUs reads an agent's GPU totals from its fingerprint and use.
func agentGPUs(a *pb.Agent) gpuTotals {
	var g gpuTotals
	for _, d := range a.GetFingerprint().GetGpus() {
		g.devices++
		g.mem += d.MemoryBytes
		g.nvenc += int64(d.EncoderSessions)
	}
	for _, u := range a.GetGpuUse() {
		if u.Tasks > 0 {
			g.devicesUsed++
		}
		g.memUsed += u.MemoryBytes
		g.nvencUsed += int64(u.Nvenc)
	}
	return g
}

// jobStateName is a job state's label: "queued", "running", ...
func jobStateName(s pb.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}
