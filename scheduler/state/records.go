package state

import pb "github.com/banyan-sched/banyan/api/banyanv1"

// Full records from the state's own. The state keeps a task's spec apart
// from its record (taskspec.go); snapshots and views write the record
// with it. These copy a record's fields into a scratch message that a
// writer marshals at once, so writing a million records makes no garbage.
// TestRecordCopiesEveryField and TestSpecRecordCopiesEveryField set every
// field of the messages, so a field added to them must be copied here.

// taskRecord sets dst to src's fields (shared, not copied) with spec as
// its spec, and returns it.
func taskRecord(dst, src *pb.Task, spec *pb.TaskSpec) *pb.Task {
	dst.Id, dst.JobId, dst.Name, dst.State = src.Id, src.JobId, src.Name, src.State
	dst.BlockedReason, dst.Attempts, dst.Spec = src.BlockedReason, src.Attempts, spec
	dst.RetriesUsed, dst.NotBeforeUnixMs, dst.ReplacedBy = src.RetriesUsed, src.NotBeforeUnixMs, src.ReplacedBy
	dst.QueuedUnixMs, dst.LostAttempts = src.QueuedUnixMs, src.LostAttempts
	dst.ProtoReflect().SetUnknown(src.ProtoReflect().GetUnknown())
	return dst
}

// specRecord sets dst to the spec of a task named name whose command is
// command and whose other fields are shape's (shared, not copied), and
// returns it.
func specRecord(dst, shape *pb.TaskSpec, name string, command []string) *pb.TaskSpec {
	dst.Name, dst.Command, dst.Env, dst.Resources = name, command, shape.Env, shape.Resources
	dst.TimeoutMs, dst.Retry, dst.ExclusiveKey, dst.Constraints = shape.TimeoutMs, shape.Retry, shape.ExclusiveKey, shape.Constraints
	dst.After, dst.Workdir, dst.Fallback, dst.FallbackAfterMs = shape.After, shape.Workdir, shape.Fallback, shape.FallbackAfterMs
	dst.Function, dst.Args, dst.Count = shape.Function, shape.Args, shape.Count
	dst.ProtoReflect().SetUnknown(shape.ProtoReflect().GetUnknown())
	return dst
}

// taskWriter builds tasks' full records in scratch messages it reuses.
type taskWriter struct {
	rec  pb.Task
	spec pb.TaskSpec
}

// record returns the full record of a task whose record is p (the task's
// own or a frozen one): valid until the next call.
func (w *taskWriter) record(p *pb.Task, t *Task) *pb.Task {
	return taskRecord(&w.rec, p, t.fillSpec(&w.spec, p.Name))
}

// jobRecord sets dst to src's fields (shared, not copied) with counts as
// its counts, and returns it.
func jobRecord(dst, src *pb.Job, counts *pb.TaskCounts) *pb.Job {
	dst.Id, dst.Name, dst.Pool, dst.Class, dst.Priority = src.Id, src.Name, src.Pool, src.Class, src.Priority
	dst.IdempotencyKey, dst.State, dst.Reason = src.IdempotencyKey, src.State, src.Reason
	dst.SubmittedUnixMs, dst.FinishedUnixMs, dst.Counts, dst.Tasks = src.SubmittedUnixMs, src.FinishedUnixMs, counts, src.Tasks
	dst.MaxWaitMs, dst.PromotedUnixMs, dst.Submitter = src.MaxWaitMs, src.PromotedUnixMs, src.Submitter
	dst.TraceId, dst.TraceSpanId = src.TraceId, src.TraceSpanId
	dst.ProtoReflect().SetUnknown(src.ProtoReflect().GetUnknown())
	return dst
}

// jobWriter builds jobs' full records in scratch messages it reuses.
type jobWriter struct {
	rec    pb.Job
	counts pb.TaskCounts
}

// record returns the full record of a job from its record in a snapshot
// view: valid until the next call.
func (w *jobWriter) record(r *jobRec) *pb.Job {
	return jobRecord(&w.rec, r.job, countRecords(r.tasks).fill(&w.counts))
}
