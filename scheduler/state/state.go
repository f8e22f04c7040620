// Package state is the scheduler's replicated state machine: jobs, tasks,
// agents, pools and the queue, and the deterministic functions that change
// them. It is pure: time arrives inside each command, nothing here does I/O
// or starts goroutines, and the same commands in the same order give the
// same state on every server. The raft FSM in package server wraps it with a
// lock; the leader's scheduling pass (Plan) reads it.
package state

import (
	"math"
	"sort"
	"strconv"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/placement"
	"github.com/banyan-sched/banyan/scheduler/queue"
	"github.com/google/btree"
)

// DefaultPool is the pool every new cluster starts with.
const DefaultPool = "default"

// Defaults are applied to task specs that leave a field unset.
type Defaults struct {
	MaxAttempts      int32
	InitialBackoffMs int64
	MaxBackoffMs     int64
	// OpportunisticMaxWaitMs is used when opportunistic work names no wait.
	OpportunisticMaxWaitMs int64
	// Prices turn resource-seconds into a pool's billed cost.
	Prices pool.Prices
	// MaxLostAttempts is how many attempts of a task may be lost with
	// their agent or worker before its job fails (0: the default, 10).
	MaxLostAttempts int32
}

// DefaultDefaults are the server's defaults.
var DefaultDefaults = Defaults{MaxAttempts: 3, InitialBackoffMs: 1000, MaxBackoffMs: 60000,
	OpportunisticMaxWaitMs: 3600_000, Prices: pool.DefaultPrices(), MaxLostAttempts: 10}

// Job is a job and the FSM's bookkeeping for it.
type Job struct {
	PB  *pb.Job // Tasks and Counts are never filled here
	Seq uint64
	// counts tallies the tasks of a job with more than one (countsOf).
	counts *taskCounts
	// rec is the job's entry in the snapshot index (cow.go).
	rec *jobRec
}

// TaskIDs returns the ids of the job's tasks, in order (a new slice).
func (j *Job) TaskIDs() []string {
	ids := make([]string, len(j.rec.tasks))
	for i, r := range j.rec.tasks {
		ids[i] = r.pb.Id
	}
	return ids
}

// NumTasks is the number of the job's tasks.
func (j *Job) NumTasks() int { return len(j.rec.tasks) }

// Task is a task and the FSM's bookkeeping for it. It is kept small: a
// million queued tasks each have one.
type Task struct {
	PB  *pb.Task // Spec is never filled here: see Spec (taskspec.go)
	Seq uint64
	// ask is the task's resource ask, shared by the tasks that ask the
	// same (see internAsk).
	ask *askRec
	// waiting counts `after` tasks that have not succeeded yet; the tasks
	// that wait for this one are in State.dependents.
	waiting int32
	// gen is the generation PB was made in (cow.go).
	gen uint32
	// spec is the task's shape: its spec less its name and command,
	// shared with the tasks whose specs differ from it only in those; nil
	// when the task is compact (taskspec.go). command is the task's
	// command either way. Neither changes after submission.
	spec    *pb.TaskSpec
	command []string
}

// Ask returns the task's resource ask (its spec's, with defaults).
func (t *Task) Ask() pool.Resources { return t.ask.vec }

// Attempts get their record when they are placed: a queued task's pending
// attempt is only a number and Task.PB.QueuedUnixMs, which keeps a million
// queued tasks small.

// current returns the last attempt record: the one in progress while the
// task is placed (nil if it never was).
func (t *Task) current() *pb.Attempt {
	if len(t.PB.Attempts) == 0 {
		return nil
	}
	return t.PB.Attempts[len(t.PB.Attempts)-1]
}

// pending reports whether the task waits for its next attempt (waiting or
// queued), which has no record yet.
func (t *Task) pending() bool {
	return t.PB.State == pb.TaskState_TASK_STATE_WAITING || t.PB.State == pb.TaskState_TASK_STATE_QUEUED
}

// addAttempt records a new attempt. A task keeps at most
// limits.AttemptHistory records: the first and the latest ones. Numbers
// keep counting, so the records dropped are the last number minus the
// records kept (a gap in the numbers shows where).
func (t *Task) addAttempt(a *pb.Attempt) {
	t.PB.Attempts = append(t.PB.Attempts, a)
	if n := len(t.PB.Attempts); n > limits.AttemptHistory {
		t.PB.Attempts = append(t.PB.Attempts[:1], t.PB.Attempts[n-limits.AttemptHistory+1:]...)
	}
}

// Attempt returns the current attempt number: the pending one while the
// task waits to be placed, else the last one (0 if it never had one).
func (t *Task) Attempt() int32 {
	var n int32
	if cur := t.current(); cur != nil {
		n = cur.Number
	}
	if t.pending() {
		return n + 1
	}
	return n
}

// AgentID returns the agent the current attempt is on, or "".
func (t *Task) AgentID() string {
	if a := t.current(); a != nil && !t.pending() {
		return a.AgentId
	}
	return ""
}

// Agent is an agent and what is placed on it.
type Agent struct {
	PB       *pb.Agent
	Capacity pool.Resources
	Used     pool.Resources
	// Running maps task id to the attempt placed here.
	Running map[string]int32
	// devices are the agent's GPUs and MIG instances as placement sees
	// them (devices.go), devUse what placed tasks hold on each (by UUID),
	// sysUsed the sessions held of the host's NVENC system cap.
	devices []placement.Device
	devUse  map[string]placement.DeviceUse
	sysUsed int64
	// gen is the generation PB was made in (cow.go).
	gen uint32
}

// Up reports whether the agent holds its lease.
func (a *Agent) Up() bool { return a.PB.State == AgentUp }

// Agent states.
const (
	AgentUp   = "up"
	AgentDown = "down"
)

// State is the whole replicated state.
type State struct {
	defaults Defaults
	seq      uint64   // submit order of tasks, the queue's tie-breaker
	jobSeq   uint64   // numbers job ids
	jobs     jobTable // by number (job)
	// ntasks counts the tasks; each is found through its job (task).
	ntasks    int
	agents    map[string]*Agent
	agentIDs  []string // sorted cache of the agents' keys
	pools     *pool.Tree
	poolUsage map[string]pool.Resources // each pool's own usage, not rolled up
	poolRun   map[string]int            // running tasks per pool
	idem      idemIndex                 // idempotency key -> job
	queue     *queue.Queue
	exclusive map[string]string // exclusive key -> task id holding it
	// opportunistic holds the unfinished, unpromoted opportunistic jobs.
	opportunistic map[string]struct{}
	// asks interns tasks' resource asks (see internAsk).
	asks map[pool.Resources]*askRec
	// strs interns strings that specs repeat (intern.go).
	strs map[string]string
	// shapes is the last task shape made, for the next task to share
	// (taskspec.go).
	shapes shapeCache
	// firstTaskID is the first task's id of the job addJob adds.
	firstTaskID string
	// dependents lists, for the tasks that others name in `after`, the
	// tasks that wait for them.
	dependents map[string][]string
	// poolWarm holds each pool's warm-worker reservations per function.
	poolWarm map[string]map[string]int32
	// fallbackWatch holds queued tasks with a fallback wait; entries may be
	// stale and are checked with fallbackDue.
	fallbackWatch map[string]struct{}
	// costs holds each pool's cost per hour (start of the hour, unix ms).
	costs map[string]map[int64]pool.Cost
	// acl holds ACL policies and tokens (see acl.go).
	acl *aclState
	// tally holds the totals Counts reports (counts.go).
	tally tally
	// agentIdx keeps placement's view of the agents between passes
	// (agentindex.go).
	agentIdx agentIndex

	// changes holds the change records of the command being applied
	// (changes.go), now its time.
	changes changeRecords
	now     int64

	// order indexes the jobs' records in snapshot order; gen is the
	// generation records made now get, views the snapshot views held
	// (cow.go).
	order *btree.BTreeG[*jobRec]
	gen   uint32
	views int
}

// New returns the initial state: no jobs, no agents, one unlimited pool
// named DefaultPool.
func New(d Defaults) *State {
	s := &State{
		defaults:  d,
		jobs:      newJobTable(),
		agents:    map[string]*Agent{},
		pools:     pool.NewTree(),
		poolUsage: map[string]pool.Resources{},
		poolRun:   map[string]int{},
		idem:      newIdemIndex(),
		queue:     queue.New(),
		exclusive: map[string]string{},

		opportunistic: map[string]struct{}{},
		costs:         map[string]map[int64]pool.Cost{},
		fallbackWatch: map[string]struct{}{},
		poolWarm:      map[string]map[string]int32{},
		asks:          map[pool.Resources]*askRec{},
		strs:          map[string]string{},
		dependents:    map[string][]string{},
		acl:           newACLState(),
		tally:         newTally(),
		order:         newJobIndex(),
		gen:           1,
	}
	_ = s.pools.Put(DefaultPool, pool.Unlimited, true)
	return s
}

// Defaults returns the defaults the state applies.
func (s *State) Defaults() Defaults { return s.defaults }

// Job returns a job by id.
func (s *State) Job(id string) (*Job, bool) {
	j := s.job(id)
	return j, j != nil
}

// job returns a job by id, or nil. Jobs are indexed by their number
// ("job-7": 7), which costs a map entry a third smaller than a string
// key's.
func (s *State) job(id string) *Job {
	n, ok := jobNumber(id)
	if !ok {
		return nil
	}
	// Job n's id is jobID(n) (addJob names it so, and a snapshot's jobs are
	// checked against it), the one spelling jobNumber accepts: no need to
	// read the job to compare.
	return s.jobs.get(n)
}

// jobNumber returns the number of a job id as jobID writes it; ok is
// false for any other string, a number written otherwise ("job-07",
// "job-+7") included.
func jobNumber(id string) (uint64, bool) {
	if !strings.HasPrefix(id, "job-") {
		return 0, false
	}
	n, ok := decimal(id[len("job-"):])
	return n, ok && n > 0
}

// decimal parses s as strconv.FormatUint writes a number: digits only, no
// sign, no leading zero; ok is false for anything else or a number past
// uint64.
func decimal(s string) (n uint64, ok bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		d := uint64(s[i] - '0')
		if d > 9 || n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Task returns a task by id.
func (s *State) Task(id string) (*Task, bool) {
	t := s.task(id)
	return t, t != nil
}

// task returns a task by id, or nil. Tasks are found through their job:
// an id is its job's and its position ("job-7.3": job-7's task 3), which
// costs a map entry less per task than an index of its own.
func (s *State) task(id string) *Task {
	dot := strings.LastIndexByte(id, '.')
	if dot < 0 {
		return nil
	}
	j := s.job(id[:dot])
	if j == nil {
		return nil
	}
	// Task i of a job is named taskID(job, i) (addTasks, and a snapshot's
	// tasks are checked against it): a position written as taskID writes
	// it is the id, and no task needs reading to compare.
	i, ok := decimal(id[dot+1:])
	if !ok || i >= uint64(len(j.rec.tasks)) {
		return nil
	}
	return j.rec.tasks[i].t
}

// Agent returns an agent by id.
func (s *State) Agent(id string) (*Agent, bool) {
	a, ok := s.agents[id]
	return a, ok
}

// Pools returns the pool tree (read only).
func (s *State) Pools() *pool.Tree { return s.pools }

// QueueLen is the number of queued tasks.
func (s *State) QueueLen() int { return s.queue.Len() }

// TaskCount is the number of tasks in the state.
func (s *State) TaskCount() int { return s.ntasks }

// AgentIDs returns every agent id, sorted. The slice is shared: callers
// must not change it. (Kept up to date by Apply, so readers under a read
// lock never write.)
func (s *State) AgentIDs() []string { return s.agentIDs }

// addAgentID inserts a new agent's id into the sorted list.
func (s *State) addAgentID(id string) {
	i := sort.SearchStrings(s.agentIDs, id)
	s.agentIDs = append(s.agentIDs, "")
	copy(s.agentIDs[i+1:], s.agentIDs[i:])
	s.agentIDs[i] = id
}

// JobIDs returns job ids in submit order.
func (s *State) JobIDs() []string {
	ids := make([]string, 0, s.jobs.len())
	s.order.Ascend(func(r *jobRec) bool {
		ids = append(ids, r.job.Id)
		return true
	})
	return ids
}

// PoolUsage returns each pool's usage rolled up the tree (a parent includes
// its children).
func (s *State) PoolUsage() map[string]pool.Resources {
	out := make(map[string]pool.Resources, len(s.poolUsage))
	for p, u := range s.poolUsage {
		for _, a := range pool.Ancestors(p) {
			out[a] = out[a].Add(u)
		}
	}
	return out
}

// PoolCounts returns the queued and running task counts of one pool.
func (s *State) PoolCounts(path string) (queued, running int) {
	return s.queue.PoolLen(path), s.poolRun[path]
}

// IsFinal reports whether a task state is terminal.
func IsFinal(st pb.TaskState) bool {
	return st == pb.TaskState_TASK_STATE_SUCCEEDED || st == pb.TaskState_TASK_STATE_FAILED ||
		st == pb.TaskState_TASK_STATE_CANCELLED
}

// IsJobFinal reports whether a job state is terminal.
func IsJobFinal(st pb.JobState) bool {
	return st == pb.JobState_JOB_STATE_SUCCEEDED || st == pb.JobState_JOB_STATE_FAILED ||
		st == pb.JobState_JOB_STATE_CANCELLED
}

// jobID names job number seq ("job-7"); jobNumber reads it back.
func jobID(seq uint64) string { return "job-" + strconv.FormatUint(seq, 10) }

// taskID names a job's task i ("job-7.3"); task reads it back.
func taskID(job string, i int) string { return job + "." + strconv.Itoa(i) }

// newTaskID is the id of j's task i: for the first task of a job being
// added, the string the job's id is the head of (addJob).
func (s *State) newTaskID(j *Job, i int) string {
	if id := s.firstTaskID; i == 0 && len(id) == len(j.PB.Id)+2 && id[:len(j.PB.Id)] == j.PB.Id {
		return id
	}
	return taskID(j.PB.Id, i)
}
