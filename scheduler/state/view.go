package state

import (
	"sort"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/placement"
	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
)

func sortStrings(s []string) { sort.Strings(s) }

// JobView returns a copy of a job for clients, with its tasks when asked;
// nil if there is no such job. Queued tasks carry the reason they cannot be
// placed when no up agent could ever hold them.
func (s *State) JobView(id string, withTasks bool) *pb.Job {
	j, ok := s.Job(id)
	if !ok {
		return nil
	}
	out := s.jobRecord(j)
	explain := s.blockedExplainer()
	for _, r := range j.rec.tasks {
		reason := blockedReason(r.t, explain)
		if reason != "" {
			out.Counts.Blocked++
		}
		if withTasks {
			tv := r.t.view()
			tv.BlockedReason = reason
			out.Tasks = append(out.Tasks, tv)
		}
	}
	return out
}

// blockedReason is why a queued task cannot be placed (explain, from
// blockedExplainer), or "" for a task in any other state.
func blockedReason(t *Task, explain func(*Task) string) string {
	if t.PB.State != pb.TaskState_TASK_STATE_QUEUED {
		return ""
	}
	return explain(t)
}

// TaskViews returns views of a job's tasks, as JobView gives them, from
// index offset on in the order they were added: at most limit of them,
// and no more than budget bytes encoded, though always one when any is
// left. total is the job's task count and pool its pool; ok is false when
// there is no such job.
func (s *State) TaskViews(id string, offset, limit, budget int) (tasks []*pb.Task, total int, pool string, ok bool) {
	j, ok := s.Job(id)
	if !ok {
		return nil, 0, "", false
	}
	total, pool = len(j.rec.tasks), j.PB.Pool
	explain := s.blockedExplainer()
	size := 0
	for i := max(offset, 0); i < total && len(tasks) < limit; i++ {
		t := j.rec.tasks[i].t
		tv := t.view()
		tv.BlockedReason = blockedReason(t, explain)
		n := tv.SizeVT() + 8 // the field's tag and length
		if len(tasks) > 0 && size+n > budget {
			break
		}
		tasks, size = append(tasks, tv), size+n
	}
	return tasks, total, pool, true
}

// jobRecord returns a copy of a job's record with its counts (blocked 0).
// The copy is a new message that shares what the state never changes in
// place (strings, the submitter; the state's record holds no tasks): a
// field-by-field copy (records.go), as a reflective proto.Clone of every
// submitted job was a tenth to a sixth of applying a submission.
func (s *State) jobRecord(j *Job) *pb.Job {
	return jobRecord(&pb.Job{}, j.PB, s.countsOf(j).pb())
}

// appliedView is the view of a job that Apply returns to the proposer of a
// submit or cancel: the job as it is, without blocked reasons (counts
// blocked 0). Apply runs on every replica and must not cost more with a
// larger fleet; the server that answers the client reads the full view
// (JobView) after the entry is applied.
func (s *State) appliedView(id string) *pb.Job {
	j, ok := s.Job(id)
	if !ok {
		return nil
	}
	return s.jobRecord(j)
}

// blockedExplainer returns a function that says why a queued task cannot be
// placed on any up agent even when idle, caching by ask shape. The agents
// are listed at the first queued task it explains.
func (s *State) blockedExplainer() func(t *Task) string {
	var nodes []placement.Node
	cache := map[string]string{}
	return func(t *Task) string {
		key := askKey(t)
		if r, ok := cache[key]; ok {
			return r
		}
		if nodes == nil {
			nodes = s.nodes()
		}
		r := explainBlocked(nodes, t)
		cache[key] = r
		return r
	}
}

// view returns a copy of the task's record with its spec.
func (t *Task) view() *pb.Task {
	out := clone(t.PB)
	out.Spec = clone(t.Spec())
	return out
}

// TaskView returns a copy of one task with its blocked reason.
func (s *State) TaskView(id string) *pb.Task {
	t, ok := s.Task(id)
	if !ok {
		return nil
	}
	out := t.view()
	if t.PB.State == pb.TaskState_TASK_STATE_QUEUED {
		out.BlockedReason = explainBlocked(s.nodes(), t)
	}
	return out
}

// PoolView returns a pool with its usage and task counts; nil if absent.
func (s *State) PoolView(path string) *pb.Pool {
	q, ok := s.pools.Get(path)
	if !ok {
		return nil
	}
	p := pb.PoolFromQuota(path, q)
	p.Warm = s.poolWarm[path]
	p.Usage = pb.FromVector(s.PoolUsage()[path])
	var queued, running int
	for _, sub := range s.pools.Paths() {
		if sub == path || (len(sub) > len(path) && sub[:len(path)+1] == path+"/") {
			qd, rn := s.PoolCounts(sub)
			queued, running = queued+qd, running+rn
		}
	}
	p.QueuedTasks, p.RunningTasks = int32(queued), int32(running)
	return p
}

// AgentView returns a copy of an agent with its usage.
func (s *State) AgentView(id string) *pb.Agent {
	a, ok := s.agents[id]
	if !ok {
		return nil
	}
	out := clone(a.PB)
	out.Used = pb.FromVector(a.Used)
	out.RunningTasks = int32(len(a.Running))
	out.GpuUse = a.gpuUse()
	if out.Drain != nil {
		out.Drain.Complete = s.drainComplete(a)
	}
	return out
}

// AgentRunning returns the attempts placed on an agent, sorted by task id.
func (s *State) AgentRunning(id string) []Cancel {
	a, ok := s.agents[id]
	if !ok {
		return nil
	}
	out := make([]Cancel, 0, len(a.Running))
	for _, tid := range sortedKeys(a.Running) {
		out = append(out, Cancel{AgentID: id, TaskID: tid, Attempt: a.Running[tid]})
	}
	return out
}

// UpAgents returns the ids of agents holding a lease, sorted.
func (s *State) UpAgents() []string {
	var out []string
	for _, id := range s.AgentIDs() {
		if s.agents[id].Up() {
			out = append(out, id)
		}
	}
	return out
}

// AssignmentFor builds what an agent needs to run the current attempt of a
// task, or nil when that attempt is no longer placed on that agent.
func (s *State) AssignmentFor(taskID string, attempt int32, agentID string) *pb.TaskAssignment {
	t, ok := s.Task(taskID)
	if !ok || t.Attempt() != attempt || t.AgentID() != agentID || !isPlaced(t.PB.State) {
		return nil
	}
	j := s.job(t.PB.JobId)
	return &pb.TaskAssignment{TaskId: taskID, Attempt: attempt, Spec: t.Spec(), JobId: t.PB.JobId,
		Class: j.PB.Class, Priority: j.PB.Priority, Gpus: t.current().GetGpus(),
		Traceparent: jobtrace.RunTraceparent(j.PB.TraceId, taskID, attempt)}
}

// PoolCost returns what a pool and its descendants used in the hours that
// end after sinceMs (whole hours: the hour holding sinceMs counts).
func (s *State) PoolCost(path string, sinceMs int64) *pb.Cost {
	var total pool.Cost
	from := sinceMs - sinceMs%3_600_000
	for p, byHour := range s.costs {
		if p != path && !strings.HasPrefix(p, path+"/") {
			continue
		}
		for h, c := range byHour {
			if h >= from {
				total = total.Add(c)
			}
		}
	}
	return costToPB(total)
}

// WarmAsk is what one reserved warm worker counts against its pool's
// guarantee while idle.
var WarmAsk = pool.Resources{CPUMillis: 100, MemoryBytes: 64 << 20}

// warmUsage returns each pool's warm reservations as resource usage.
func (s *State) warmUsage() map[string]pool.Resources {
	out := map[string]pool.Resources{}
	for path, fns := range s.poolWarm {
		for _, n := range fns {
			for i := int32(0); i < n; i++ {
				out[path] = out[path].Add(WarmAsk)
			}
		}
	}
	return out
}

// WarmTargets spreads the pools' warm reservations over the up agents that
// serve each function: agent id -> function -> workers to keep warm. Every
// agent serving a reserved function gets an entry (zero included), so one
// that no longer needs warm workers is told so.
func (s *State) WarmTargets() map[string]map[string]int32 {
	total := map[string]int32{}
	for _, fns := range s.poolWarm {
		for fn, n := range fns {
			total[fn] += n
		}
	}
	out := map[string]map[string]int32{}
	for _, fn := range sortedKeys(total) {
		var servers []string
		for _, id := range s.AgentIDs() {
			a := s.agents[id]
			if _, ok := a.PB.GetFingerprint().GetLabels()[FunctionLabel(fn)]; ok && a.Up() {
				servers = append(servers, id)
			}
		}
		for i, id := range servers {
			n := total[fn] / int32(len(servers))
			if int32(i) < total[fn]%int32(len(servers)) {
				n++
			}
			if out[id] == nil {
				out[id] = map[string]int32{}
			}
			out[id][fn] = n
		}
	}
	return out
}
