package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func submitTasks(t *testing.T, s *Server, name string, n int) {
	t.Helper()
	spec := &pb.JobSpec{Name: name}
	for range n {
		spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"true"}})
	}
	if _, err := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{spec}}}}); err != nil {
		t.Fatalf("submit: %v", err)
	}
}

// readUntil opens a stream and reads it until stop says so, returning the
// cursors of the events (marks left out), or the error.
func readUntil(t *testing.T, addr string, req *pb.EventsRequest, stop func(*pb.Event) bool) ([]string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := pb.NewEventServiceClient(conn).Stream(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []string
	for {
		ev, err := st.Recv()
		if err != nil {
			return out, err
		}
		if ev.Topic != state.TopicStream {
			out = append(out, events.CursorOf(ev).String())
		}
		if stop(ev) {
			return out, nil
		}
	}
}

func lastQueuedOf(task string) func(*pb.Event) bool {
	return func(ev *pb.Event) bool { return ev.TaskId == task && ev.State == "TASK_STATE_QUEUED" }
}

// compactTo drops the stored raft log up to index, as raft does after a
// snapshot once its trailing entries are not needed.
func compactTo(t *testing.T, s *Server, index uint64) {
	t.Helper()
	first, err := s.store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.DeleteRange(first, index); err != nil {
		t.Fatal(err)
	}
}

// Events pushed out of the ring are replayed from the raft log on disk,
// the very same; once the log is compacted, a cursor before the snapshot
// is refused with the oldest index the server can serve, never skipped.
func TestEventsOlderThanTheRing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true, RaftLogLevel: "off",
		Logger: quietTestLogger(), Events: events.Options{Capacity: 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitReady(t, s)
	submitTasks(t, s, "j1", 20)
	submitTasks(t, s, "j2", 1)
	got, err := readUntil(t, s.Addr(), &pb.EventsRequest{}, lastQueuedOf("job-2.0"))
	if err != nil || len(got) != 1+2*20+1+2*1 {
		t.Fatalf("from 0 past the ring: %d events %v, %v", len(got), got, err)
	}
	if h, _ := s.fsm.Events().Horizon(); h.Index <= 1 {
		t.Fatalf("the ring still holds everything (horizon %s): nothing was replayed", h)
	}
	var marks []string
	_, err = readUntil(t, s.Addr(), &pb.EventsRequest{Topics: []string{"pool"}}, func(ev *pb.Event) bool {
		marks = append(marks, ev.Kind)
		return ev.Kind == state.KindCaughtUp
	})
	if err != nil || len(marks) < 2 || marks[0] != state.KindProgress {
		t.Fatalf("a replay that sends nothing: %v, %v; want a progress mark first", marks, err)
	}
	f := s.raft.Snapshot()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	submitTasks(t, s, "j3", 20) // the ring moves past the snapshot
	compactTo(t, s, meta.Index)
	_, err = readUntil(t, s.Addr(), &pb.EventsRequest{}, lastQueuedOf("job-3.19"))
	want := fmt.Sprintf("oldest index it holds is %d ", meta.Index+1)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
		t.Fatalf("from 0 after compaction: %v, want %q", err, want)
	}
	got, err = readUntil(t, s.Addr(), &pb.EventsRequest{FromIndex: meta.Index + 1}, lastQueuedOf("job-3.19"))
	if err != nil || len(got) != 1+2*20 {
		t.Fatalf("from the snapshot on: %d events, %v", len(got), err)
	}
}

// A restarted server restores its snapshot and replays the log after it:
// it serves every event again, at the same cursors (the older ones
// regenerated from the log on disk), and once the log before the snapshot
// is compacted refuses cursors before it, naming the oldest it has.
func TestEventsAfterRestartFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := startTestServer(t, dir, ln, true)
	submitTasks(t, s, "before", 2)
	f := s.raft.Snapshot()
	if err := f.Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	submitTasks(t, s, "after", 2)
	whole, err := readUntil(t, addr, &pb.EventsRequest{}, lastQueuedOf("job-2.1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s = startTestServer(t, dir, ln, false)
	defer s.Close()
	if h, _ := s.fsm.Events().Horizon(); h != (events.Cursor{Index: meta.Index + 1}) {
		t.Fatalf("horizon after the restart %s, want the entry after the snapshot %d", h, meta.Index)
	}
	again, err := readUntil(t, addr, &pb.EventsRequest{}, lastQueuedOf("job-2.1"))
	if err != nil || fmt.Sprint(again) != fmt.Sprint(whole) {
		t.Fatalf("from 0 after the restart:\n%v\nbefore:\n%v\n%v", again, whole, err)
	}
	compactTo(t, s, meta.Index)
	_, err = readUntil(t, addr, &pb.EventsRequest{}, lastQueuedOf("job-2.1"))
	want := fmt.Sprintf("oldest index it holds is %d ", meta.Index+1)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
		t.Fatalf("from 0 after compaction: %v, want %q", err, want)
	}
	tail, err := readUntil(t, addr, &pb.EventsRequest{FromIndex: meta.Index + 1}, lastQueuedOf("job-2.1"))
	if err != nil || fmt.Sprint(tail) != fmt.Sprint(whole[len(whole)-len(tail):]) || len(tail) != 1+2*2 {
		t.Fatalf("from the snapshot on: %v (whole %v), %v", tail, whole, err)
	}
}

func waitReady(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if l := s.currentLeader(); l != nil && l.isReady() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEventFilterTable(t *testing.T) {
	job := func(pool string) *pb.Event { return &pb.Event{Topic: "job", Pool: pool} }
	agent := &pb.Event{Topic: "agent", AgentId: "a1"}
	for _, tc := range []struct {
		req  *pb.EventsRequest
		ev   *pb.Event
		keep bool
	}{
		{&pb.EventsRequest{}, job("default"), true},
		{&pb.EventsRequest{}, agent, true},
		{&pb.EventsRequest{Topics: []string{"task"}}, job("default"), false},
		{&pb.EventsRequest{Topics: []string{"task", "job"}}, job("default"), true},
		{&pb.EventsRequest{Pool: "studio"}, job("studio"), true},
		{&pb.EventsRequest{Pool: "studio"}, job("studio/ingest"), true},
		{&pb.EventsRequest{Pool: "studio/"}, job("studio/ingest"), true},
		{&pb.EventsRequest{Pool: "studio"}, job("studios"), false},
		{&pb.EventsRequest{Pool: "studio"}, agent, false},
		{&pb.EventsRequest{Pool: "studio", Topics: []string{"pool"}}, &pb.Event{Topic: "pool", Pool: "studio/x"}, true},
	} {
		f, err := newEventFilter(tc.req, &caller{})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.keep(tc.ev); got != tc.keep {
			t.Errorf("%v keeps %v: %v, want %v", tc.req, tc.ev, got, tc.keep)
		}
	}
}
