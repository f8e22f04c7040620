package server_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func dialEvents(t *testing.T, addr string, opts ...grpc.DialOption) pb.EventServiceClient {
	t.Helper()
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewEventServiceClient(conn)
}

// readEvents reads a stream until stop says so (or 20 s pass), returning
// what it read, caught_up marks left out.
func readEvents(t *testing.T, st pb.EventService_StreamClient, stop func(*pb.Event) bool) []*pb.Event {
	t.Helper()
	var out []*pb.Event
	for {
		ev, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		if ev.Topic != state.TopicStream {
			out = append(out, ev)
		}
		if stop(ev) {
			return out
		}
	}
}

func jobEnded(id string) func(*pb.Event) bool {
	return func(ev *pb.Event) bool {
		return ev.Topic == state.TopicJob && ev.JobId == id && strings.HasSuffix(ev.State, "SUCCEEDED")
	}
}

func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func cursorList(evs []*pb.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = events.CursorOf(ev).String()
	}
	return out
}

// checkOrdered fails unless the cursors strictly increase.
func checkOrdered(t *testing.T, evs []*pb.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if !events.CursorOf(evs[i-1]).Before(events.CursorOf(evs[i])) {
			t.Fatalf("events out of order at %d: %s then %s", i, events.CursorOf(evs[i-1]), events.CursorOf(evs[i]))
		}
	}
}

// A job runs to the end; a stream from index 0 tells its whole history in
// order: the job submitted, running, succeeded, and each task created,
// queued, assigned, running and succeeded on its agent.
func TestEventsJobHistoryFromZero(t *testing.T) {
	s, jobs := startOneNodeFarm(t)
	defer s.Close()
	resp, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("hist", "", 2, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Jobs[0].Id
	waitJob(t, jobs, id, 20*time.Second)

	st, err := dialEvents(t, s.Addr()).Stream(streamCtx(t), &pb.EventsRequest{Topics: []string{"job", "task"}})
	if err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, st, jobEnded(id))
	checkOrdered(t, evs)
	var jobStates []string
	taskStates := map[string][]string{}
	for _, ev := range evs {
		switch ev.Topic {
		case state.TopicJob:
			jobStates = append(jobStates, strings.TrimPrefix(ev.State, "JOB_STATE_"))
		case state.TopicTask:
			taskStates[ev.TaskId] = append(taskStates[ev.TaskId], strings.TrimPrefix(ev.State, "TASK_STATE_"))
			if ev.Kind == state.KindState && ev.State == "TASK_STATE_SUCCEEDED" &&
				(ev.AgentId != "a1" || ev.Outcome != "succeeded" || ev.Attempt != 1) {
				t.Errorf("task end without its attempt: %v", ev)
			}
		default:
			t.Errorf("topic %s passed the filter: %v", ev.Topic, ev)
		}
	}
	if got := strings.Join(jobStates, " "); got != "QUEUED RUNNING SUCCEEDED" {
		t.Errorf("job states: %s", got)
	}
	for _, tid := range []string{id + ".0", id + ".1"} {
		if got := strings.Join(taskStates[tid], " "); got != "WAITING QUEUED ASSIGNED RUNNING SUCCEEDED" {
			t.Errorf("task %s states: %s", tid, got)
		}
	}
}

// A client that disconnects midway and resumes from its last event's
// cursor gets exactly what a client that never disconnected gets: nothing
// lost, nothing twice, live events included.
func TestEventsResumeNoLossNoDuplicate(t *testing.T) {
	s, jobs := startOneNodeFarm(t)
	defer s.Close()
	submit := func(name string) string {
		resp, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob(name, "", 3, "true")}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Jobs[0].Id
	}
	first := submit("first")
	waitJob(t, jobs, first, 20*time.Second)
	client := dialEvents(t, s.Addr())

	ctx, cancel := context.WithCancel(streamCtx(t))
	st, err := client.Stream(ctx, &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	part1 := readEvents(t, st, func(ev *pb.Event) bool {
		n++
		return n == 7 // midway through an entry's changes, most likely
	})
	cancel()

	second := submit("second") // while the client is away
	last := events.CursorOf(part1[len(part1)-1]).After()
	st, err = client.Stream(streamCtx(t), &pb.EventsRequest{FromIndex: last.Index, FromPosition: last.Position})
	if err != nil {
		t.Fatal(err)
	}
	part2 := readEvents(t, st, jobEnded(second))

	st, err = client.Stream(streamCtx(t), &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	whole := readEvents(t, st, jobEnded(second))
	got := append(cursorList(part1), cursorList(part2)...)
	if fmt.Sprint(got) != fmt.Sprint(cursorList(whole)) {
		t.Fatalf("resumed:\n%v\nwhole:\n%v", got, cursorList(whole))
	}
	checkOrdered(t, whole)
}

// Filters keep a pool's subtree or a topic; an unknown topic is refused;
// a stream whose filter skips everything still hears how far it caught up.
func TestEventsFilters(t *testing.T) {
	ln := listen(t)
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true})
	defer s.Close()
	waitLeader(t, s)
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pools := pb.NewPoolServiceClient(conn)
	for _, p := range []string{"studio", "studio/ingest", "other"} {
		if _, err := pools.CreatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: p}}); err != nil {
			t.Fatal(err)
		}
	}
	jobs := pb.NewJobServiceClient(conn)
	for _, p := range []string{"studio/ingest", "other"} {
		spec := shellJob(p, "", 1, "true")
		spec.Pool = p
		if _, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
			t.Fatal(err)
		}
	}
	startAgent(t, "a1", []string{s.Addr()}, 4)
	client := dialEvents(t, s.Addr())
	caughtUp := func(ev *pb.Event) bool { return ev.Kind == state.KindCaughtUp }

	st, _ := client.Stream(streamCtx(t), &pb.EventsRequest{Pool: "studio"})
	for _, ev := range readEvents(t, st, caughtUp) {
		if ev.Pool != "studio" && ev.Pool != "studio/ingest" {
			t.Errorf("pool filter studio let through %v", ev)
		}
	}

	// The agent's session opens after the submissions: wait for its event.
	st, _ = client.Stream(streamCtx(t), &pb.EventsRequest{Topics: []string{"agent"}})
	agentEvs := readEvents(t, st, func(ev *pb.Event) bool { return ev.Topic == state.TopicAgent })
	if ev := agentEvs[len(agentEvs)-1]; ev.AgentId != "a1" || ev.Kind != state.KindUp || ev.State != "up" {
		t.Errorf("agent event %v", ev)
	}

	st, _ = client.Stream(streamCtx(t), &pb.EventsRequest{Topics: []string{"pool"}, Pool: "nowhere"})
	mark, err := st.Recv()
	if err != nil || mark.Kind != state.KindCaughtUp || mark.Index == 0 {
		t.Fatalf("a stream that skips everything: %v, %v", mark, err)
	}
	if last := s.FSM().Events().Last(); mark.Index > last {
		t.Fatalf("caught up to %d, beyond the last index applied %d", mark.Index, last)
	}

	st, _ = client.Stream(streamCtx(t), &pb.EventsRequest{Topics: []string{"jobs"}})
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "job, task, agent, pool") {
		t.Fatalf("unknown topic: %v", err)
	}
}

// A subscriber that stops reading is ended (ResourceExhausted) once it
// falls too far behind, apply goes on meanwhile, and it resumes from its
// last event with nothing lost.
func TestEventsSlowSubscriberResumes(t *testing.T) {
	// Fixed flow-control windows: the server's sends block once 64 KiB
	// wait unread.
	jobs, client, st, got := subscribed(t, events.Options{Capacity: 100_000, MaxLag: 100},
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	var err error
	// No agent: each submission only creates and queues its tasks, two
	// events per task, far more than the window holds.
	for i := range 3 {
		spec := shellJob(fmt.Sprint("big", i), "", 2000, "true")
		if _, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
			t.Fatalf("submit while a subscriber stalls: %v", err)
		}
	}
	var endErr error
	for {
		ev, err := st.Recv()
		if err != nil {
			endErr = err
			break
		}
		if ev.Topic != state.TopicStream {
			got = append(got, ev)
		}
	}
	if status.Code(endErr) != codes.ResourceExhausted || !strings.Contains(endErr.Error(), "resume") {
		t.Fatalf("stalled subscriber ended with %v after %d events", endErr, len(got))
	}
	last := events.CursorOf(got[len(got)-1]).After()
	st, err = client.Stream(streamCtx(t), &pb.EventsRequest{FromIndex: last.Index, FromPosition: last.Position})
	if err != nil {
		t.Fatal(err)
	}
	lastQueued := func(ev *pb.Event) bool {
		return ev.TaskId == "job-3.1999" && ev.State == "TASK_STATE_QUEUED"
	}
	got = append(got, readEvents(t, st, lastQueued)...)
	st, err = client.Stream(streamCtx(t), &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	whole := readEvents(t, st, lastQueued)
	if len(got) != len(whole) || len(whole) != 1+3*(1+2*2000) {
		t.Fatalf("resumed after the drop: %d events, whole: %d", len(got), len(whole))
	}
	if fmt.Sprint(cursorList(got)) != fmt.Sprint(cursorList(whole)) {
		t.Fatal("resumed events differ from the whole stream")
	}
}

// subscribed starts a one-server cluster with no agent and the given
// events buffer, and opens an event stream from the start (with the
// client's dial options) that has surely begun: it has read the event of
// a pool created after it opened, which got returns.
func subscribed(t *testing.T, o events.Options, opts ...grpc.DialOption) (pb.JobServiceClient,
	pb.EventServiceClient, pb.EventService_StreamClient, []*pb.Event) {
	t.Helper()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: listen(t), Bootstrap: true, Events: o})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	client := dialEvents(t, s.Addr(), opts...)
	st, err := client.Stream(streamCtx(t), &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := pb.NewPoolServiceClient(conn).CreatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: "p"}}); err != nil {
		t.Fatal(err)
	}
	return dialClient(t, s.Addr()), client, st, readEvents(t, st, func(ev *pb.Event) bool { return ev.Topic == state.TopicPool })
}

// A submission that makes more events than the server's buffer holds
// keeps only its last ones there; a subscriber caught up before it is
// dropped, and resuming from its last event, or streaming from the start,
// gets every event of the entry in order, the ones not held replayed from
// the raft log.
func TestEventsEntryLargerThanTheBuffer(t *testing.T) {
	jobs, client, st, got := subscribed(t, events.Options{Capacity: 500, MaxLag: 100})
	// No agent: the job's tasks are created and queued, 1+2*1000 events
	// in one entry.
	resp, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("big", "", 1000, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	lastQueued := func(ev *pb.Event) bool {
		return ev.TaskId == resp.Jobs[0].Id+".999" && ev.State == "TASK_STATE_QUEUED"
	}
	var endErr error
	for endErr == nil {
		var ev *pb.Event
		if ev, endErr = st.Recv(); endErr == nil && ev.Topic != state.TopicStream {
			if lastQueued(ev) {
				t.Fatalf("the subscriber read the whole entry from a buffer of 500 (%d events)", len(got))
			}
			got = append(got, ev)
		}
	}
	if status.Code(endErr) != codes.ResourceExhausted {
		t.Fatalf("subscriber ended with %v after %d events, want ResourceExhausted", endErr, len(got))
	}
	last := events.CursorOf(got[len(got)-1]).After()
	st, err = client.Stream(streamCtx(t), &pb.EventsRequest{FromIndex: last.Index, FromPosition: last.Position})
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, readEvents(t, st, lastQueued)...)
	st, err = client.Stream(streamCtx(t), &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	whole := readEvents(t, st, lastQueued)
	checkOrdered(t, whole)
	var entry []*pb.Event
	for _, ev := range whole {
		if ev.JobId == resp.Jobs[0].Id {
			entry = append(entry, ev)
		}
	}
	if len(entry) != 1+2*1000 {
		t.Fatalf("the submission's entry: %d events, want %d", len(entry), 1+2*1000)
	}
	for i, ev := range entry {
		if ev.Index != entry[0].Index || ev.Position != uint32(i) {
			t.Fatalf("the entry's event %d is at %s, want %d.%d", i, events.CursorOf(ev), entry[0].Index, i)
		}
	}
	if fmt.Sprint(cursorList(got)) != fmt.Sprint(cursorList(whole)) {
		t.Fatal("resumed events differ from the whole stream")
	}
}

// With ACLs on, a stream shows only the pools the token may read and
// agents' events only with cluster read; asking for more is refused.
func TestEventsACL(t *testing.T) {
	s, _ := startACLServer(t)
	boot, err := dialToken(t, s.Addr(), "").acl.Bootstrap(ctx5(t), &pb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	root := dialToken(t, s.Addr(), boot.Secret)
	for _, p := range []string{"studio", "studio/ingest", "other"} {
		if _, err := root.pools.CreatePool(ctx5(t), &pb.PoolRequest{Pool: &pb.Pool{Path: p}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"studio/ingest", "other"} {
		spec := shellJob(p, "", 1, "true")
		spec.Pool = p
		if _, err := root.jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}}); err != nil {
			t.Fatal(err)
		}
	}
	putPolicy(t, root, "studio-reader", map[string]string{"studio/*": "read"}, "", "")
	tok := createToken(t, root, "reader", "studio-reader")
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(pb.TokenCredentials(tok.Secret)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewEventServiceClient(conn)

	st, err := client.Stream(streamCtx(t), &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, st, func(ev *pb.Event) bool { return ev.Kind == state.KindCaughtUp })
	if len(evs) == 0 {
		t.Fatal("a reader of studio/* saw nothing")
	}
	for _, ev := range evs {
		if !strings.HasPrefix(ev.Pool, "studio/") {
			t.Errorf("a reader of studio/* saw %v", ev)
		}
	}
	for _, req := range []*pb.EventsRequest{{Pool: "other"}, {Topics: []string{"agent"}}} {
		st, err := client.Stream(streamCtx(t), req)
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%v: %v, want PermissionDenied", req, err)
		}
	}
}

// Every server of a cluster, followers included, serves the same events
// at the same cursors: they apply the same log.
func TestEventsSameOnEveryServer(t *testing.T) {
	lns := []net.Listener{listen(t), listen(t), listen(t)}
	var peers []server.Peer
	var addrs []string
	for i, ln := range lns {
		peers = append(peers, server.Peer{ID: fmt.Sprintf("s%d", i+1), Addr: ln.Addr().String()})
		addrs = append(addrs, ln.Addr().String())
	}
	servers := make([]*server.Server, 3)
	for i, ln := range lns {
		servers[i] = startServer(t, server.Config{NodeID: peers[i].ID, DataDir: filepath.Join(t.TempDir(), peers[i].ID),
			Listener: ln, Peers: peers, Lease: 2 * time.Second})
		defer servers[i].Close()
	}
	waitLeader(t, servers...)
	startAgent(t, "a1", addrs, 4)
	jobs := dialClient(t, addrs[0])
	resp, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("everywhere", "", 3, "true")}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Jobs[0].Id
	waitJob(t, jobs, id, 20*time.Second)
	var first []string
	for i, addr := range addrs {
		st, err := dialEvents(t, addr).Stream(streamCtx(t), &pb.EventsRequest{Topics: []string{"job", "task"}})
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, ev := range readEvents(t, st, jobEnded(id)) {
			lines = append(lines, fmt.Sprintf("%s %s %s %s %s #%d %s", events.CursorOf(ev), ev.Kind, ev.TaskId,
				ev.JobId, ev.State, ev.Attempt, ev.AgentId))
		}
		if i == 0 {
			first = lines
			continue
		}
		if strings.Join(lines, "\n") != strings.Join(first, "\n") {
			t.Fatalf("server %s:\n%s\nserver %s:\n%s", peers[i].ID, strings.Join(lines, "\n"), peers[0].ID,
				strings.Join(first, "\n"))
		}
	}
}

// A stream whose filter skips every new entry still hears, within about a
// second, that it has caught up past them, and no more than about once a
// second.
func TestEventsCaughtUpMarksFollowSkippedEntries(t *testing.T) {
	s, jobs := startOneNodeFarm(t)
	defer s.Close()
	st, err := dialEvents(t, s.Addr()).Stream(streamCtx(t), &pb.EventsRequest{Topics: []string{"pool"}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil || first.Kind != state.KindCaughtUp {
		t.Fatalf("first message %v, %v", first, err)
	}
	start := time.Now()
	var marks []*pb.Event
	for i := range 3 {
		resp, err := jobs.SubmitJobs(ctx5(t), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob(fmt.Sprint("skip", i), "", 1, "true")}})
		if err != nil {
			t.Fatal(err)
		}
		waitJob(t, jobs, resp.Jobs[0].Id, 20*time.Second)
	}
	last := s.FSM().Events().Last()
	for len(marks) == 0 || marks[len(marks)-1].Index < last {
		ev, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != state.KindCaughtUp {
			t.Fatalf("a pool-only stream got %v", ev)
		}
		marks = append(marks, ev)
	}
	if took := time.Since(start); len(marks) > int(took/time.Second)+2 {
		t.Errorf("%d marks in %s: more than one a second", len(marks), took)
	}
}
