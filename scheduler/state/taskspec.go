package state

import (
	"bytes"
	"slices"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
)

// Compact task specs. Most tasks (a million queued encode chunks) use only
// a name, a command and a resource ask of their spec. Such a task keeps no
// pb.TaskSpec (248 bytes): its command is in Task.command, its ask in
// Task.ask and its name is the task's. Any other task keeps its command in
// Task.command and the rest of its spec in Task.spec, a shape: the spec
// with no name and no command. Tasks whose specs differ only in name and
// command (an array's tasks, which may differ in command through
// ${INDEX}) share one shape: setSpec compares each new shape with the last
// one made. Task.PB.Spec is always nil in the state; Spec builds the
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
		len(ts.Args) == 0 && ts.Count == 0 && len(ts.ProtoReflect().GetUnknown()) == 0
}

// setSpec gives t its spec (strings and resources interned): compact when
// it can be, else as a shape, shared when it can be. ts becomes the
// state's: the shape may be ts itself, with its name and command cleared.
// The spec is not changed afterwards.
func (s *State) setSpec(t *Task, ts *pb.TaskSpec) {
	ts.Resources = s.internResources(ts.Resources)
	s.compactSpec(ts)
	t.ask = s.internAsk(ts.Resources)
	t.command = s.shapes.command(ts.Command)
	if compactable(ts, t.PB.Name) {
		return
	}
	ts.Name, ts.Command = "", nil
	t.spec = s.shapes.share(ts)
}

// shapeCache holds the last shape made and its encoding, a buffer for
// encoding the next, and the last command given a task.
type shapeCache struct {
	last    *pb.TaskSpec
	lastEnc []byte
	buf     []byte
	lastCmd []string
}

// command returns the last command given a task when cmd is the same
// words, else cmd, which becomes the last: tasks in a row with one
// command share its list (an array's share it already, taskarray.Task;
// after a snapshot's restore, or for one-task jobs of one command, each
// comes decoded on its own).
func (c *shapeCache) command(cmd []string) []string {
	if len(cmd) > 0 && slices.Equal(cmd, c.lastCmd) {
		return c.lastCmd
	}
	c.lastCmd = cmd
	return cmd
}

// share returns the last shape when ts encodes the same, else ts, which
// becomes the last. Encodings compare equal only for equal shapes; equal
// shapes with an env of several variables may encode apart (map order),
// and then merely go unshared.
func (c *shapeCache) share(ts *pb.TaskSpec) *pb.TaskSpec {
	n := ts.SizeVT()
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	enc := c.buf[:n]
	if _, err := ts.MarshalToSizedBufferVT(enc); err != nil {
		return ts // not comparable: kept unshared
	}
	if c.last != nil && bytes.Equal(enc, c.lastEnc) {
		return c.last
	}
	c.last = ts
	c.buf, c.lastEnc = c.lastEnc, enc
	return ts
}

// Spec returns the task's spec, built afresh: it shares the state's
// command, resources and shape fields, so callers must not change what it
// points to.
func (t *Task) Spec() *pb.TaskSpec {
	return t.fillSpec(&pb.TaskSpec{}, t.PB.Name)
}

// fillSpec sets every field of dst to t's spec (for writers that marshal
// it at once, reusing dst) and returns dst; name is the task's.
func (t *Task) fillSpec(dst *pb.TaskSpec, name string) *pb.TaskSpec {
	if t.spec == nil {
		specRecord(dst, compactShape, name, t.command)
		dst.Resources = t.ask.msg
		return dst
	}
	return specRecord(dst, t.spec, name, t.command)
}

// compactShape is the shape of every compact task: nothing but the
// resources, which fillSpec adds. Never changed.
var compactShape = &pb.TaskSpec{}
