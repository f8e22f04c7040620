package web

import (
	"sort"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/state"
)

// The views are what the JSON endpoints answer. They are built from the
// state by pure functions (given the state, what the caller may read and
// the time), so the handlers only add I/O. Times are Unix milliseconds, 0
// when not reached; enum values are the words the CLI prints.

// JobFilter selects jobs for the jobs list.
type JobFilter struct {
	// Pool keeps only jobs of this pool ("" for all).
	Pool string
	// State keeps only jobs in this state: "queued", "running",
	// "succeeded", "failed", "cancelled" ("" for all).
	State string
	// Name keeps only jobs whose name or id contains it, case-insensitively.
	Name string
	// Limit caps the answer (0: DefaultJobLimit).
	Limit int
}

// DefaultJobLimit is how many jobs the list shows unless asked otherwise.
const DefaultJobLimit = 200

// JobSummary is one line of the jobs list.
type JobSummary struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Pool        string     `json:"pool"`
	Class       string     `json:"class"`
	Priority    int32      `json:"priority"`
	State       string     `json:"state"`
	Reason      string     `json:"reason,omitempty"`
	SubmittedMs int64      `json:"submitted_unix_ms"`
	FinishedMs  int64      `json:"finished_unix_ms,omitempty"`
	Counts      TaskCounts `json:"counts"`
}

// TaskCounts counts a job's tasks by state.
type TaskCounts struct {
	Total     int32 `json:"total"`
	Waiting   int32 `json:"waiting"`
	Queued    int32 `json:"queued"`
	Running   int32 `json:"running"`
	Succeeded int32 `json:"succeeded"`
	Failed    int32 `json:"failed"`
	Cancelled int32 `json:"cancelled"`
	Blocked   int32 `json:"blocked"`
	Replaced  int32 `json:"replaced"`
}

// JobList is the answer of /api/jobs.
type JobList struct {
	Jobs []JobSummary `json:"jobs"`
	// Pools are the pools the caller may read, for the filter.
	Pools []string `json:"pools"`
	// More is true when the limit cut the list.
	More bool `json:"more,omitempty"`
}

// JobDetail is the answer of /api/jobs/{id}: the job, its tasks grouped
// in stages, and the time the view was taken (to draw running bars).
type JobDetail struct {
	Job JobSummary `json:"job"`
	// Encode is true for a job built by `sched encode` (it has a plan
	// task): its stages are the encoder's.
	Encode bool    `json:"encode"`
	Stages []Stage `json:"stages"`
	NowMs  int64   `json:"now_unix_ms"`
}

// Stage is a group of a job's tasks on the timeline.
type Stage struct {
	Key   string     `json:"key"`
	Label string     `json:"label"`
	Tasks []TaskView `json:"tasks"`
}

// TaskView is one task of a job with its attempts.
type TaskView struct {
	ID            string        `json:"id"`
	Name          string        `json:"name"`
	State         string        `json:"state"`
	BlockedReason string        `json:"blocked_reason,omitempty"`
	RetriesUsed   int32         `json:"retries_used,omitempty"`
	LostAttempts  int32         `json:"lost_attempts,omitempty"`
	NotBeforeMs   int64         `json:"not_before_unix_ms,omitempty"`
	QueuedMs      int64         `json:"queued_unix_ms,omitempty"`
	ReplacedBy    string        `json:"replaced_by,omitempty"`
	Replaces      string        `json:"replaces,omitempty"`
	After         []string      `json:"after,omitempty"`
	Attempts      []AttemptView `json:"attempts"`
}

// AttemptView is one attempt of a task: its wait (queued to placed, or to
// started when it was placed and started together) and its run (started
// to finished).
type AttemptView struct {
	Number       int32    `json:"number"`
	AgentID      string   `json:"agent_id,omitempty"`
	QueuedMs     int64    `json:"queued_unix_ms,omitempty"`
	PlacedMs     int64    `json:"placed_unix_ms,omitempty"`
	StartedMs    int64    `json:"started_unix_ms,omitempty"`
	FinishedMs   int64    `json:"finished_unix_ms,omitempty"`
	Outcome      string   `json:"outcome,omitempty"`
	FailureClass string   `json:"failure_class,omitempty"`
	ExitCode     int32    `json:"exit_code,omitempty"`
	Error        string   `json:"error,omitempty"`
	GPUs         []string `json:"gpus,omitempty"`
	// Retry is true for an attempt that follows a failed one (it used a
	// retry); a requeue after a preemption or a lost agent is not a retry.
	Retry bool `json:"retry,omitempty"`
}

// PoolTree is the answer of /api/pools: the numbers of
// `sched pool tree -o json`, per resource.
type PoolTree struct {
	Resources []string   `json:"resources"`
	Cluster   []Quantity `json:"cluster"`
	Warnings  []string   `json:"warnings,omitempty"`
	Pools     []PoolLine `json:"pools"`
}

// Quantity is an amount of one resource, as a number and for people.
type Quantity struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Text  string `json:"text"`
}

// PoolLine is one pool of the tree, in depth-first order.
type PoolLine struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Parent  string `json:"parent,omitempty"`
	Depth   int    `json:"depth"`
	Queued  int32  `json:"queued_tasks"`
	Running int32  `json:"running_tasks"`
	// Warm are the warm workers reserved per function.
	Warm      map[string]int32 `json:"warm,omitempty"`
	Resources []PoolResource   `json:"resources"`
}

// PoolResource is one resource of a pool: used, guaranteed and max (nil:
// no ceiling), and whether the pool borrows (uses above its guarantee).
type PoolResource struct {
	Name       string `json:"name"`
	Used       int64  `json:"used"`
	Guaranteed int64  `json:"guaranteed"`
	Max        *int64 `json:"max"`
	Borrowing  bool   `json:"borrowing"`
	Text       string `json:"text"`
}

// AgentList is the answer of /api/agents.
type AgentList struct {
	Agents []AgentView `json:"agents"`
}

// AgentView is one agent with its capacity, usage and GPUs.
type AgentView struct {
	ID                  string     `json:"id"`
	State               string     `json:"state"`
	Hostname            string     `json:"hostname,omitempty"`
	Address             string     `json:"address,omitempty"`
	CPUModel            string     `json:"cpu_model,omitempty"`
	CPUCores            int32      `json:"cpu_cores,omitempty"`
	Capacity            []Quantity `json:"capacity"`
	Used                []Quantity `json:"used"`
	RunningTasks        int32      `json:"running_tasks"`
	Ineligible          bool       `json:"ineligible,omitempty"`
	Draining            bool       `json:"draining,omitempty"`
	NVENCSystemSessions int32      `json:"nvenc_system_sessions,omitempty"`
	GPUs                []GPUView  `json:"gpus"`
}

// GPUView is one GPU of an agent with what is placed on it.
type GPUView struct {
	Index           int32  `json:"index"`
	UUID            string `json:"uuid,omitempty"`
	Model           string `json:"model,omitempty"`
	MemoryBytes     int64  `json:"memory_bytes"`
	Memory          string `json:"memory"`
	EncoderSessions int32  `json:"encoder_sessions"`
	NVENCLimit      string `json:"nvenc_limit,omitempty"`
	Encoders        int32  `json:"encoders,omitempty"`
	MIG             int    `json:"mig_instances,omitempty"`
	Unhealthy       string `json:"unhealthy,omitempty"`
	UsedMemoryBytes int64  `json:"used_memory_bytes"`
	UsedMemory      string `json:"used_memory"`
	NVENCInUse      int32  `json:"nvenc_sessions_used"`
	Tasks           int32  `json:"tasks"`
	Whole           bool   `json:"whole,omitempty"`
}

// enumWord is an enum's name without its type prefix, in lower case
// (JOB_STATE_RUNNING -> "running"), as the CLI prints it.
func enumWord(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

func jobSummary(j *pb.Job) JobSummary {
	c := j.GetCounts()
	return JobSummary{ID: j.Id, Name: j.Name, Pool: j.Pool, Class: enumWord(j.Class.String(), "JOB_CLASS_"),
		Priority: j.Priority, State: enumWord(j.State.String(), "JOB_STATE_"), Reason: j.Reason,
		SubmittedMs: j.SubmittedUnixMs, FinishedMs: j.FinishedUnixMs,
		Counts: TaskCounts{Total: c.GetTotal(), Waiting: c.GetWaiting(), Queued: c.GetQueued(), Running: c.GetRunning(),
			Succeeded: c.GetSucceeded(), Failed: c.GetFailed(), Cancelled: c.GetCancelled(), Blocked: c.GetBlocked(),
			Replaced: c.GetReplaced()}}
}

// BuildJobList lists the jobs the caller may read that pass f, newest
// first.
func BuildJobList(st *state.State, a Access, f JobFilter) JobList {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultJobLimit
	}
	name := strings.ToLower(f.Name)
	out := JobList{Jobs: []JobSummary{}, Pools: []string{}}
	for _, p := range st.Pools().Paths() {
		if a.CanReadPool(p) {
			out.Pools = append(out.Pools, p)
		}
	}
	ids := st.JobIDs()
	for i := len(ids) - 1; i >= 0; i-- {
		j, _ := st.Job(ids[i])
		jp := j.PB
		switch {
		case f.Pool != "" && jp.Pool != f.Pool,
			f.State != "" && enumWord(jp.State.String(), "JOB_STATE_") != f.State,
			name != "" && !strings.Contains(strings.ToLower(jp.Name), name) && !strings.Contains(jp.Id, name),
			!a.CanReadPool(jp.Pool):
			continue
		}
		if len(out.Jobs) == limit {
			out.More = true
			break
		}
		out.Jobs = append(out.Jobs, jobSummary(st.JobView(ids[i], false)))
	}
	return out
}

// BuildJobDetail returns one job with its tasks in stages; ok is false
// when there is no such job, readable reports whether the caller may read
// its pool (the detail is empty when not).
func BuildJobDetail(st *state.State, a Access, id string, nowMs int64) (d JobDetail, ok, readable bool) {
	j := st.JobView(id, true)
	if j == nil {
		return JobDetail{}, false, false
	}
	if !a.CanReadPool(j.Pool) {
		return JobDetail{}, true, false
	}
	tasks := make([]TaskView, 0, len(j.Tasks))
	names := map[string]string{} // task id -> name
	for _, t := range j.Tasks {
		names[t.Id] = t.Name
	}
	replaces := map[string]string{} // fallback id -> id of the task it replaced
	for _, t := range j.Tasks {
		if t.ReplacedBy != "" {
			replaces[t.ReplacedBy] = t.Id
		}
	}
	for _, t := range j.Tasks {
		tasks = append(tasks, taskView(t, replaces[t.Id]))
	}
	d = JobDetail{Job: jobSummary(j), NowMs: nowMs}
	d.Encode, d.Stages = GroupStages(tasks)
	return d, true, true
}

func taskView(t *pb.Task, replaces string) TaskView {
	v := TaskView{ID: t.Id, Name: t.Name, State: enumWord(t.State.String(), "TASK_STATE_"),
		BlockedReason: t.BlockedReason, RetriesUsed: t.RetriesUsed, LostAttempts: t.LostAttempts,
		NotBeforeMs: t.NotBeforeUnixMs, QueuedMs: t.QueuedUnixMs, ReplacedBy: t.ReplacedBy, Replaces: replaces,
		After: t.GetSpec().GetAfter(), Attempts: make([]AttemptView, 0, len(t.Attempts))}
	prevFailed := false
	for _, at := range t.Attempts {
		av := AttemptView{Number: at.Number, AgentID: at.AgentId, QueuedMs: at.QueuedUnixMs, PlacedMs: at.PlacedUnixMs,
			StartedMs: at.StartedUnixMs, FinishedMs: at.FinishedUnixMs, Outcome: at.Outcome,
			FailureClass: at.FailureClass, ExitCode: at.ExitCode, Error: at.Error, Retry: prevFailed}
		for _, g := range at.Gpus {
			av.GPUs = append(av.GPUs, g.Uuid)
		}
		v.Attempts = append(v.Attempts, av)
		prevFailed = at.Outcome == "failed" || at.Outcome == "timeout"
	}
	return v
}

// BuildPoolTree returns the pools the caller may read with the numbers of
// `sched pool tree -o json`: usage, guaranteed and max per resource. A
// pool whose parent is not shown is drawn as a top.
func BuildPoolTree(st *state.State, a Access) PoolTree {
	cluster := st.Cluster()
	out := PoolTree{Resources: pool.ResourceNames, Cluster: quantities(cluster),
		Warnings: st.Pools().OverCommit(cluster), Pools: []PoolLine{}}
	byPath := map[string]*pb.Pool{}
	children := map[string][]string{}
	var paths []string
	for _, p := range st.Pools().Paths() {
		if a.CanReadPool(p) {
			byPath[p] = st.PoolView(p)
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		parent := pool.Parent(p)
		if byPath[parent] == nil {
			parent = ""
		}
		children[parent] = append(children[parent], p)
	}
	var walk func(path, parent string, depth int)
	walk = func(path, parent string, depth int) {
		out.Pools = append(out.Pools, poolLine(byPath[path], parent, depth))
		for _, k := range children[path] {
			walk(k, path, depth+1)
		}
	}
	for _, top := range children[""] {
		walk(top, "", 0)
	}
	return out
}

func poolLine(p *pb.Pool, parent string, depth int) PoolLine {
	q, _ := pb.QuotaFromPool(p) // a pool from the state always converts
	used := p.Usage.Vector()
	l := PoolLine{Path: p.Path, Name: p.Path[strings.LastIndex(p.Path, "/")+1:], Parent: parent, Depth: depth,
		Queued: p.QueuedTasks, Running: p.RunningTasks, Warm: p.Warm}
	for i, n := range pool.ResourceNames {
		u, _ := used.Get(n)
		g, _ := q.Guaranteed.Get(n)
		r := PoolResource{Name: n, Used: u, Guaranteed: g, Borrowing: u > g}
		m := "-"
		if mv, set := q.MaxOf(i); set {
			r.Max = &mv
			m = pool.FormatQuantity(n, mv)
		}
		r.Text = pool.FormatQuantity(n, u) + "/" + pool.FormatQuantity(n, g) + "/" + m
		l.Resources = append(l.Resources, r)
	}
	return l
}

func quantities(r pool.Resources) []Quantity {
	out := make([]Quantity, 0, len(pool.ResourceNames))
	for _, n := range pool.ResourceNames {
		v, _ := r.Get(n)
		out = append(out, Quantity{Name: n, Value: v, Text: pool.FormatQuantity(n, v)})
	}
	return out
}

// BuildAgents lists the agents with their GPUs and what is placed on them.
func BuildAgents(st *state.State) AgentList {
	out := AgentList{Agents: []AgentView{}}
	for _, id := range st.AgentIDs() {
		out.Agents = append(out.Agents, agentView(st.AgentView(id)))
	}
	return out
}

func agentView(a *pb.Agent) AgentView {
	fp := a.GetFingerprint()
	v := AgentView{ID: a.Id, State: a.State, Hostname: fp.GetHostname(), Address: a.Address, CPUModel: fp.GetCpuModel(),
		CPUCores: fp.GetCpuCores(), Capacity: quantities(fp.GetCapacity().Vector()), Used: quantities(a.Used.Vector()),
		RunningTasks: a.RunningTasks, Ineligible: a.Ineligible, Draining: a.Drain != nil,
		NVENCSystemSessions: fp.GetNvencSystemSessions(), GPUs: []GPUView{}}
	use := map[int32]*pb.GPUUse{}
	for _, u := range a.GpuUse {
		use[u.Index] = u
	}
	for _, g := range fp.GetGpus() {
		u := use[g.Index]
		v.GPUs = append(v.GPUs, GPUView{Index: g.Index, UUID: g.Uuid, Model: g.Model, MemoryBytes: g.MemoryBytes,
			Memory: pool.FormatBytes(g.MemoryBytes), EncoderSessions: g.EncoderSessions,
			NVENCLimit: enumWord(g.NvencLimit.String(), "NVENC_LIMIT_"), Encoders: g.Encoders, MIG: len(g.Mig),
			Unhealthy: g.Unhealthy, UsedMemoryBytes: u.GetMemoryBytes(), UsedMemory: pool.FormatBytes(u.GetMemoryBytes()),
			NVENCInUse: u.GetNvenc(), Tasks: u.GetTasks(), Whole: u.GetWhole()})
	}
	return v
}
