// Package sim is a discrete-event simulator of Banyan's scheduling policy.
// It drives the real state machine (scheduler/state: Plan, then Apply of the
// same commands the leader commits) on a simulated clock: commands carry the
// simulated time in NowUnixMs, exactly as the FSM sees the leader's clock.
// Agents are simulated: a placed task starts at once and finishes after a
// duration drawn from its workload. Everything is seeded: the same config
// and seed give the same numbers.
package sim

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"sigs.k8s.io/yaml"
)

// Config is a cluster and workload, read from YAML.
type Config struct {
	Seed int64 `json:"seed"`
	// Duration is the simulated time, e.g. "48h".
	Duration Dur `json:"duration"`
	// PassInterval is how often the leader's scheduling pass runs (it runs
	// only when something changed since the last one); default 1s.
	PassInterval Dur `json:"pass_interval"`
	// SampleInterval is how often usage is sampled; default 1m.
	SampleInterval Dur `json:"sample_interval"`
	// MinRuntime, PreemptRate and PreemptBurst are the leader's
	// preemption policy (defaults 5s, 10/s, 20).
	MinRuntime   Dur     `json:"min_runtime"`
	PreemptRate  float64 `json:"preempt_rate"`
	PreemptBurst int     `json:"preempt_burst"`
	// ReclaimHold is how long capacity a pool within its guarantee gave
	// back stays held for it (the server's default, 1s; negative: off).
	ReclaimHold Dur          `json:"reclaim_hold"`
	Agents      []AgentGroup `json:"agents"`
	Pools       []PoolSpec   `json:"pools"`
	Workloads   []Workload   `json:"workloads"`
	// GCMaxAge and GCMaxJobs are the leader's retention of finished jobs
	// (defaults: the server's, 24h and 10,000); the leader applies it every
	// GCInterval (default 30s), as a server does.
	GCMaxAge   Dur `json:"gc_max_age"`
	GCMaxJobs  int `json:"gc_max_jobs"`
	GCInterval Dur `json:"gc_interval"`
	// SoakInterval, when set, records the state's size every interval:
	// jobs and tasks held, snapshot bytes and the process's live heap.
	SoakInterval Dur `json:"soak_interval"`
}

// AgentGroup is Count identical agents.
type AgentGroup struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	// Capacity is in `sched pool` syntax: "cpu=32,memory=128Gi,gpu=2,nvenc=6".
	Capacity string            `json:"capacity"`
	Labels   map[string]string `json:"labels"`
}

// PoolSpec is one pool of the tree (parents before children).
type PoolSpec struct {
	Path       string `json:"path"`
	Guaranteed string `json:"guaranteed"`
	Max        string `json:"max"`
}

// Workload is a stream of jobs: Poisson arrivals of jobs of Tasks tasks.
type Workload struct {
	Name     string `json:"name"`
	Pool     string `json:"pool"`
	Class    string `json:"class"` // latency | batch | opportunistic
	Priority int32  `json:"priority"`
	// JobsPerHour is the mean arrival rate.
	JobsPerHour float64 `json:"jobs_per_hour"`
	// Tasks per job (fixed).
	Tasks int `json:"tasks"`
	// Resources of each task, e.g. "cpu=4,memory=8Gi".
	Resources string `json:"resources"`
	// TaskDuration: mean duration; Distribution is "exp" (default),
	// "fixed" or "uniform" (between Min and Max).
	TaskDuration Dur    `json:"task_duration"`
	Distribution string `json:"distribution"`
	Min          Dur    `json:"min"`
	Max          Dur    `json:"max"`
	// MaxWait bounds opportunistic work's wait (promotion at 90%).
	MaxWait Dur `json:"max_wait"`
	// FailRate is the fraction of attempts that fail (and retry).
	FailRate float64 `json:"fail_rate"`
	// Constraints as "label=value" (all must hold).
	Constraints []string `json:"constraints"`
	// Start and Stop bound the stream in simulated time (default: whole run).
	Start Dur `json:"start"`
	Stop  Dur `json:"stop"`
}

// Dur is a time.Duration written as "90s" in YAML.
type Dur time.Duration

// UnmarshalJSON reads "1h30m" (or a number of seconds).
func (d *Dur) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	if v, err := time.ParseDuration(s); err == nil {
		*d = Dur(v)
		return nil
	}
	var secs float64
	if _, err := fmt.Sscanf(s, "%g", &secs); err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Dur(time.Duration(secs * float64(time.Second)))
	return nil
}

// MarshalJSON writes the duration as text.
func (d Dur) MarshalJSON() ([]byte, error) { return []byte(`"` + time.Duration(d).String() + `"`), nil }

func (d Dur) ms() int64 { return time.Duration(d).Milliseconds() }

// Load reads a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse reads a YAML config.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("sim config: %w", err)
	}
	if c.Duration <= 0 {
		return nil, fmt.Errorf("sim config: duration is required")
	}
	if c.PassInterval <= 0 {
		c.PassInterval = Dur(time.Second)
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = Dur(time.Minute)
	}
	if c.MinRuntime <= 0 {
		c.MinRuntime = Dur(5 * time.Second)
	}
	if c.PreemptRate <= 0 {
		c.PreemptRate = 10
	}
	if c.PreemptBurst <= 0 {
		c.PreemptBurst = 20
	}
	if c.ReclaimHold == 0 {
		c.ReclaimHold = Dur(time.Second)
	}
	if c.GCMaxAge <= 0 {
		c.GCMaxAge = Dur(time.Duration(state.DefaultRetention.MaxAgeMs) * time.Millisecond)
	}
	if c.GCMaxJobs <= 0 {
		c.GCMaxJobs = state.DefaultRetention.MaxJobs
	}
	if c.GCInterval <= 0 {
		c.GCInterval = Dur(30 * time.Second)
	}
	if len(c.Agents) == 0 || len(c.Workloads) == 0 {
		return nil, fmt.Errorf("sim config: agents and workloads are required")
	}
	return c, nil
}

// ScaleRate multiplies the arrival rate of the workload named name by
// factor: one farm file then serves several loads.
func (c *Config) ScaleRate(name string, factor float64) error {
	if !(factor > 0) || math.IsInf(factor, 0) {
		return fmt.Errorf("sim config: rate factor %v for %s: want a positive number", factor, name)
	}
	for i := range c.Workloads {
		if c.Workloads[i].Name == name {
			c.Workloads[i].JobsPerHour *= factor
			return nil
		}
	}
	return fmt.Errorf("sim config: no workload named %q", name)
}

// Report is what a run measured.
type Report struct {
	Seed           int64   `json:"seed"`
	SimulatedHours float64 `json:"simulated_hours"`
	Agents         int     `json:"agents"`
	// Utilization is the time-weighted share of cluster cpu in use.
	Utilization    float64                `json:"utilization"`
	JobsSubmitted  int                    `json:"jobs_submitted"`
	JobsFinished   int                    `json:"jobs_finished"`
	TasksSubmitted int                    `json:"tasks_submitted"`
	AttemptsPlaced int                    `json:"attempts_placed"`
	TasksSucceeded int                    `json:"tasks_succeeded"`
	Preemptions    int                    `json:"preemptions"`
	Passes         int                    `json:"passes"`
	QueuedAtEnd    int                    `json:"queued_at_end"`
	Pools          []PoolReport           `json:"pools"`
	Wait           map[string]Percentiles `json:"queue_wait_s"`
	WallSeconds    float64                `json:"wall_seconds"`
	// JobsRemoved counts the finished jobs retention removed.
	JobsRemoved int `json:"jobs_removed"`
	// Soak is the state's size over time (Config.SoakInterval).
	Soak []SoakPoint `json:"soak,omitempty"`
}

// SoakPoint is the state's size at one moment of a run.
type SoakPoint struct {
	Hours float64 `json:"hours"`
	// TasksDone counts the tasks that succeeded since the start.
	TasksDone     int   `json:"tasks_done"`
	Jobs          int   `json:"jobs"`
	Tasks         int   `json:"tasks"`
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// HeapBytes is the process's live heap after a collection: the state
	// and the simulator's own bookkeeping, which is bounded too.
	HeapBytes uint64 `json:"heap_bytes"`
}

// PoolReport compares a pool's time-weighted cpu share with its guarantee.
type PoolReport struct {
	Path string `json:"path"`
	// Share and Guarantee are fractions of cluster cpu.
	Share       float64 `json:"share"`
	Guarantee   float64 `json:"guarantee"`
	Preempted   int     `json:"preempted"`
	TasksPlaced int     `json:"tasks_placed"`
}

// Percentiles of queue wait (queued to placed), in seconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// event kinds.
const (
	evArrival = iota
	evFinish
)

type event struct {
	at      int64
	seq     uint64 // ties break in creation order: deterministic
	kind    int
	wl      int // arrival: workload index
	taskID  string
	attempt int32
	agentID string
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(a, b int) bool {
	if h[a].at != h[b].at {
		return h[a].at < h[b].at
	}
	return h[a].seq < h[b].seq
}
func (h eventHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type workload struct {
	Workload
	ask   *pb.Resources
	class pb.JobClass
	cons  []*pb.Constraint
}

type simulator struct {
	cfg    *Config
	rng    *rand.Rand
	st     *state.State
	wls    []workload
	evs    eventHeap
	seq    uint64
	now    int64
	dirty  bool
	bucket pool.RateLimiter
	peaks  *state.UsagePeaks

	taskWL        map[string]int // task id -> workload index
	waits         map[string][]float64
	rep           Report
	cpuSec        map[string]float64 // pool -> cpu-millis x ms used
	busy          float64
	clusterCPU    int64
	poolPreempted map[string]int
	poolPlaced    map[string]int
	tasksDone     int // tasks that succeeded
	waitSeen      map[string]int
	waitMax       map[string]float64
}

// Run simulates the config and returns the report.
func Run(c *Config) (*Report, error) {
	wallStart := time.Now()
	s := &simulator{cfg: c, rng: rand.New(rand.NewPCG(uint64(c.Seed), 0x62616e79616e)),
		st: state.New(state.DefaultDefaults), taskWL: map[string]int{}, waits: map[string][]float64{},
		cpuSec: map[string]float64{}, poolPreempted: map[string]int{}, poolPlaced: map[string]int{}, waitSeen: map[string]int{}, waitMax: map[string]float64{}}
	s.bucket = pool.RateLimiter{PerSecond: c.PreemptRate, Burst: c.PreemptBurst}
	s.peaks = state.NewUsagePeaks(c.ReclaimHold.ms())
	if err := s.setup(); err != nil {
		return nil, err
	}
	end := c.Duration.ms()
	nextPass := int64(0)
	nextSample := int64(0)
	sampleMs := c.SampleInterval.ms()
	nextGC := c.GCInterval.ms()
	const never = math.MaxInt64
	nextSoak := int64(never)
	if c.SoakInterval > 0 {
		nextSoak = 0
	}
	for {
		// The next thing to happen: an event, a pass, a sample, a GC or a
		// soak reading.
		t := min(nextPass, nextSample, nextGC, nextSoak)
		if len(s.evs) > 0 && s.evs[0].at < t {
			t = s.evs[0].at
		}
		if t > end {
			break
		}
		s.now = t
		switch {
		case len(s.evs) > 0 && s.evs[0].at == t:
			s.handle(heap.Pop(&s.evs).(*event))
		case t == nextSample:
			s.sample(sampleMs)
			nextSample += sampleMs
		case t == nextGC:
			s.gc()
			nextGC += c.GCInterval.ms()
		case t == nextSoak:
			s.soak()
			nextSoak += c.SoakInterval.ms()
		default:
			if s.dirty {
				s.pass()
			}
			nextPass += c.PassInterval.ms()
		}
	}
	s.finishReport(end)
	s.rep.WallSeconds = time.Since(wallStart).Seconds()
	return &s.rep, nil
}

func (s *simulator) apply(cmd *fsmpb.Command) *state.Result {
	cmd.NowUnixMs = s.now
	r := s.st.Apply(cmd)
	s.dirty = true
	return r
}

func (s *simulator) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.evs, e)
}

func (s *simulator) setup() error {
	for _, p := range s.cfg.Pools {
		wp := &pb.Pool{Path: p.Path}
		if p.Guaranteed != "" {
			g, err := pool.ParseResources(p.Guaranteed)
			if err != nil {
				return fmt.Errorf("pool %s guaranteed: %w", p.Path, err)
			}
			wp.Guaranteed = pb.FromVector(g)
		}
		if p.Max != "" {
			m, names, err := pool.ParseResourcesNamed(p.Max)
			if err != nil {
				return fmt.Errorf("pool %s max: %w", p.Path, err)
			}
			wp.Max, wp.MaxSet = pb.FromVector(m), names
		}
		_, exists := s.st.Pools().Get(p.Path)
		if r := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: wp, Create: !exists}}}); r.Err != nil {
			return fmt.Errorf("pool %s: %w", p.Path, r.Err)
		}
	}
	n := 0
	for _, g := range s.cfg.Agents {
		capv, err := pool.ParseResources(g.Capacity)
		if err != nil {
			return fmt.Errorf("agent group %s capacity: %w", g.Name, err)
		}
		for i := 0; i < g.Count; i++ {
			id := fmt.Sprintf("%s-%05d", g.Name, i)
			labels := map[string]string{"hostname": id, "group": g.Name}
			for k, v := range g.Labels {
				labels[k] = v
			}
			fp := &pb.Fingerprint{Hostname: id, Capacity: pb.FromVector(capv), Labels: labels}
			if r := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: id, Fingerprint: fp}}}); r.Err != nil {
				return fmt.Errorf("agent %s: %w", id, r.Err)
			}
			s.clusterCPU += capv.CPUMillis
			n++
		}
	}
	s.rep.Agents = n
	for i, w := range s.cfg.Workloads {
		ask, err := pool.ParseResources(w.Resources)
		if err != nil {
			return fmt.Errorf("workload %s resources: %w", w.Name, err)
		}
		wl := workload{Workload: w, ask: pb.FromVector(ask)}
		switch strings.ToLower(w.Class) {
		case "latency":
			wl.class = pb.JobClass_JOB_CLASS_LATENCY
		case "", "batch":
			wl.class = pb.JobClass_JOB_CLASS_BATCH
		case "opportunistic":
			wl.class = pb.JobClass_JOB_CLASS_OPPORTUNISTIC
		default:
			return fmt.Errorf("workload %s: unknown class %q", w.Name, w.Class)
		}
		for _, c := range w.Constraints {
			k, v, ok := strings.Cut(c, "=")
			if !ok {
				return fmt.Errorf("workload %s: constraint %q is not label=value", w.Name, c)
			}
			wl.cons = append(wl.cons, &pb.Constraint{Label: k, Op: "=", Value: v})
		}
		if wl.Tasks <= 0 {
			wl.Tasks = 1
		}
		if wl.JobsPerHour <= 0 {
			return fmt.Errorf("workload %s: jobs_per_hour must be positive", w.Name)
		}
		s.wls = append(s.wls, wl)
		s.scheduleArrival(i, wl.Start.ms())
	}
	return nil
}

// scheduleArrival draws the workload's next arrival after `after`.
func (s *simulator) scheduleArrival(i int, after int64) {
	w := s.wls[i]
	gap := s.rng.ExpFloat64() * 3_600_000 / w.JobsPerHour
	at := after + int64(gap)
	if w.Stop > 0 && at > w.Stop.ms() {
		return
	}
	s.push(&event{at: at, kind: evArrival, wl: i})
}

func (s *simulator) handle(e *event) {
	switch e.kind {
	case evArrival:
		w := s.wls[e.wl]
		spec := &pb.JobSpec{Name: w.Name, Pool: w.Pool, Class: w.class, Priority: w.Priority, MaxWaitMs: w.MaxWait.ms()}
		for i := 0; i < w.Tasks; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{w.Name}, Resources: w.ask, Constraints: w.cons})
		}
		r := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{spec}}}})
		if r.Err == nil {
			s.rep.JobsSubmitted++
			s.rep.TasksSubmitted += w.Tasks
			if j, ok := s.st.Job(r.Jobs[0].Id); ok {
				for _, id := range j.TaskIDs() {
					s.taskWL[id] = e.wl
				}
			}
		}
		s.scheduleArrival(e.wl, e.at)
	case evFinish:
		outcome := "succeeded"
		if fr := s.wls[s.taskWL[e.taskID]].FailRate; fr > 0 && s.rng.Float64() < fr {
			outcome = "failed"
		}
		s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
			AgentId: e.agentID, Events: []*pb.TaskEvent{{TaskId: e.taskID, Attempt: e.attempt, Kind: "finished",
				Outcome: outcome, UnixMs: s.now}}}}}}})
		if t, ok := s.st.Task(e.taskID); ok && t.PB.State == pb.TaskState_TASK_STATE_SUCCEEDED {
			s.tasksDone++
		}
	}
}

// pass is one leader scheduling pass: fallbacks, promotions, then Plan and
// the Assign it commits, as the leader loop does.
func (s *simulator) pass() {
	s.rep.Passes++
	s.dirty = false
	for i := 0; i < 64; i++ { // the leader repeats passes while they place work
		if fb := s.st.DueFallbacks(s.now); len(fb) > 0 {
			s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Fallback{Fallback: &fsmpb.Fallback{TaskIds: fb}}})
			continue
		}
		if pr := s.st.DuePromotions(s.now); len(pr) > 0 {
			s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{JobIds: pr}}})
			continue
		}
		lim := state.DefaultPlanLimits
		lim.PreemptBudget = s.bucket.Available(s.now)
		lim.MinRuntimeMs = s.cfg.MinRuntime.ms()
		lim.Held = s.st.HeldBack(s.peaks, s.now)
		plan := s.st.Plan(s.now, lim)
		if len(plan.Assignments) == 0 && len(plan.Preemptions) == 0 {
			break
		}
		s.bucket.Allow(s.now, len(plan.Preemptions))
		// Queue waits are read before Apply changes the attempts.
		queued := map[string]int64{}
		for _, a := range plan.Assignments {
			if t, ok := s.st.Task(a.TaskId); ok {
				queued[a.TaskId] = t.PB.QueuedUnixMs // the attempt record is made only when placed
			}
		}
		r := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: plan}})
		for _, c := range r.Cancels {
			s.rep.Preemptions++
			if t, ok := s.st.Task(c.TaskID); ok {
				if j, ok := s.st.Job(t.PB.JobId); ok {
					s.poolPreempted[j.PB.Pool]++
				}
			}
		}
		if len(r.Assigned) == 0 {
			break
		}
		started := map[string][]*pb.TaskEvent{}
		for _, a := range r.Assigned {
			s.rep.AttemptsPlaced++
			wl := s.wls[s.taskWL[a.TaskId]]
			s.poolPlaced[wl.Pool]++
			s.recordWait(wl.Name, float64(s.now-queued[a.TaskId])/1000)
			started[a.AgentId] = append(started[a.AgentId], &pb.TaskEvent{TaskId: a.TaskId, Attempt: a.Attempt,
				Kind: "started", UnixMs: s.now})
			s.push(&event{at: s.now + s.duration(wl), kind: evFinish, taskID: a.TaskId, attempt: a.Attempt, agentID: a.AgentId})
		}
		ev := &fsmpb.ReportEvents{}
		for _, id := range sortedKeys(started) {
			ev.Agents = append(ev.Agents, &fsmpb.AgentEvents{AgentId: id, Events: started[id]})
		}
		s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: ev}})
	}
}

func (s *simulator) duration(w workload) int64 {
	mean := float64(w.TaskDuration.ms())
	var d float64
	switch w.Distribution {
	case "fixed":
		d = mean
	case "uniform":
		lo, hi := float64(w.Min.ms()), float64(w.Max.ms())
		d = lo + s.rng.Float64()*(hi-lo)
	default:
		d = s.rng.ExpFloat64() * mean
	}
	return max(1, int64(math.Round(d)))
}

// sample integrates pool usage over the sample interval.
func (s *simulator) sample(ms int64) {
	usage := s.st.PoolUsage()
	for _, p := range s.st.Pools().Paths() {
		s.cpuSec[p] += float64(usage[p].CPUMillis) * float64(ms)
		if pool.Parent(p) == "" {
			s.busy += float64(usage[p].CPUMillis) * float64(ms)
		}
	}
}

func (s *simulator) finishReport(end int64) {
	s.rep.Seed = s.cfg.Seed
	s.rep.SimulatedHours = float64(end) / 3_600_000
	samples := float64(end/s.cfg.SampleInterval.ms()+1) * float64(s.cfg.SampleInterval.ms())
	denom := float64(s.clusterCPU) * samples
	if denom > 0 {
		s.rep.Utilization = s.busy / denom
	}
	for _, p := range s.st.Pools().Paths() {
		q, _ := s.st.Pools().Get(p)
		pr := PoolReport{Path: p, Preempted: s.poolPreempted[p], TasksPlaced: s.poolPlaced[p]}
		if denom > 0 {
			pr.Share = s.cpuSec[p] / denom
		}
		if s.clusterCPU > 0 {
			pr.Guarantee = float64(q.Guaranteed.CPUMillis) / float64(s.clusterCPU)
		}
		s.rep.Pools = append(s.rep.Pools, pr)
	}
	s.rep.Wait = map[string]Percentiles{}
	for name, w := range s.waits {
		sort.Float64s(w)
		at := func(p float64) float64 { return w[int(float64(len(w)-1)*p)] }
		s.rep.Wait[name] = Percentiles{N: s.waitSeen[name], P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: s.waitMax[name]}
	}
	s.rep.QueuedAtEnd = s.st.QueueLen()
	s.rep.JobsFinished = s.rep.JobsRemoved // retention removes finished jobs only
	for _, id := range s.st.JobIDs() {
		j, _ := s.st.Job(id)
		if state.IsJobFinal(j.PB.State) {
			s.rep.JobsFinished++
		}
	}
	s.rep.TasksSucceeded = s.tasksDone
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Format renders a report as text.
func (r *Report) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %.1f simulated hours, %d agents (%.1fs wall, %d passes)\n", r.Seed, r.SimulatedHours,
		r.Agents, r.WallSeconds, r.Passes)
	fmt.Fprintf(&b, "utilization %.1f%% of cluster cpu\n", 100*r.Utilization)
	fmt.Fprintf(&b, "jobs %d submitted, %d finished; tasks %d submitted, %d succeeded, %d attempts placed, %d queued at end\n",
		r.JobsSubmitted, r.JobsFinished, r.TasksSubmitted, r.TasksSucceeded, r.AttemptsPlaced, r.QueuedAtEnd)
	fmt.Fprintf(&b, "preemptions %d; finished jobs removed by retention %d\n\n", r.Preemptions, r.JobsRemoved)
	fmt.Fprintf(&b, "%-24s %8s %10s %9s %8s\n", "POOL", "SHARE", "GUARANTEE", "PREEMPTED", "PLACED")
	for _, p := range r.Pools {
		fmt.Fprintf(&b, "%-24s %7.1f%% %9.1f%% %9d %8d\n", p.Path, 100*p.Share, 100*p.Guarantee, p.Preempted, p.TasksPlaced)
	}
	fmt.Fprintf(&b, "\n%-24s %8s %9s %9s %9s %9s\n", "WORKLOAD (queue wait s)", "N", "P50", "P90", "P99", "MAX")
	for _, name := range sortedKeys(r.Wait) {
		w := r.Wait[name]
		fmt.Fprintf(&b, "%-24s %8d %9.1f %9.1f %9.1f %9.1f\n", name, w.N, w.P50, w.P90, w.P99, w.Max)
	}
	if len(r.Soak) > 0 {
		fmt.Fprintf(&b, "\n%8s %12s %8s %10s %14s %10s\n", "HOURS", "TASKS DONE", "JOBS", "TASKS", "SNAPSHOT", "HEAP")
		for _, p := range r.Soak {
			fmt.Fprintf(&b, "%8.0f %12d %8d %10d %12.1f MiB %6.1f MiB\n", p.Hours, p.TasksDone, p.Jobs, p.Tasks,
				float64(p.SnapshotBytes)/(1<<20), float64(p.HeapBytes)/(1<<20))
		}
	}
	return b.String()
}

// gc applies retention as the leader does: the finished jobs listed and
// sorted once, then removed in batches, one GCJobs entry each.
func (s *simulator) gc() {
	r := state.Retention{MaxAgeMs: s.cfg.GCMaxAge.ms(), MaxJobs: s.cfg.GCMaxJobs}
	due := state.DueForGC(s.st.FinishedJobs(), s.now, r, 0)
	for len(due) > 0 {
		batch := due[:min(len(due), state.GCBatch)]
		due = due[len(batch):]
		for _, id := range batch {
			if j, ok := s.st.Job(id); ok {
				for _, tid := range j.TaskIDs() {
					delete(s.taskWL, tid)
				}
			}
		}
		res := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_GcJobs{GcJobs: &fsmpb.GCJobs{JobIds: batch}}})
		s.rep.JobsRemoved += len(res.Removed)
	}
}

// soak records the state's size now.
func (s *simulator) soak() {
	var size countWriter
	if err := s.st.WriteSnapshot(&size); err != nil {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.rep.Soak = append(s.rep.Soak, SoakPoint{Hours: float64(s.now) / 3_600_000, TasksDone: s.tasksDone,
		Jobs: len(s.st.JobIDs()), Tasks: s.st.TaskCount(), SnapshotBytes: int64(size), HeapBytes: ms.HeapAlloc})
}

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// maxWaitSamples bounds the queue waits kept per workload; past it a
// reservoir sample keeps the percentiles honest and the memory flat.
const maxWaitSamples = 200_000

func (s *simulator) recordWait(name string, v float64) {
	w := s.waits[name]
	s.waitSeen[name]++
	s.waitMax[name] = max(s.waitMax[name], v)
	if len(w) < maxWaitSamples {
		s.waits[name] = append(w, v)
		return
	}
	if i := s.rng.IntN(s.waitSeen[name]); i < maxWaitSamples {
		w[i] = v
	}
}
