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
func (s *State) RecordChanges(on bool) { s.changes.on = on }

// KeepChanges bounds the records a command returns to its last n (0, the
// default: all of them). The ones before still take their positions, so
// the records kept are those a full recording would end with. A server
// keeps as many as its event buffer holds (events.Log), which would push
// the earlier ones out at once: a 1,000,000-task array makes two million
// records, and building them all made its apply take 1.96 s instead of
// 1.31 s, and the server's RSS 1.27 GB instead of 0.69 GB. The whole story
// stays in the raft log, where a subscriber that needs it replays it
// (scheduler/server/eventbackfill.go).
func (s *State) KeepChanges(n int) { s.changes.keep = max(n, 0) }

// changeRecords holds the change records of the command being applied.
type changeRecords struct {
	on   bool
	keep int // the most held (0: no bound)
	// held are the records held; once keep are, a ring whose oldest is
	// held[oldest], and a new record reuses the oldest's message.
	held   []*pb.Event
	oldest int
	next   uint32 // the position of the next record
	// ended are the attempts the command ended, every one.
	ended []AttemptRef
}

// add returns a blank record for the next change, its position and time
// set (recording must be on).
func (c *changeRecords) add(now int64) *pb.Event {
	var ev *pb.Event
	if c.keep > 0 && len(c.held) == c.keep {
		ev = c.held[c.oldest] // pushed out: never returned, so free to reuse
		*ev = pb.Event{}
		c.oldest = (c.oldest + 1) % c.keep
	} else {
		ev = &pb.Event{}
		c.held = append(c.held, ev)
	}
	ev.Position, ev.UnixMs = c.next, now
	c.next++
	return ev
}

// take returns the records of the command being applied, oldest first,
// and the attempts it ended, and starts afresh.
func (c *changeRecords) take() ([]*pb.Event, []AttemptRef) {
	held, ended := c.held, c.ended
	if c.oldest > 0 {
		held = append(held[c.oldest:len(held):len(held)], held[:c.oldest]...)
	}
	c.held, c.oldest, c.next, c.ended = nil, 0, 0, nil
	return held, ended
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
	if !s.changes.on {
		return
	}
	ev := s.changes.add(s.now)
	ev.Topic, ev.Kind, ev.JobId, ev.Pool, ev.Name = TopicJob, kind, j.PB.Id, j.PB.Pool, j.PB.Name
	ev.State, ev.Reason = jobStateNames.of(j.PB.State), j.PB.Reason
	if kind != KindSubmitted {
		ev.PreviousState = jobStateNames.of(from)
	}
}

// noteTask records a task's change of state from from. ended is the
// attempt the change ends, if any; otherwise a change into a placed state
// is about the attempt placed, and any other about the pending one.
func (s *State) noteTask(t *Task, kind string, from pb.TaskState, ended *pb.Attempt) {
	if !s.changes.on {
		return
	}
	ev := s.changes.add(s.now)
	ev.Topic, ev.Kind, ev.JobId, ev.TaskId = TopicTask, kind, t.PB.JobId, t.PB.Id
	ev.Pool, ev.Name, ev.State = s.job(t.PB.JobId).PB.Pool, t.PB.Name, taskStateNames.of(t.PB.State)
	ev.Attempt, ev.ReplacedBy = t.Attempt(), t.PB.ReplacedBy
	if kind != KindCreated {
		ev.PreviousState = taskStateNames.of(from)
	}
	switch cur := t.current(); {
	case ended != nil:
		ev.Attempt, ev.AgentId, ev.Outcome, ev.FailureClass = ended.Number, ended.AgentId, ended.Outcome, ended.FailureClass
		ev.Reason = limits.TruncateHead(ended.Error, limits.ErrorBytes)
		if ended.Outcome != "" && ended.Number > 0 {
			s.changes.ended = append(s.changes.ended, AttemptRef{TaskID: t.PB.Id, Attempt: ended.Number})
		}
	case isPlaced(t.PB.State) && cur != nil:
		ev.Attempt, ev.AgentId = cur.Number, cur.AgentId
	}
}

// noteAgent records an agent's change; reason says why it went down.
func (s *State) noteAgent(ag *Agent, kind, from, reason string) {
	if !s.changes.on {
		return
	}
	ev := s.changes.add(s.now)
	ev.Topic, ev.Kind, ev.AgentId, ev.State = TopicAgent, kind, ag.PB.Id, ag.PB.State
	ev.PreviousState, ev.Reason = from, reason
	for _, g := range ag.PB.GetFingerprint().GetGpus() {
		ev.Gpus++
		if g.GetUnhealthy() != "" {
			ev.UnhealthyGpus++
		}
	}
}

// notePool records a pool put or deleted.
func (s *State) notePool(path, kind string) {
	if !s.changes.on {
		return
	}
	ev := s.changes.add(s.now)
	ev.Topic, ev.Kind, ev.Pool = TopicPool, kind, path
}
