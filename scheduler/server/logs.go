package server

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Task output: agents keep every attempt's full stdout and stderr
// (agent/tasklog). LogsService.Stream, on the leader, asks the agent that
// ran the attempt for it chunk by chunk over the agent's session (a
// LogsDown read, answered by a LogsUp data) and relays the chunks to the
// client. Each read waits for its answer before the next is sent, so the
// client's pace bounds what is in flight. Agents name the jobs whose output
// they keep; the leader answers with those gone from the state, and the
// agent removes their output.

// Bounds of the relay.
const (
	// logChunkBytes is the most one read asks for (and so one message
	// carries), below the batch budget.
	logChunkBytes = 1 << 20
	// logReadTimeout bounds the wait for an agent's answer to one read.
	logReadTimeout = 30 * time.Second
	// logFollowEvery is how often a followed attempt is read again once the
	// reader has caught up.
	logFollowEvery = 250 * time.Millisecond
	// logReconnectGrace is how long a read waits for an agent the state
	// holds up but that has no session with this leader (it is
	// reconnecting, or has not yet found a new leader) before naming
	// where its files are.
	logReconnectGrace = 5 * time.Second
)

// errNoSession is a read of an agent without a session on this leader.
var errNoSession = errors.New("agent has no session")

// logRelay matches the agents' answers to the reads waiting for them.
type logRelay struct {
	mu      sync.Mutex
	seq     uint64
	waiting map[uint64]chan *pb.LogData
}

func (r *logRelay) register() (uint64, chan *pb.LogData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[uint64]chan *pb.LogData{}
	}
	r.seq++
	ch := make(chan *pb.LogData, 1)
	r.waiting[r.seq] = ch
	return r.seq, ch
}

func (r *logRelay) forget(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, id)
}

// deliver hands an answer to its read; a late or unknown answer is dropped.
func (r *logRelay) deliver(d *pb.LogData) {
	r.mu.Lock()
	ch := r.waiting[d.RequestId]
	delete(r.waiting, d.RequestId)
	r.mu.Unlock()
	if ch != nil {
		ch <- d // buffered, and delivered at most once
	}
}

// readLog asks an agent for one chunk of output and waits for its answer.
func (l *leaderLoop) readLog(ctx context.Context, agentID string, req *pb.LogRead) (*pb.LogData, error) {
	l.mu.Lock()
	sess := l.sessions[agentID]
	l.mu.Unlock()
	if sess == nil {
		return nil, errNoSession
	}
	id, ch := l.logs.register()
	defer l.logs.forget(id)
	req.RequestId = id
	sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Logs{Logs: &pb.LogsDown{Msg: &pb.LogsDown_Read{Read: req}}}})
	t := time.NewTimer(logReadTimeout)
	defer t.Stop()
	select {
	case d := <-ch:
		return d, nil
	case <-sess.ctx.Done():
		return nil, errNoSession
	case <-l.ctx.Done():
		return nil, status.Error(codes.Unavailable, "leadership lost")
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "agent %s did not answer a read of task output within %v", agentID, logReadTimeout)
	}
}

// onLogsUp acts on an agent's task-output message.
func (l *leaderLoop) onLogsUp(sess *session, m *pb.LogsUp) {
	switch msg := m.Msg.(type) {
	case *pb.LogsUp_Data:
		l.logs.deliver(msg.Data)
	case *pb.LogsUp_Held:
		var gone []string
		l.s.fsm.Read(func(st *state.State) { gone = goneJobs(st, msg.Held.JobIds) })
		sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Logs{Logs: &pb.LogsDown{
			Msg: &pb.LogsDown_Gone{Gone: &pb.LogJobs{JobIds: gone}}}}})
	}
}

// sendGone tells each agent which of the jobs that left the state
// (retention) ran there (state.Result.RemovedFrom), so that their output
// is removed at once. Only those agents hear, of only their jobs: telling
// every agent of every batch sent a fleet of 10,000 agents 10,000
// messages of 1,000 ids per batch. An agent without a session, or that
// holds output of an attempt whose record was dropped, learns at its next
// sweep (LogsUp_Held).
func (l *leaderLoop) sendGone(byAgent map[string][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for agent, jobs := range byAgent {
		if sess := l.sessions[agent]; sess != nil {
			sess.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Logs{Logs: &pb.LogsDown{
				Msg: &pb.LogsDown_Gone{Gone: &pb.LogJobs{JobIds: jobs}}}}})
		}
	}
}

// goneJobs returns the ids that name no job in st.
func goneJobs(st *state.State, ids []string) []string {
	var gone []string
	for _, id := range ids {
		if _, ok := st.Job(id); !ok {
			gone = append(gone, id)
		}
	}
	return gone
}

// logTarget is the attempt a logs request names.
type logTarget struct {
	job, task string
	attempt   int32
	agent     string
	agentUp   bool
	// dir is where the agent keeps the attempt's files, from the label its
	// fingerprint carries ("" when it does not say).
	dir string
}

// taskLogDirLabel is the agent's fingerprint label naming where it keeps
// task output (agent.TaskLogDirLabel).
const taskLogDirLabel = "banyan.task-log-dir"

// String writes the attempt as TASK#ATTEMPT.
func (t logTarget) String() string { return fmt.Sprintf("%s#%d", t.task, t.attempt) }

// resolveLogs finds the attempt a request names: the job's only task when
// none is named, its last attempt when none is numbered.
func resolveLogs(st *state.State, req *pb.LogsRequest) (logTarget, error) {
	j, ok := st.Job(req.JobId)
	if !ok {
		return logTarget{}, status.Errorf(codes.NotFound, "job %q not found", req.JobId)
	}
	t, err := pickTask(st, j, req.Task)
	if err != nil {
		return logTarget{}, err
	}
	// A function call's output is kept like any attempt's (agent/worker).
	atts := t.PB.Attempts
	if len(atts) == 0 {
		return logTarget{}, status.Errorf(codes.FailedPrecondition, "task %s has not run yet (%s)", t.PB.Id,
			strings.ToLower(strings.TrimPrefix(t.PB.State.String(), "TASK_STATE_")))
	}
	a := atts[len(atts)-1]
	if req.Attempt > 0 {
		a = nil
		var have []string
		for _, x := range atts {
			have = append(have, fmt.Sprint(x.Number))
			if x.Number == req.Attempt {
				a = x
			}
		}
		if a == nil {
			return logTarget{}, status.Errorf(codes.NotFound, "task %s has no attempt %d (attempts: %s)", t.PB.Id, req.Attempt, strings.Join(have, ", "))
		}
	}
	if a.AgentId == "" {
		return logTarget{}, status.Errorf(codes.FailedPrecondition, "attempt %s#%d never ran on an agent (%s)", t.PB.Id, a.Number, a.Outcome)
	}
	tg := logTarget{job: j.PB.Id, task: t.PB.Id, attempt: a.Number, agent: a.AgentId}
	if ag, ok := st.Agent(a.AgentId); ok {
		tg.agentUp = ag.Up()
		if root := ag.PB.GetFingerprint().GetLabels()[taskLogDirLabel]; root != "" {
			tg.dir = path.Join(root, tg.job, tg.task, fmt.Sprint(tg.attempt))
		}
	}
	return tg, nil
}

// pickTask finds a job's task by id or name; "" is its only task.
func pickTask(st *state.State, j *state.Job, name string) (*state.Task, error) {
	if name == "" && len(j.TaskIDs()) == 1 {
		if t, ok := st.Task(j.TaskIDs()[0]); ok {
			return t, nil
		}
	}
	var names []string
	for _, id := range j.TaskIDs() {
		t, ok := st.Task(id)
		if !ok {
			continue
		}
		if name != "" && (t.PB.Id == name || t.PB.Name == name) {
			return t, nil
		}
		if len(names) < 20 {
			names = append(names, taskLabel(t.PB))
		}
	}
	more := ""
	if n := len(j.TaskIDs()); n > len(names) {
		more = fmt.Sprintf(" and %d more", n-len(names))
	}
	if name == "" {
		return nil, status.Errorf(codes.InvalidArgument, "job %s has %d tasks; name one: %s%s", j.PB.Id, len(j.TaskIDs()), strings.Join(names, ", "), more)
	}
	return nil, status.Errorf(codes.NotFound, "job %s has no task %q; its tasks: %s%s", j.PB.Id, name, strings.Join(names, ", "), more)
}

func taskLabel(t *pb.Task) string {
	if t.Name != "" && t.Name != t.Id {
		return t.Id + " (" + t.Name + ")"
	}
	return t.Id
}

// downError says where the output of an attempt on an unreachable agent is.
func downError(tg logTarget, dir string) error {
	if dir == "" {
		dir = path.Join("its --task-log-dir", tg.job, tg.task, fmt.Sprint(tg.attempt))
	}
	what := "is down"
	if tg.agentUp {
		what = "is not connected to the leader"
	}
	// FailedPrecondition, not Unavailable: trying again soon does not help
	// (clients retry Unavailable).
	return status.Errorf(codes.FailedPrecondition, "agent %s %s; its logs of %s are on that host under %s", tg.agent, what, tg, dir)
}

// logsService serves LogsService (leader only).
type logsService struct {
	pb.UnimplementedLogsServiceServer
	s *Server
}

// Stream relays one attempt's output from its agent.
func (ls *logsService) Stream(req *pb.LogsRequest, stream pb.LogsService_StreamServer) error {
	l := ls.s.currentLeader()
	if l == nil || !l.isReady() {
		return status.Errorf(codes.FailedPrecondition, "not the leader; leader=%s", ls.s.LeaderAddr())
	}
	if req.Offset < 0 {
		return status.Errorf(codes.InvalidArgument, "negative offset %d", req.Offset)
	}
	var tg logTarget
	var err error
	ls.s.fsm.Read(func(st *state.State) { tg, err = resolveLogs(st, req) })
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.LogsChunk{TaskId: tg.task, Attempt: tg.attempt, AgentId: tg.agent, Offset: req.Offset}); err != nil {
		return err
	}
	return l.relayLogs(stream, tg, req)
}

// relayLogs reads the attempt's output from its agent and sends it on.
func (l *leaderLoop) relayLogs(stream pb.LogsService_StreamServer, tg logTarget, req *pb.LogsRequest) error {
	ctx := stream.Context()
	max := min(logChunkBytes, limits.Budget{MessageSize: l.s.cfg.MaxMessageSize}.BatchBytes())
	offset, dir := req.Offset, tg.dir
	var noSessionSince time.Time
	for {
		d, err := l.readLog(ctx, tg.agent, &pb.LogRead{JobId: tg.job, TaskId: tg.task, Attempt: tg.attempt,
			Stderr: req.Stderr, Offset: offset, MaxBytes: int32(max)})
		if errors.Is(err, errNoSession) && tg.agentUp {
			if noSessionSince.IsZero() {
				noSessionSince = time.Now()
			}
			if time.Since(noSessionSince) < logReconnectGrace {
				if err := sleepCtx(ctx, logFollowEvery); err != nil {
					return err
				}
				continue
			}
		}
		noSessionSince = time.Time{}
		switch {
		case errors.Is(err, errNoSession):
			return downError(tg, dir)
		case err != nil:
			return err
		case d.Error != "":
			return status.Errorf(codes.Internal, "agent %s could not read its logs of %s: %s", tg.agent, tg, d.Error)
		}
		dir = d.Dir
		if d.Missing {
			if req.Follow && l.attemptRunning(tg) {
				if err := sleepCtx(ctx, logFollowEvery); err != nil {
					return err
				}
				continue
			}
			return status.Errorf(codes.NotFound, "agent %s keeps no output of %s (it was removed, or the agent's --task-log-dir changed)", tg.agent, tg)
		}
		if len(d.Data) > 0 || d.Offset > offset {
			if err := stream.Send(&pb.LogsChunk{Data: d.Data, Offset: d.Offset, Dropped: max64(d.Offset-offset, 0)}); err != nil {
				return err
			}
		}
		offset = d.Offset + int64(len(d.Data))
		switch {
		case d.Done:
			return nil
		case len(d.Data) == max:
			continue
		case !req.Follow:
			return nil
		}
		if err := sleepCtx(ctx, logFollowEvery); err != nil {
			return err
		}
	}
}

func max64(a, b int64) int64 { return max(a, b) }

// attemptRunning reports whether the state has the attempt still running.
func (l *leaderLoop) attemptRunning(tg logTarget) bool {
	running := false
	l.s.fsm.Read(func(st *state.State) {
		if t, ok := st.Task(tg.task); ok {
			for _, a := range t.PB.Attempts {
				if a.Number == tg.attempt && a.FinishedUnixMs == 0 && a.Outcome == "" {
					running = true
				}
			}
		}
	})
	return running
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		return nil
	}
}
