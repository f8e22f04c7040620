package server_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
)

// Incident: under -race on a slow CI machine, a leader busy committing a
// 4 MiB result let its agent's session lapse; the agent resent the result
// on every new session and every late acknowledgement, and each copy went
// through raft again (a log entry, a disk write, the result parsed again),
// so the leader fell further behind and the agent lost its lease over and
// over. Copies of events already applied are now acknowledged without a
// log entry; a message that mixes copies and news commits the news alone.
func TestResentEventsAreAcknowledgedWithoutAnEntry(t *testing.T) {
	s, stream, c := handSessionFarm(t)
	ctx := context.Background()
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("two", "", 2, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	var tasks []*pb.TaskAssignment
	for len(tasks) < 2 {
		tasks = append(tasks, recvMessage(t, stream).GetBatch().GetTasks()...)
	}
	a, b := tasks[0], tasks[1]
	send := func(events ...*pb.TaskEvent) {
		t.Helper()
		if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.TaskEvents{Events: events}}}); err != nil {
			t.Fatal(err)
		}
		for {
			if ack := recvMessage(t, stream).GetAck(); ack != nil {
				if len(ack.Events) != len(events) {
					t.Fatalf("acknowledged %d events of %d", len(ack.Events), len(events))
				}
				return
			}
		}
	}
	startA := &pb.TaskEvent{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "started", UnixMs: 1_000}
	finishA := &pb.TaskEvent{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "finished", UnixMs: 2_000,
		Outcome: "succeeded"}
	send(startA, finishA)
	applied := s.RaftIndexes().Last

	// Copies: of the finished attempt, its start, an attempt never placed,
	// and a task that does not exist.
	for range 3 {
		send(startA, finishA)
	}
	send(&pb.TaskEvent{TaskId: a.TaskId, Attempt: a.Attempt + 1, Kind: "finished", Outcome: "failed"},
		&pb.TaskEvent{TaskId: "job-404.0", Attempt: 1, Kind: "started", UnixMs: 3_000})
	if got := s.RaftIndexes().Last; got != applied {
		t.Fatalf("copies of applied events took %d log entries", got-applied)
	}

	// A copy beside news: one entry, with the news.
	startB := &pb.TaskEvent{TaskId: b.TaskId, Attempt: b.Attempt, Kind: "started", UnixMs: 4_000}
	send(finishA, startB)
	if got := s.RaftIndexes().Last; got != applied+1 {
		t.Fatalf("a copy beside news took %d entries, want 1", got-applied)
	}
	// A start already recorded at another time is news too (the agent
	// restarted the clock it reports by): it is applied, not dropped.
	send(&pb.TaskEvent{TaskId: b.TaskId, Attempt: b.Attempt, Kind: "started", UnixMs: 5_000})
	if got := s.RaftIndexes().Last; got != applied+2 {
		t.Fatalf("a start at a new time took %d entries in all, want 2", got-applied)
	}
	j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: resp.Jobs[0].Id, WithTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range j.Tasks {
		at := task.Attempts[len(task.Attempts)-1]
		switch task.Id {
		case a.TaskId:
			if task.State != pb.TaskState_TASK_STATE_SUCCEEDED || len(task.Attempts) != 1 ||
				at.StartedUnixMs != 1_000 || at.FinishedUnixMs != 2_000 {
				t.Errorf("task a: %v, %d attempts, started %d finished %d", task.State, len(task.Attempts),
					at.StartedUnixMs, at.FinishedUnixMs)
			}
		case b.TaskId:
			if task.State != pb.TaskState_TASK_STATE_RUNNING || at.StartedUnixMs != 5_000 {
				t.Errorf("task b: %v started %d, want running since 5000", task.State, at.StartedUnixMs)
			}
		}
	}
}

// handSessionFarm starts a one-node server and opens an agent session on
// it by hand (agent "h", 4 cpus), returning the server (closed when the
// test ends), the session and a client. The lease is long: the hand-made
// session sends no heartbeats.
func handSessionFarm(t *testing.T) (*server.Server, pb.AgentService_SessionClient, pb.JobServiceClient) {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		Lease: time.Minute})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	fp := &pb.Fingerprint{Hostname: "h", CpuCores: 4, MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}}
	stream, _ := openAgentSession(t, addr, "h", fp)
	return s, stream, dialClient(t, addr)
}

// recvMessage reads the session's next message, failing the test after
// 20 s without one.
func recvMessage(t *testing.T, stream pb.AgentService_SessionClient) *pb.ServerMessage {
	t.Helper()
	type msg struct {
		m   *pb.ServerMessage
		err error
	}
	ch := make(chan msg, 1)
	go func() { m, err := stream.Recv(); ch <- msg{m, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("session: %v", r.err)
		}
		return r.m
	case <-time.After(20 * time.Second):
		t.Fatal("no message from the leader in 20s")
		return nil
	}
}

// An agent that reports an attempt finished without an outcome (a bug)
// left an attempt record that read as still running on a queued task. The
// leader now records such an end as a failure that says why, and the task
// is retried as after any failure.
func TestFinishedWithoutOutcomeIsAFailureThatSaysSo(t *testing.T) {
	_, stream, c := handSessionFarm(t)
	ctx := context.Background()
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("one", "", 1, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	var a *pb.TaskAssignment
	for a == nil {
		if tasks := recvMessage(t, stream).GetBatch().GetTasks(); len(tasks) > 0 {
			a = tasks[0]
		}
	}
	if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.TaskEvents{Events: []*pb.TaskEvent{
		{TaskId: a.TaskId, Attempt: a.Attempt, Kind: "finished", UnixMs: 1_000}}}}}); err != nil {
		t.Fatal(err)
	}
	for recvMessage(t, stream).GetAck() == nil {
	}
	j, err := c.GetJob(ctx, &pb.GetJobRequest{Id: resp.Jobs[0].Id, WithTasks: true})
	if err != nil {
		t.Fatal(err)
	}
	first := j.Tasks[0].Attempts[0]
	if first.Outcome != "failed" || first.Error != "the agent reported the attempt finished without an outcome" ||
		j.Tasks[0].RetriesUsed != 1 {
		t.Fatalf("attempt 1: outcome %q, error %q, retries used %d; want a failure that says it had no outcome",
			first.Outcome, first.Error, j.Tasks[0].RetriesUsed)
	}
}
