package metrics

import (
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the families of reg by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value finds the metric of fam whose labels include every name=value pair.
func value(fam *dto.MetricFamily, labels ...string) *dto.Metric {
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && have[labels[i]] == labels[i+1]
		}
		if ok {
			return m
		}
	}
	return nil
}

func TestBridgeTranslatesRaftKeys(t *testing.T) {
	b := newBridge()
	reg := prometheus.NewRegistry()
	reg.MustRegister(b)
	s := sink{b}
	s.AddSample([]string{"raft", "commitTime"}, 5)   // ms
	s.AddSample([]string{"raft", "fsm", "apply"}, 2) // ms
	s.AddSample([]string{"raft", "snapshot", "persist"}, 40)
	s.IncrCounter([]string{"raft", "state", "leader"}, 1)
	s.IncrCounter([]string{"raft", "transition", "heartbeat_timeout"}, 1)
	s.SetGauge([]string{"raft", "peers"}, 3)
	s.AddSample([]string{"raft", "unbridged"}, 1)
	f := gather(t, reg)
	if h := f["banyan_raft_commit_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 0.005 {
		t.Errorf("commit histogram: %v", h)
	}
	if m := value(f["banyan_raft_snapshot_seconds"], "phase", "persist"); m == nil || m.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("snapshot persist: %v", m)
	}
	if m := value(f["banyan_raft_state_changes_total"], "state", "leader"); m == nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("leader changes: %v", m)
	}
	if m := value(f["banyan_raft_state_changes_total"], "state", "candidate"); m == nil || m.GetCounter().GetValue() != 0 {
		t.Errorf("candidate series must exist at 0: %v", m)
	}
	if g := f["banyan_raft_peers"].GetMetric()[0].GetGauge().GetValue(); g != 3 {
		t.Errorf("peers %v", g)
	}
}

func TestStateCollector(t *testing.T) {
	st := state.New(state.DefaultDefaults)
	apply := func(c *fsmpb.Command) {
		c.NowUnixMs = 1000
		if r := st.Apply(c); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	gpus := []*pb.GPU{{Index: 0, Uuid: "GPU-0", Model: "L4", MemoryBytes: 16 << 30, EncoderSessions: 8, Encoders: 1}}
	apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1", Fingerprint: &pb.Fingerprint{
		Gpus: gpus, Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30, Gpus: 1, GpuMemoryBytes: 16 << 30, Nvenc: 8}}}}})
	apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{
		Class: pb.JobClass_JOB_CLASS_LATENCY,
		Tasks: []*pb.TaskSpec{{Command: []string{"x"}}, {Command: []string{"y"}}}}}}}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStateCollector(func(fn func(*state.State)) { fn(st) }))
	f := gather(t, reg)
	if m := value(f["banyan_queue_depth"], "pool", state.DefaultPool, "class", "latency"); m == nil || m.GetGauge().GetValue() != 2 {
		t.Errorf("latency queue depth: %v", m)
	}
	if m := value(f["banyan_queue_depth"], "pool", state.DefaultPool, "class", "batch"); m == nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("batch queue depth: %v", m)
	}
	if m := value(f["banyan_tasks"], "state", "queued"); m == nil || m.GetGauge().GetValue() != 2 {
		t.Errorf("queued tasks: %v", m)
	}
	if m := value(f["banyan_agents"], "state", "up"); m == nil || m.GetGauge().GetValue() != 1 {
		t.Errorf("agents up: %v", m)
	}
	if m := value(f["banyan_agent_nvenc_sessions"], "agent", "a1", "state", "free"); m == nil || m.GetGauge().GetValue() != 8 {
		t.Errorf("free NVENC sessions: %v", m)
	}
	if m := value(f["banyan_agent_gpu_memory_bytes"], "agent", "a1", "state", "used"); m == nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("used GPU memory: %v", m)
	}
	if m := value(f["banyan_pool_guaranteed"], "pool", state.DefaultPool, "resource", "cpu"); m == nil {
		t.Error("no guaranteed series for the default pool")
	}
}

func TestObserverSeries(t *testing.T) {
	m := New()
	m.SchedulingPass(3*time.Millisecond, 4)
	m.TaskStarted("batch", 2*time.Second)
	m.TaskFinished("failed", "exit_code")
	m.Preempted(2)
	m.FellBack(1)
	m.LeaseMissed("a1")
	f := gather(t, m.Registry)
	if v := value(f["banyan_task_submit_to_start_seconds"], "class", "batch"); v == nil || v.GetHistogram().GetSampleSum() != 2 {
		t.Errorf("submit to start: %v", v)
	}
	if v := value(f["banyan_task_outcomes_total"], "outcome", "failed", "failure_class", "exit_code"); v == nil || v.GetCounter().GetValue() != 1 {
		t.Errorf("outcomes: %v", v)
	}
	if v := f["banyan_preemptions_total"].GetMetric()[0].GetCounter().GetValue(); v != 2 {
		t.Errorf("preemptions %v", v)
	}
	if v := f["banyan_scheduling_pass_placements"].GetMetric()[0].GetHistogram().GetSampleSum(); v != 4 {
		t.Errorf("placements %v", v)
	}
	if f["go_goroutines"] == nil || f["process_cpu_seconds_total"] == nil && f["process_start_time_seconds"] == nil {
		t.Error("runtime and process collectors missing")
	}
}
