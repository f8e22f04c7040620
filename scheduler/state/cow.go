package state

import (
	"slices"
	"strconv"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/google/btree"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Copy-on-write records for snapshots.
//
// A snapshot view (Snapshot) is taken in time independent of the number
// of jobs: it clones the ordered index of job records (a B-tree whose
// Clone is lazy), lists the agents' records and bumps the state's
// generation. From then on the records the view can reach are frozen:
// Apply never changes them. Before it changes a job, a task or an agent
// it calls wJob, wTask or wAgent, which give the record a private copy
// first if it is frozen (once per record and generation) and put the copy
// in the live index. The view is then read by another goroutine (the raft
// snapshot's Persist) while Apply goes on. A task's spec is shared by the
// copies: it never changes after submission.
//
// The rule for code that changes a job's, task's or agent's PB (or an
// attempt in a task): call s.wJob(j), s.wTask(t) or s.wAgent(ag) first,
// before taking any pointer into the record (t.current()). The test
// TestSnapshotViewsWriteWhileApplyRuns (run with -race) finds a change
// made without it.

// jobRec is what a snapshot writes of one job: its record, its submit
// order and its tasks' records. Frozen once a view can reach it (gen
// older than the state's while a view is held).
type jobRec struct {
	job   *pb.Job
	seq   uint64
	tasks []taskRef // in TaskIDs order
	gen   uint32
}

// taskRef is one task of a jobRec: its record, and the task for what
// does not change after submission (its sequence number and spec).
type taskRef struct {
	pb *pb.Task
	t  *Task
}

// recLess orders job records as snapshots list jobs: by submit order,
// ids breaking ties (a restored snapshot may repeat a seq). Both keys are
// fixed for a job's life.
func recLess(a, b *jobRec) bool {
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.job.Id < b.job.Id
}

func newJobIndex() *btree.BTreeG[*jobRec] { return btree.NewG(32, recLess) }

// frozen reports whether a record stamped with generation gen may be
// reached by a snapshot view still held.
func (s *State) frozen(gen uint32) bool { return s.views > 0 && gen < s.gen }

// indexJob gives a new job its record in the index.
func (s *State) indexJob(j *Job) {
	j.rec = &jobRec{job: j.PB, seq: j.Seq, gen: s.gen}
	s.order.ReplaceOrInsert(j.rec)
}

// wJob makes j's record writable: if a held view may reach it, j gets a
// copy of its PB and of its record.
func (s *State) wJob(j *Job) {
	if !s.frozen(j.rec.gen) {
		return
	}
	j.PB = clone(j.PB)
	j.rec = &jobRec{job: j.PB, seq: j.Seq, tasks: slices.Clone(j.rec.tasks), gen: s.gen}
	s.order.ReplaceOrInsert(j.rec)
}

// wTask makes t's record, and its job's, writable.
func (s *State) wTask(t *Task) {
	j := s.job(t.PB.JobId)
	s.wJob(j)
	if !s.frozen(t.gen) {
		return
	}
	t.PB = cloneTask(t.PB)
	t.gen = s.gen
	j.rec.tasks[taskIndex(t.PB.Id)].pb = t.PB
}

// taskIndex is a task's position in its job, from its id ("job-7.3": 3);
// ids are made by taskID and checked on restore.
func taskIndex(id string) int {
	n, _ := strconv.Atoi(id[strings.LastIndexByte(id, '.')+1:])
	return n
}

// wAgent makes ag's record writable: if a held view may reach it, ag gets
// a copy.
func (s *State) wAgent(ag *Agent) {
	if !s.frozen(ag.gen) {
		return
	}
	ag.PB = clone(ag.PB)
	ag.gen = s.gen
}

// addTaskRec appends a new task of j to its record (j made writable).
func (s *State) addTaskRec(j *Job, t *Task) {
	s.wJob(j)
	t.gen = s.gen
	j.rec.tasks = append(j.rec.tasks, taskRef{pb: t.PB, t: t})
}

// dropJobRec removes a job from the index (GC).
func (s *State) dropJobRec(j *Job) { s.order.Delete(j.rec) }

// cloneTask copies a task record for writing. The spec is shared: it is
// never changed after submission. Attempts are copied, since Apply
// changes the current one in place.
func cloneTask(t *pb.Task) *pb.Task {
	out := &pb.Task{}
	dst := out.ProtoReflect()
	t.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := dst.Mutable(fd).List()
			for i := 0; i < v.List().Len(); i++ {
				l.Append(copyValue(fd, v.List().Get(i)))
			}
		case fd.IsMap():
			m := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				m.Set(k, copyValue(fd.MapValue(), mv))
				return true
			})
		case fd.Name() == "spec": // shared
			dst.Set(fd, v)
		default:
			dst.Set(fd, copyValue(fd, v))
		}
		return true
	})
	if u := t.ProtoReflect().GetUnknown(); len(u) > 0 {
		dst.SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
	return out
}

// copyValue deep-copies a message value of field fd; other values are
// immutable and returned as they are.
func copyValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	if fd.Message() == nil {
		return v
	}
	return protoreflect.ValueOfMessage(proto.Clone(v.Message().Interface()).ProtoReflect())
}
