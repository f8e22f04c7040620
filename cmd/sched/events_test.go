package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestParseCursor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"0", "0.0", true}, {"42", "42.0", true}, {"42.3", "42.3", true}, {" 7 ", "7.0", true},
		{"", "", false}, {"x", "", false}, {"4.x", "", false}, {"-1", "", false}, {"1.99999999999", "", false},
	} {
		c, err := parseCursor(tc.in)
		if (err == nil) != tc.ok || tc.ok && c.String() != tc.want {
			t.Errorf("parseCursor(%q) = %s, %v", tc.in, c, err)
		}
	}
}

// The cursor moves past each event and past each caught_up mark, never
// back: a mark from a server that lags behind what was printed leaves it.
func TestEventCursorResumes(t *testing.T) {
	c := &eventCursor{req: &pb.EventsRequest{Newest: true}}
	step := func(ev *pb.Event, want string) {
		t.Helper()
		c.seen(ev)
		if got := (&pb.EventsRequest{FromIndex: c.req.FromIndex, FromPosition: c.req.FromPosition}); c.req.Newest ||
			cursorString(got) != want {
			t.Fatalf("after %v: %s (newest %v), want %s", ev, cursorString(got), c.req.Newest, want)
		}
	}
	step(&pb.Event{Topic: "stream", Kind: "caught_up", Index: 9}, "10.0")
	step(&pb.Event{Index: 12, Position: 3}, "12.4")
	step(&pb.Event{Topic: "stream", Kind: "caught_up", Index: 11}, "12.4")
	step(&pb.Event{Topic: "stream", Kind: "caught_up", Index: 12}, "13.0")
	step(&pb.Event{Topic: "stream", Kind: "progress", Index: 20}, "21.0")
}

func cursorString(r *pb.EventsRequest) string {
	c, _ := parseCursor("0")
	c.Index, c.Position = r.FromIndex, r.FromPosition
	return c.String()
}

func TestActionFor(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want streamAction
	}{
		{io.EOF, actionResume},
		{status.Error(codes.Unavailable, "server shutting down"), actionNext},
		{status.Error(codes.ResourceExhausted, "fell behind"), actionResume},
		{status.Error(codes.FailedPrecondition, "oldest index it holds is 9"), actionElsewhere},
		{status.Error(codes.PermissionDenied, "no"), actionStop},
		{status.Error(codes.InvalidArgument, "topic"), actionStop},
		{errors.New("local"), actionNext},
	} {
		if got := actionFor(tc.err); got != tc.want {
			t.Errorf("actionFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestEventTableRow(t *testing.T) {
	ev := &pb.Event{Index: 8, Position: 1, Topic: "task", Kind: "state", TaskId: "job-1.0", JobId: "job-1",
		Pool: "default", Name: "greet", State: "TASK_STATE_QUEUED", PreviousState: "TASK_STATE_RUNNING",
		Attempt: 1, AgentId: "a1", Outcome: "failed", FailureClass: "timeout", Reason: "killed\nafter 30s"}
	if got, want := eventStates(ev), "running>queued"; got != want {
		t.Errorf("states %q", got)
	}
	if got, want := eventDetail(ev), "greet, attempt 1 on a1, pool default, failed (timeout), killed after 30s"; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}
	j := toEventJSON(&pb.Event{Topic: "stream", Kind: "caught_up", Index: 12})
	if j.Cursor != "" || j.Next != "13.0" {
		t.Errorf("caught_up json %+v", j)
	}
	if j := toEventJSON(ev); j.Cursor != "8.1" || j.Next != "8.2" {
		t.Errorf("event json %+v", j)
	}
}

// With a hung server (accepts TCP, never answers) ahead of a live one,
// the follower moves on after one try's bound and replays from the live
// one; each event is printed once.
func TestFollowEventsPastHungServer(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{NodeID: "live", DataDir: t.TempDir(), Listener: ln, Bootstrap: true,
		RaftLogLevel: "off", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := dialFailover([]string{hung.Addr().String(), s.Addr()}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for _, p := range []string{"a", "b"} {
		if _, err := pb.NewPoolServiceClient(live).CreatePool(ctx, &pb.PoolRequest{Pool: &pb.Pool{Path: p}}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var got []string
	err = followEvents(ctx, f, &pb.EventsRequest{}, false, func(ev *pb.Event) error {
		got = append(got, ev.Kind+" "+ev.Pool)
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[created a created b caught_up ]" {
		t.Fatalf("followed %v, %v", got, err)
	}
	if took := time.Since(start); took < perTry || took > 3*perTry {
		t.Errorf("followed in %s: the hung server was not tried first, or held the follower too long", took)
	}
}
