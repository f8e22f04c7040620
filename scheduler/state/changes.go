package state

import (
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
)

// Change records. While recording is on (RecordChanges), Apply notes each
// change it makes as a banyanv1.Event, in the order it makes them, and
// returns them in Result.Changes with their Position set (the raft index
// is the caller's to fill in). The records are built from the state as it
// changes, so they are as deterministic as Apply: every replica records
// the same changes at the same positions. With recording off nothing is
// built.

// Event topics.
const (
	TopicJob    = "job"
	TopicTask   = "task"
	TopicAgent  = "agent"
	TopicPool   = "pool"
	TopicStream = "stream"
)

// Event kinds, per topic.
const (
	KindSubmitted = "submitted" // job
	KindState     = "state"     // job, task
	KindPromoted  = "promoted"  // job
	KindCreated   = "created"   // task, pool
	KindReplaced  = "replaced"  // task
	KindUp        = "up"        // agent
	KindDown      = "down"      // agent
	KindDevices   = "devices"   // agent
	KindSchedule  = "schedule"  // agent: cordoned, draining or eligible again (reason says which)
	KindRemoved   = "removed"   // job: retention removed it
	KindUpdated   = "updated"   // pool
	KindDeleted   = "deleted"   // pool
	KindCaughtUp  = "caught_up" // stream
	KindProgress  = "progress"  // stream
)

// RecordChanges turns change records on or off.
func (s *State) RecordChanges(on bool) { s.record = on }

// note appends a change record (recording must be on).
func (s *State) note(ev *pb.Event) {
	ev.Position = uint32(len(s.changes))
	ev.UnixMs = s.now
	s.changes = append(s.changes, ev)
}

// takeChanges returns the records of the command being applied and starts
// afresh.
func (s *State) takeChanges() []*pb.Event {
	c := s.changes
	s.changes = nil
	return c
}

// enumNames holds an enum's value names by number, as its String method
// gives them: that method looks the value up in the enum's descriptor,
// and every change record names two states.
type enumNames[E enum] struct{ names []string }

// enum is a protobuf enum type.
type enum interface {
	~int32
	String() string
}

// newEnumNames lists the names of E's values from 0 to the highest in
// byNumber, the enum's generated name map.
func newEnumNames[E enum](byNumber map[int32]string) enumNames[E] {
	var last int32
	for v := range byNumber {
		last = max(last, v)
	}
	names := make([]string, last+1)
	for v := range names {
		names[v] = E(v).String()
	}
	return enumNames[E]{names}
}

// of is v's name.
func (n enumNames[E]) of(v E) string {
	if v >= 0 && int(v) < len(n.names) {
		return n.names[v]
	}
	return v.String() // a number this build does not know
}

var (
	jobStateNames  = newEnumNames[pb.JobState](pb.JobState_name)
	taskStateNames = newEnumNames[pb.TaskState](pb.TaskState_name)
)

// noteJob records a job's change of state (or class, for KindPromoted).
func (s *State) noteJob(j *Job, kind string, from pb.JobState) {
	if !s.record {
		return
	}
	ev := &pb.Event{Topic: TopicJob, Kind: kind, JobId: j.PB.Id, Pool: j.PB.Pool, Name: j.PB.Name,
		State: jobStateNames.of(j.PB.State), Reason: j.PB.Reason}
	if kind != KindSubmitted {
		ev.PreviousState = jobStateNames.of(from)
	}
	s.note(ev)
}

// noteTask records a task's change of state from from. ended is the
// attempt the change ends, if any; otherwise a change into a placed state
// is about the attempt placed, and any other about the pending one.
func (s *State) noteTask(t *Task, kind string, from pb.TaskState, ended *pb.Attempt) {
	if !s.record {
		return
	}
	ev := &pb.Event{Topic: TopicTask, Kind: kind, JobId: t.PB.JobId, TaskId: t.PB.Id,
		Pool: s.job(t.PB.JobId).PB.Pool, Name: t.PB.Name, State: taskStateNames.of(t.PB.State),
		Attempt: t.Attempt(), ReplacedBy: t.PB.ReplacedBy}
	if kind != KindCreated {
		ev.PreviousState = taskStateNames.of(from)
	}
	switch cur := t.current(); {
	case ended != nil:
		ev.Attempt, ev.AgentId, ev.Outcome, ev.FailureClass = ended.Number, ended.AgentId, ended.Outcome, ended.FailureClass
		ev.Reason = limits.TruncateHead(ended.Error, limits.ErrorBytes)
	case isPlaced(t.PB.State) && cur != nil:
		ev.Attempt, ev.AgentId = cur.Number, cur.AgentId
	}
	s.note(ev)
}

// noteAgent records an agent's change; reason says why it went down.
func (s *State) noteAgent(ag *Agent, kind, from, reason string) {
	if !s.record {
		return
	}
	ev := &pb.Event{Topic: TopicAgent, Kind: kind, AgentId: ag.PB.Id, State: ag.PB.State,
		PreviousState: from, Reason: reason}
	for _, g := range ag.PB.GetFingerprint().GetGpus() {
		ev.Gpus++
		if g.GetUnhealthy() != "" {
			ev.UnhealthyGpus++
		}
	}
	s.note(ev)
}

// notePool records a pool put or deleted.
func (s *State) notePool(path, kind string) {
	if !s.record {
		return
	}
	s.note(&pb.Event{Topic: TopicPool, Kind: kind, Pool: path})
}
