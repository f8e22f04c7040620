package state

import (
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
)

// Compact task specs. Most tasks (a million queued encode chunks) use only
// a name, a command and a resource ask of their spec. Such a task keeps no
// pb.TaskSpec (248 bytes): its command is in Task.command, its ask in
// Task.ask and its name is the task's. Any other spec keeps its message in
// Task.spec. Task.PB.Spec is always nil in the state; Spec builds the
// message for views, assignments and snapshots, equal to the one
// submitted.

// askRec is an interned resource ask: its vector and its message.
type askRec struct {
	vec pool.Resources
	msg *pb.Resources
}

// compactable reports whether a spec of a task named name uses only the
// fields a compact spec keeps. TestCompactableChecksEveryField sets each
// field of TaskSpec in turn, so a field added to the message must be
// named here.
func compactable(ts *pb.TaskSpec, name string) bool {
	return ts.Name == name && ts.Resources != nil && len(ts.Env) == 0 && ts.TimeoutMs == 0 &&
		ts.Retry == nil && ts.ExclusiveKey == "" && len(ts.Constraints) == 0 && len(ts.After) == 0 &&
		ts.Workdir == "" && ts.Fallback == nil && ts.FallbackAfterMs == 0 && ts.Function == "" &&
		len(ts.Args) == 0 && len(ts.ProtoReflect().GetUnknown()) == 0
}

// setSpec gives t its spec (compacted, resources interned): compact when
// it can be, else kept whole. The spec is not changed afterwards.
func (s *State) setSpec(t *Task, ts *pb.TaskSpec) {
	ts.Resources = s.internResources(ts.Resources)
	s.compactSpec(ts)
	t.ask = s.internAsk(ts.Resources)
	if compactable(ts, t.PB.Name) {
		t.command = ts.Command
		return
	}
	t.spec = ts
}

// Spec returns the task's spec. A compact spec is built afresh, sharing
// the state's command and resources: callers must not change it.
func (t *Task) Spec() *pb.TaskSpec {
	if t.spec != nil {
		return t.spec
	}
	return t.compactSpec(t.PB.Name)
}

// compactSpec builds a compact task's spec; name is the task's.
func (t *Task) compactSpec(name string) *pb.TaskSpec {
	return &pb.TaskSpec{Name: name, Command: t.command, Resources: t.ask.msg}
}

// fillSpec sets dst to t's spec, reusing dst for a compact one (for
// writers that marshal it at once); name is the task's.
func (t *Task) fillSpec(dst *pb.TaskSpec, name string) *pb.TaskSpec {
	if t.spec != nil {
		return t.spec
	}
	dst.Name, dst.Command, dst.Resources = name, t.command, t.ask.msg
	return dst
}
