package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/httpapi"
	"github.com/banyan-sched/banyan/scheduler/metrics"
	"github.com/banyan-sched/banyan/scheduler/server"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// observedServer is a one-server cluster with metrics and the HTTP surface.
type observedServer struct {
	s    *server.Server
	addr string // gRPC
	http string // base URL of the HTTP surface
}

func startObservedServer(t *testing.T, cfg server.Config) *observedServer {
	t.Helper()
	m := metrics.New()
	cfg.Observer = m
	ln := listen(t)
	cfg.Listener = ln
	s := startServer(t, cfg)
	t.Cleanup(func() { s.Close() })
	if err := m.WatchServer(s); err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0", Gatherer: m.Registry,
		Ready: []httpapi.Check{{Name: "raft", Fn: s.Ready}}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Serve(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &observedServer{s: s, addr: ln.Addr().String(), http: "http://" + h.Addr()}
}

// scrape reads /metrics as series ("name{labels}") to values.
type scrape map[string]float64

func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := scrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the series of one metric name whose labels contain every
// `key="value"` given.
func (s scrape) sum(name string, labels ...string) (total float64, found bool) {
	for series, v := range s {
		n, lbl, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(lbl, l)
		}
		if ok {
			total, found = total+v, true
		}
	}
	return total, found
}

// names returns every metric name in the scrape.
func (s scrape) names() map[string]bool {
	out := map[string]bool{}
	for series := range s {
		n, _, _ := strings.Cut(series, "{")
		out[n] = true
	}
	return out
}

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsDuringAndAfterAJob runs a server and an agent, scrapes
// /metrics while a job runs and after it finishes: the queue drains to 0,
// the submit-to-start histogram counts every task started, outcomes and
// raft series are there; health says ready over HTTP and gRPC, and
// reflection lists the services.
func TestMetricsDuringAndAfterAJob(t *testing.T) {
	o := startObservedServer(t, server.Config{NodeID: "s1", DataDir: t.TempDir(), Bootstrap: true})
	waitLeader(t, o.s)
	if code, _ := httpStatus(t, o.http+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	startReadyAgent(t, "a1", o.addr, 2)
	c := dialClient(t, o.addr)
	if _, err := pb.NewPoolServiceClient(dialConn(t, o.addr)).CreatePool(context.Background(), &pb.PoolRequest{Pool: &pb.Pool{
		Path: "studio", Guaranteed: &pb.Resources{CpuMillis: 1000}, Max: &pb.Resources{CpuMillis: 2000}, MaxSet: []string{"cpu"}}}); err != nil {
		t.Fatal(err)
	}
	// Six tasks of a whole CPU each on a two-CPU agent: four wait in the queue.
	const n = 6
	spec := shellJob("obs", "obs-1", n, "sleep 0.4")
	spec.Pool = "studio"
	for _, ts := range spec.Tasks {
		ts.Resources = &pb.Resources{CpuMillis: 1000}
	}
	resp, err := c.SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	sawQueued := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !sawQueued; {
		m := scrapeMetrics(t, o.http)
		depth, _ := m.sum("banyan_queue_depth", `pool="studio"`, `class="batch"`)
		running, _ := m.sum("banyan_tasks", `state="running"`)
		sawQueued = depth > 0 && running > 0
		time.Sleep(20 * time.Millisecond)
	}
	if !sawQueued {
		t.Error("never scraped queued and running tasks at once while the job ran")
	}
	if j := waitJob(t, c, resp.Jobs[0].Id, 30*time.Second); j.State != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %v: %s", j.State, j.Reason)
	}

	var m scrape
	for deadline := time.Now().Add(5 * time.Second); ; { // the last outcomes commit after the job reads final
		m = scrapeMetrics(t, o.http)
		if v, _ := m.sum("banyan_task_outcomes_total", `outcome="succeeded"`); v == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	depth, found := m.sum("banyan_queue_depth", `pool="studio"`, `class="batch"`)
	if !found {
		t.Error("no banyan_queue_depth series for the default pool once drained")
	}
	expect("queue depth after the job", depth, 0)
	started, _ := m.sum("banyan_task_submit_to_start_seconds_count", `class="batch"`)
	expect("submit-to-start count", started, n)
	succeeded, _ := m.sum("banyan_task_outcomes_total", `outcome="succeeded"`)
	expect("succeeded outcomes", succeeded, n)
	tasksDone, _ := m.sum("banyan_tasks", `state="succeeded"`)
	expect("tasks succeeded", tasksDone, n)
	up, _ := m.sum("banyan_agents", `state="up"`)
	expect("agents up", up, 1)
	passes, _ := m.sum("banyan_scheduling_pass_placements_sum")
	expect("placements over all passes", passes, n)
	leader, _ := m.sum("banyan_raft_leader")
	expect("leader", leader, 1)
	// An entry may be in flight at the scrape: a small lag is fine.
	if lag, ok := m.sum("banyan_raft_apply_lag"); !ok || lag > 16 {
		t.Errorf("apply lag %v (found %v)", lag, ok)
	}
	if v, _ := m.sum("banyan_raft_commit_seconds_count"); v == 0 {
		t.Error("raft commit times not bridged")
	}
	if v, _ := m.sum("banyan_raft_state_changes_total", `state="leader"`); v < 1 {
		t.Error("raft leader changes not bridged")
	}
	if v, _ := m.sum("banyan_server_ready"); v != 1 {
		t.Error("server not ready in metrics")
	}

	if code, body := httpStatus(t, o.http+"/readyz"); code != 200 {
		t.Errorf("readyz %d: %s", code, body)
	}
	conn := dialConn(t, o.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health: %v %v", h, err)
	}
	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "banyan.v1.JobService"}); err != nil ||
		h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health of JobService: %v %v", h, err)
	}
	if got := reflectServices(t, ctx, conn); !strings.Contains(strings.Join(got, ","), "banyan.v1.JobService") {
		t.Errorf("reflection lists %v", got)
	}

	// A GPU host (by hand: no NVML here) gives the per-agent GPU series;
	// then every series the dashboard names must be in a scrape.
	// It sends no heartbeats: it misses its lease (a second here).
	startFakeGPUAgent(t, o.addr, "gpu-1")
	for deadline := time.Now().Add(10 * time.Second); ; {
		m = scrapeMetrics(t, o.http)
		if v, _ := m.sum("banyan_agent_lease_misses_total", `agent="gpu-1"`); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the silent agent's lease miss was not counted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if free, _ := m.sum("banyan_agent_nvenc_sessions", `agent="gpu-1"`, `state="free"`); free != 32 {
		t.Errorf("free NVENC sessions of the fake GPU host: %v, want 32", free)
	}
	if down, _ := m.sum("banyan_agents", `state="down"`); down != 1 {
		t.Errorf("agents down: %v, want 1", down)
	}
	checkDashboard(t, m)
}

// startReadyAgent runs an in-process agent with cpus CPUs and waits until
// it is ready (its /readyz check: a session with the leader).
func startReadyAgent(t *testing.T, id, addr string, cpus int64) {
	t.Helper()
	fp := &pb.Fingerprint{Hostname: id, CpuCores: int32(cpus), MemoryBytes: 8 << 30,
		Capacity: &pb.Resources{CpuMillis: cpus * 1000, MemoryBytes: 8 << 30}}
	a, err := agent.New(agent.Config{ID: id, Servers: []string{addr}, Fingerprint: fp, WorkDir: t.TempDir(),
		Logger: quietLogger(), KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Ready(); err == nil {
		t.Fatal("agent ready before it ran")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); a.Ready() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: %v", a.Ready())
		}
	}
}

// reflectServices lists the services through gRPC reflection (as
// `grpcurl list` does).
func reflectServices(t *testing.T, ctx context.Context, conn *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatalf("reflection send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.Name)
	}
	return out
}

// metricRef finds banyan_ metric names in PromQL.
var metricRef = regexp.MustCompile(`banyan_[a-z0-9_]+`)

// checkDashboard parses deploy/grafana/banyan.json and checks that every
// banyan_ metric its queries name is in the scrape.
func checkDashboard(t *testing.T, m scrape) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/grafana/banyan.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	have := m.names()
	var missing []string
	exprs := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			for _, name := range metricRef.FindAllString(tg.Expr, -1) {
				if !have[name] {
					missing = append(missing, p.Title+": "+name)
				}
			}
		}
	}
	if exprs == 0 {
		t.Fatal("dashboard has no queries")
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("dashboard names series the scrape lacks:\n  %s", strings.Join(missing, "\n  "))
	}
}

// Raft's own lines go through the server's slog handler: JSON here, with
// the logger name and the server's node id, at RaftLogLevel or above.
func TestRaftLogsThroughSlog(t *testing.T) {
	logs := &syncBuffer{}
	s, err := server.New(server.Config{NodeID: "s1", DataDir: t.TempDir(), Listener: listen(t), Bootstrap: true,
		RaftLogLevel: "info", Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitLeader(t, s)
	raftLines := 0
	for _, r := range logs.records(t) {
		if r["logger"] == "raft" {
			raftLines++
			if r["node"] != "s1" {
				t.Errorf("raft line without the node id: %v", r)
			}
		}
	}
	if raftLines == 0 {
		t.Fatalf("no raft line in the server's JSON log:\n%s", logs.String())
	}
}
