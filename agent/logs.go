package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/banyan-sched/banyan/agent/process"
	"github.com/banyan-sched/banyan/agent/tasklog"
	"github.com/banyan-sched/banyan/agent/worker"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"google.golang.org/protobuf/proto"
)

// Task output (agent/tasklog): every attempt's full stdout and stderr (a
// function call's output, for a call served by a worker) is kept in files, read by the leader over the session on behalf of
// `sched job logs`, and removed when the leader says the job is gone from
// the state, or after TaskLogAge.

// Defaults of the task-output settings.
const (
	// DefaultTaskLogSweep is how often the agent removes old output and asks
	// the leader which of its jobs are gone.
	DefaultTaskLogSweep = time.Hour
	// TaskLogDirLabel is the fingerprint label naming where the agent keeps
	// task output, so that the leader can say where it is when the agent is
	// down.
	TaskLogDirLabel = "banyan.task-log-dir"
	// maxHeldJobs bounds the job ids one LogJobs message names.
	maxHeldJobs = 10000
)

// openTaskLogs opens the store of task output under cfg.TaskLogDir
// (default: "logs" in the task directory).
func (a *Agent) openTaskLogs() error {
	root := a.cfg.TaskLogDir
	if root == "" {
		root = filepath.Join(a.taskDir, "logs")
	}
	s, err := tasklog.Open(tasklog.Config{Root: root, MaxBytes: a.cfg.TaskLogMax, Now: a.cfg.Clock})
	if err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	a.logs = s
	// The leader names the directory when this agent is down.
	fp := proto.Clone(a.cfg.Fingerprint).(*pb.Fingerprint)
	if fp.Labels == nil {
		fp.Labels = map[string]string{}
	}
	fp.Labels[TaskLogDirLabel] = s.Root()
	a.cfg.Fingerprint = fp
	return nil
}

// logKey names an assignment's attempt in the store.
func logKey(t *pb.TaskAssignment) tasklog.Key {
	return tasklog.Key{Job: t.JobId, Task: t.TaskId, Attempt: t.Attempt}
}

// keepOutput makes spec write the attempt's full output to the store and
// returns the function that ends it. Output that cannot be kept is logged;
// the task runs anyway. Like a function call's, a process's output is
// kept in memory while it is small and then in its job's pack (see
// keepCallOutput): most tasks of a farm write little (a `true`, a chunk
// encode at -loglevel error), and a directory and two files per attempt
// were a third of the agent's cost of such a task on a virtual disk.
// Output past tasklog.DefaultBufferedLimit moves to files of its own.
func (a *Agent) keepOutput(t *pb.TaskAssignment, spec *process.Spec) (done func()) {
	out, done := a.keepCallOutput(t)
	if out.Stdout != nil {
		spec.Stdout, spec.Stderr = out.Stdout, out.Stderr
	}
	return done
}

// keepCallOutput starts keeping an attempt's output (a function call's,
// or a process's through keepOutput): in memory while it runs and then in
// its job's pack, or in files of its own once it outgrows
// tasklog.DefaultBufferedLimit; it is read the same way either way. Calls
// are many and short: a directory and two files each would cost more than
// the call. With no store, the writers are nil and done does nothing.
func (a *Agent) keepCallOutput(t *pb.TaskAssignment) (worker.Output, func()) {
	if a.logs == nil {
		return worker.Output{}, func() {}
	}
	out := a.logs.CreateBuffered(logKey(t), 0)
	return worker.Output{Stdout: out.Stdout(), Stderr: out.Stderr()}, func() {
		if err := out.Close(); err != nil {
			a.log.Warn("task output not kept in full", "task", t.TaskId, "attempt", t.Attempt, "err", err)
		}
	}
}

// readLog answers the leader's read of an attempt's output.
func (a *Agent) readLog(r *pb.LogRead) *pb.LogData {
	k := tasklog.Key{Job: r.JobId, Task: r.TaskId, Attempt: r.Attempt}
	stream := tasklog.Stdout
	if r.Stderr {
		stream = tasklog.Stderr
	}
	n := int(r.MaxBytes)
	if b := (limits.Budget{MessageSize: a.cfg.MaxMessageSize}).BatchBytes(); n <= 0 || n > b {
		n = b
	}
	if a.logs == nil {
		return &pb.LogData{RequestId: r.RequestId, Missing: true}
	}
	d := &pb.LogData{RequestId: r.RequestId, Dir: a.logs.Where(k)}
	c, err := a.logs.Read(k, stream, r.Offset, n)
	switch {
	case errors.Is(err, tasklog.ErrNotFound):
		d.Missing = true
	case err != nil:
		d.Error = err.Error()
	default:
		d.Data, d.Offset, d.Done = c.Data, c.Offset, c.Done
	}
	return d
}

// onLogs acts on the leader's task-output messages: reads are answered on
// the session, gone jobs removed.
func (a *Agent) onLogs(ctx context.Context, m *pb.LogsDown) {
	switch msg := m.Msg.(type) {
	case *pb.LogsDown_Read:
		a.sendUp(ctx, &pb.AgentMessage{Msg: &pb.AgentMessage_Logs{Logs: &pb.LogsUp{
			Msg: &pb.LogsUp_Data{Data: a.readLog(msg.Read)}}}})
	case *pb.LogsDown_Gone:
		if a.logs == nil {
			return
		}
		if err := a.logs.RemoveJobs(msg.Gone.JobIds); err != nil {
			a.log.Warn("remove output of gone jobs", "err", err)
		} else if len(msg.Gone.JobIds) > 0 {
			a.log.Debug("removed output of gone jobs", "jobs", len(msg.Gone.JobIds))
		}
	}
}

// sendUp queues a message for the live session's sender; without a
// session it is dropped (the leader's read then times out).
func (a *Agent) sendUp(ctx context.Context, m *pb.AgentMessage) {
	a.mu.Lock()
	q := a.events
	a.mu.Unlock()
	if q == nil {
		return
	}
	select {
	case q.up <- m:
	case <-ctx.Done():
	}
}

// sweepLogs removes output older than TaskLogAge and returns the message
// naming the jobs whose output is left, for the leader to say which are
// gone.
func (a *Agent) sweepLogs() *pb.AgentMessage {
	if a.logs == nil {
		return nil
	}
	if removed, err := a.logs.RemoveOlderThan(a.cfg.TaskLogAge); err != nil {
		a.log.Warn("remove old task output", "err", err)
	} else if len(removed) > 0 {
		a.log.Info("removed old task output", "jobs", len(removed), "older_than", a.cfg.TaskLogAge)
	}
	jobs, err := a.logs.Jobs()
	if err != nil {
		a.log.Warn("list task output", "err", err)
		return nil
	}
	if len(jobs) > maxHeldJobs {
		jobs = jobs[:maxHeldJobs] // the rest at the next sweep, once these are gone
	}
	return &pb.AgentMessage{Msg: &pb.AgentMessage_Logs{Logs: &pb.LogsUp{
		Msg: &pb.LogsUp_Held{Held: &pb.LogJobs{JobIds: jobs}}}}}
}

// sweepLoop sweeps the output every sweepEvery and whenever a session
// opens, and sends the session the jobs whose output is left, until ctx
// ends. The sweep walks the files, so it runs here, not on the session's
// sender.
func (a *Agent) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(a.sweepEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.sweepSignal:
		}
		if m := a.sweepLogs(); m != nil {
			a.sendUp(ctx, m)
		}
	}
}

// sweepEvery is how often sweepLogs runs.
func (a *Agent) sweepEvery() time.Duration {
	if a.cfg.TaskLogSweep <= 0 {
		return DefaultTaskLogSweep
	}
	return a.cfg.TaskLogSweep
}
