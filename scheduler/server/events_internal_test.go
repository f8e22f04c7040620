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

// firstEvent opens a stream from a cursor and returns its first message
// or its error.
func firstEvent(t *testing.T, addr string, req *pb.EventsRequest) (*pb.Event, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pb.NewEventServiceClient(conn).Stream(ctx, req)
	if err != nil {
		return nil, err
	}
	return st.Recv()
}

// Events pushed out of the ring are refused with the oldest index held,
// never skipped.
func TestEventsTooOldForTheRing(t *testing.T) {
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
	_, err = firstEvent(t, s.Addr(), &pb.EventsRequest{})
	horizon, _ := s.fsm.Events().Horizon()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "oldest index it holds is") {
		t.Fatalf("from 0 after the ring wrapped: %v", err)
	}
	ev, err := firstEvent(t, s.Addr(), &pb.EventsRequest{FromIndex: horizon.Index, FromPosition: horizon.Position})
	if err != nil || events.CursorOf(ev) != horizon {
		t.Fatalf("from the horizon %s: %v, %v", horizon, ev, err)
	}
}

// A restarted server restores its snapshot and replays the log after it:
// it serves events from the snapshot's index on (the same cursors as
// before the restart) and refuses older ones, naming the oldest it has.
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
	ev, err := firstEvent(t, addr, &pb.EventsRequest{FromIndex: meta.Index + 1})
	if err != nil || ev.Name != "after" {
		t.Fatalf("before the restart, from %d: %v, %v", meta.Index+1, ev, err)
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
	_, err = firstEvent(t, addr, &pb.EventsRequest{})
	want := fmt.Sprintf("oldest index it holds is %d ", meta.Index+1)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
		t.Fatalf("from 0 after a restart from a snapshot: %v, want %q", err, want)
	}
	again, err := firstEvent(t, addr, &pb.EventsRequest{FromIndex: meta.Index + 1})
	if err != nil || again.Name != "after" || events.CursorOf(again) != events.CursorOf(ev) {
		t.Fatalf("after the restart, from %d: %v (was %v), %v", meta.Index+1, again, ev, err)
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
