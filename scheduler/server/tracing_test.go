package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/tracing"
	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// tracedFarm starts a one-server farm and a 4-CPU agent that trace into
// tp, and a client that sends trace context.
func tracedFarm(t *testing.T, tp trace.TracerProvider) pb.JobServiceClient {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	s := startServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: ln, Bootstrap: true, TracerProvider: tp})
	t.Cleanup(func() { s.Close() })
	waitLeader(t, s)
	fp := &pb.Fingerprint{Hostname: "a1", CpuCores: 4, MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 8 << 30}, Labels: map[string]string{"hostname": "a1"}}
	runAgent(t, agent.Config{ID: "a1", Servers: []string{addr}, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), KillGrace: 200 * time.Millisecond, TracerProvider: tp})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(tracing.ClientHandler(tp)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewJobServiceClient(conn)
}

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

// A job's life is one trace: the client's submit span, the server's span
// of the call with a commit span under it, and under that a place and a
// run span per attempt, with the attempt's attributes; the run span has
// the id the task was given in TRACEPARENT, and GetJob names the trace.
func TestJobTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	c := tracedFarm(t, tp)

	ctx, root := tp.Tracer("test").Start(context.Background(), "client")
	job := shellJob("traced", "", 2, `echo "$TRACEPARENT"`)
	job.Tasks[1].Command = []string{"sh", "-c", "exit 3"}
	job.Tasks[1].Retry = &pb.RetryPolicy{MaxAttempts: 1}
	resp, err := c.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job}})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second)
	want := root.SpanContext().TraceID().String()
	if done.TraceId != want || resp.Jobs[0].TraceId != want {
		t.Fatalf("job trace id %q (submit answered %q), want the client's %q", done.TraceId, resp.Jobs[0].TraceId, want)
	}

	// The leader emits an attempt's spans just after applying its outcome.
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		byName = map[string][]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID().String() == want {
				byName[s.Name()] = append(byName[s.Name()], s)
			}
		}
		if len(byName["run"]) == 2 || time.Now().After(deadline) {
			break
		}
	}
	submit := byName["banyan.v1.JobService/SubmitJobs"]
	var server sdktrace.ReadOnlySpan
	for _, s := range submit {
		if s.SpanKind() == trace.SpanKindServer {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span of SubmitJobs in the job's trace: %v", submit)
	}
	if done.TraceSpanId != server.SpanContext().SpanID().String() {
		t.Fatalf("job's parent span %q, want the server's span of the call %s", done.TraceSpanId, server.SpanContext().SpanID())
	}
	if cm := byName["commit"]; len(cm) != 1 || cm[0].Parent().SpanID() != server.SpanContext().SpanID() {
		t.Fatalf("commit spans %v, want one under the server span", cm)
	}
	for _, kind := range []string{"place", "run"} {
		if len(byName[kind]) != 2 {
			t.Fatalf("%d %s spans, want 2 (one per task)", len(byName[kind]), kind)
		}
	}
	tasks := map[string]*pb.Task{}
	for _, tk := range done.Tasks {
		tasks[tk.Id] = tk
	}
	for _, s := range append(byName["place"], byName["run"]...) {
		tk := tasks[spanAttr(s, tracing.AttrTask)]
		if tk == nil || spanAttr(s, tracing.AttrJob) != done.Id || spanAttr(s, tracing.AttrAttempt) != "1" ||
			spanAttr(s, tracing.AttrAgent) != "a1" {
			t.Fatalf("%s span attributes %v", s.Name(), s.Attributes())
		}
		if s.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Fatalf("%s span of %s has parent %s, want the server span", s.Name(), tk.Id, s.Parent().SpanID())
		}
		a := tk.Attempts[0]
		if s.Name() == "place" {
			if !s.StartTime().Equal(time.UnixMilli(a.QueuedUnixMs)) || !s.EndTime().Equal(time.UnixMilli(a.PlacedUnixMs)) {
				t.Fatalf("place span %v..%v, attempt %v", s.StartTime(), s.EndTime(), a)
			}
			continue
		}
		start := a.StartedUnixMs
		if start == 0 { // ended (cancelled with its failed job) before it started
			start = a.PlacedUnixMs
		}
		if !s.StartTime().Equal(time.UnixMilli(start)) || !s.EndTime().Equal(time.UnixMilli(a.FinishedUnixMs)) {
			t.Fatalf("run span %v..%v, attempt %v", s.StartTime(), s.EndTime(), a)
		}
		if spanAttr(s, tracing.AttrOutcome) != a.Outcome || spanAttr(s, tracing.AttrFailureClass) != a.FailureClass {
			t.Fatalf("run span of %s: attributes %v, attempt outcome %q class %q", tk.Id, s.Attributes(), a.Outcome, a.FailureClass)
		}
		tp := jobtrace.RunTraceparent(want, tk.Id, 1)
		if "00-"+want+"-"+s.SpanContext().SpanID().String()+"-01" != tp {
			t.Fatalf("run span id %s is not the one derived for %s (%s)", s.SpanContext().SpanID(), tk.Id, tp)
		}
		if a.Outcome == "succeeded" && strings.TrimSpace(a.StdoutTail) != tp {
			t.Fatalf("task saw TRACEPARENT %q, want %q", a.StdoutTail, tp)
		}
	}
}

// Without trace context on a server that does not trace, a job still gets
// a trace id of its own (and no parent span), and its tasks a TRACEPARENT.
func TestJobTraceIDWithoutTracing(t *testing.T) {
	s, c := startOneNodeFarm(t)
	defer s.Close()
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("j", "", 1, `echo "$TRACEPARENT"`)}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, c, resp.Jobs[0].Id, 20*time.Second)
	if !jobtrace.ValidTraceID(done.TraceId) || done.TraceSpanId != "" {
		t.Fatalf("trace id %q, parent span %q", done.TraceId, done.TraceSpanId)
	}
	tk := done.Tasks[0]
	if got, want := strings.TrimSpace(tk.Attempts[0].StdoutTail), jobtrace.RunTraceparent(done.TraceId, tk.Id, 1); got != want {
		t.Fatalf("task saw TRACEPARENT %q, want %q", got, want)
	}
}

// A submission a follower forwards stays in the caller's trace: client,
// follower's server span, its forwarding client span, the leader's server
// span, which the job records as its parent and the commit span hangs
// under.
func TestJobTraceForwarded(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	servers := startThree(t, server.Config{TracerProvider: tp})
	for _, s := range servers {
		defer s.Close()
	}
	leader := waitLeader(t, servers...)
	var follower *server.Server
	for _, s := range servers {
		if s != leader {
			follower = s
		}
	}
	conn, err := grpc.NewClient(follower.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(tracing.ClientHandler(tp)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, root := tp.Tracer("test").Start(context.Background(), "client")
	resp, err := pb.NewJobServiceClient(conn).SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{shellJob("fwd", "", 1, "true")}})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	job := resp.Jobs[0]
	want := root.SpanContext().TraceID()
	if job.TraceId != want.String() {
		t.Fatalf("job trace %q, want the caller's %s", job.TraceId, want)
	}
	// Walk up from the commit span: leader server, forwarder client,
	// follower server, client, root. The follower's server span ends just
	// after its reply is on the wire, so it may end after the call
	// returned here: wait for the chain a while.
	wantKinds := []trace.SpanKind{trace.SpanKindInternal, trace.SpanKindServer, trace.SpanKindClient,
		trace.SpanKindServer, trace.SpanKindClient, trace.SpanKindInternal}
	var kinds []trace.SpanKind
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		var commit sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == want {
				byID[s.SpanContext().SpanID()] = s
				if s.Name() == tracing.SpanCommit {
					commit = s
				}
			}
		}
		kinds = kinds[:0]
		for s := commit; s != nil; s = byID[s.Parent().SpanID()] {
			kinds = append(kinds, s.SpanKind())
			if s.SpanKind() == trace.SpanKindServer && len(kinds) == 2 && job.TraceSpanId != s.SpanContext().SpanID().String() {
				t.Fatalf("job's parent span %s, want the leader's server span %s", job.TraceSpanId, s.SpanContext().SpanID())
			}
		}
		if slices.Equal(kinds, wantKinds) || time.Now().After(deadline) {
			break
		}
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("span chain from commit up: %v, want %v", kinds, wantKinds)
	}
}
