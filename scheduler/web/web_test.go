package web_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/banyan-sched/banyan/scheduler/web"
)

// farm is a state built through Apply, as the servers build theirs.
type farm struct {
	t   *testing.T
	st  *state.State
	now int64
}

func newFarm(t *testing.T) *farm {
	return &farm{t: t, st: state.New(state.DefaultDefaults), now: 1_000_000}
}

func (f *farm) apply(c *fsmpb.Command) *state.Result {
	f.t.Helper()
	c.NowUnixMs = f.now
	r := f.st.Apply(c)
	if r.Err != nil {
		f.t.Fatalf("apply %T: %v", c.Cmd, r.Err)
	}
	return r
}

func (f *farm) pool(path, guaranteed, max string) {
	f.t.Helper()
	p := &pb.Pool{Path: path}
	if guaranteed != "" {
		p.Guaranteed = &pb.Resources{CpuMillis: 4000}
	}
	if max != "" {
		p.Max, p.MaxSet = &pb.Resources{CpuMillis: 8000, Gpus: 1}, []string{"cpu", "gpu"}
	}
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: p, Create: true}}})
}

func (f *farm) submit(pool, name string, tasks ...string) string {
	f.t.Helper()
	spec := &pb.JobSpec{Name: name, Pool: pool}
	for _, n := range tasks {
		spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Name: n, Command: []string{"true"},
			Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 20},
			Env:       map[string]string{"SECRET": "hunter2"},
			Retry:     &pb.RetryPolicy{MaxAttempts: 3, InitialBackoffMs: 1}})
	}
	return f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{spec}}}}).Jobs[0].Id
}

// schedule places what fits, then starts every placed attempt.
func (f *farm) schedule() {
	f.t.Helper()
	plan := f.st.Plan(f.now, state.DefaultPlanLimits).Assignments
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: plan}}})
	f.now += 10
	for _, a := range plan {
		f.event(a.AgentId, a.TaskId, a.Attempt, "started", "", 0)
	}
}

func (f *farm) event(agent, task string, attempt int32, kind, outcome string, exit int32) {
	f.t.Helper()
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: agent, Events: []*pb.TaskEvent{{TaskId: task, Attempt: attempt, Kind: kind, Outcome: outcome,
			ExitCode: exit, UnixMs: f.now}}}}, ClassifyExitCodes: true}}})
}

// finish ends the current attempt of a task.
func (f *farm) finish(task, outcome string, exit int32) {
	f.t.Helper()
	tk, _ := f.st.Task(task)
	f.now += 100
	f.event(tk.AgentID(), task, tk.Attempt(), "finished", outcome, exit)
}

// newFixture is a farm with pools studio/{ingest,marketing}, one agent
// with a GPU, an encode job in studio/ingest whose chunk 1 failed once,
// and a plain job in studio/marketing.
func newFixture(t *testing.T) *farm {
	f := newFarm(t)
	f.pool("studio", "g", "m")
	f.pool("studio/ingest", "g", "")
	f.pool("studio/marketing", "", "")
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1", Address: "10.0.0.1:1",
		Fingerprint: &pb.Fingerprint{Hostname: "enc1", CpuCores: 16,
			Capacity: &pb.Resources{CpuMillis: 16000, MemoryBytes: 64 << 30, Gpus: 1, GpuMemoryBytes: 16 << 30, Nvenc: 3},
			Gpus: []*pb.GPU{{Index: 0, Uuid: "GPU-0", Model: "NVIDIA L4", MemoryBytes: 16 << 30, EncoderSessions: 3,
				NvencLimit: pb.NVENCLimit_NVENC_LIMIT_PER_DEVICE}}}}}})
	f.submit("studio/ingest", "encode clip", "plan", "audio", "enc-720p-0", "enc-720p-1", "enc-360p-0", "asm-720p",
		"asm-360p", "index", "verify")
	f.submit("studio/marketing", "hello", "greet")
	f.schedule()
	f.finish("job-1.3", "failed", 1)
	f.now += 2000
	f.schedule()
	return f
}

func (f *farm) web(authorize func(string) (web.Access, error)) *httptest.Server {
	read := func(fn func(*state.State)) { fn(f.st) }
	w := web.New(web.Config{Read: read, Authorize: authorize, Now: func() time.Time { return time.UnixMilli(f.now) }})
	srv := httptest.NewServer(w.Handler())
	f.t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode
}

func TestJobsListFilters(t *testing.T) {
	srv := newFixture(t).web(nil)
	cases := []struct {
		name, query string
		want        []string
	}{
		{"all, newest first", "", []string{"job-2", "job-1"}},
		{"by pool", "?pool=studio/ingest", []string{"job-1"}},
		{"by state", "?state=running", []string{"job-2", "job-1"}},
		{"by state none", "?state=succeeded", nil},
		{"by name", "?name=ENCODE", []string{"job-1"}},
		{"by id", "?name=job-2", []string{"job-2"}},
		{"limit", "?limit=1", []string{"job-2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var l web.JobList
			if code := get(t, srv, "/api/jobs"+c.query, "", &l); code != 200 {
				t.Fatalf("status %d", code)
			}
			var got []string
			for _, j := range l.Jobs {
				got = append(got, j.ID)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("jobs %v, want %v", got, c.want)
			}
			if len(l.Pools) != 4 { // default and the three studio pools
				t.Fatalf("pools %v", l.Pools)
			}
		})
	}
	if code := get(t, srv, "/api/jobs?limit=x", "", nil); code != http.StatusBadRequest {
		t.Fatalf("bad limit: status %d", code)
	}
}

func TestJobDetailStagesAndAttempts(t *testing.T) {
	f := newFixture(t)
	srv := f.web(nil)
	var d web.JobDetail
	if code := get(t, srv, "/api/jobs/job-1", "", &d); code != 200 {
		t.Fatalf("status %d", code)
	}
	if !d.Encode || d.NowMs != f.now || d.Job.Pool != "studio/ingest" || d.Job.State != "running" {
		t.Fatalf("job %+v encode %v now %d", d.Job, d.Encode, d.NowMs)
	}
	var stages []string
	for _, s := range d.Stages {
		var names []string
		for _, tk := range s.Tasks {
			names = append(names, tk.Name)
		}
		stages = append(stages, s.Label+":"+strings.Join(names, "+"))
	}
	want := "plan:plan audio:audio encode 720p:enc-720p-0+enc-720p-1 encode 360p:enc-360p-0 " +
		"assemble:asm-720p+asm-360p index:index verify:verify"
	if strings.Join(stages, " ") != want {
		t.Fatalf("stages\n%s\nwant\n%s", strings.Join(stages, " "), want)
	}
	chunk := d.Stages[2].Tasks[1]
	if len(chunk.Attempts) != 2 || chunk.Attempts[0].Outcome != "failed" || chunk.Attempts[0].ExitCode != 1 ||
		chunk.Attempts[0].Retry || !chunk.Attempts[1].Retry || chunk.Attempts[1].AgentID != "a1" ||
		chunk.Attempts[1].StartedMs == 0 || chunk.Attempts[1].FinishedMs != 0 || chunk.RetriesUsed != 1 {
		t.Fatalf("retried chunk %+v", chunk)
	}
	for _, path := range []string{"/api/jobs/job-9"} {
		if code := get(t, srv, path, "", nil); code != http.StatusNotFound {
			t.Fatalf("%s: status %d", path, code)
		}
	}
	var plain web.JobDetail
	get(t, srv, "/api/jobs/job-2", "", &plain)
	if plain.Encode || len(plain.Stages) != 1 || plain.Stages[0].Label != "tasks" {
		t.Fatalf("plain job stages %+v", plain.Stages)
	}
	raw := getRaw(t, srv, "/api/jobs/job-1")
	if strings.Contains(raw, "hunter2") || strings.Contains(raw, "SECRET") {
		t.Fatalf("the job's answer shows task environments:\n%s", raw)
	}
}

func getRaw(t *testing.T, srv *httptest.Server, path string) string {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestStageKey(t *testing.T) {
	for name, want := range map[string]string{
		"plan": "plan", "audio": "audio", "index": "index", "verify": "verify",
		"enc-720p-3": "enc-720p", "enc-720p-3-cpu": "enc-720p", "enc-1080p-hevc-12": "enc-1080p-hevc",
		"asm-720p": "asm", "asm-": "", "enc-720p": "", "enc--1": "", "greet": "", "enc-720p-x": "",
	} {
		if got := web.StageKey(name); got != want {
			t.Errorf("StageKey(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestPoolTreeNumbers(t *testing.T) {
	f := newFixture(t)
	var tree web.PoolTree
	if code := get(t, f.web(nil), "/api/pools", "", &tree); code != 200 {
		t.Fatalf("status %d", code)
	}
	var order []string
	for _, p := range tree.Pools {
		order = append(order, p.Path)
	}
	if strings.Join(order, " ") != "default studio studio/ingest studio/marketing" {
		t.Fatalf("order %v", order)
	}
	byPath := map[string]web.PoolLine{}
	for _, p := range tree.Pools {
		byPath[p.Path] = p
	}
	// The fixture runs the encode tasks (1 cpu each) in studio/ingest,
	// above its guarantee of 4 cpu: it borrows.
	ingest, studio := byPath["studio/ingest"], byPath["studio"]
	// The numbers equal the state's own view (what ListPools serves).
	fromState := f.st.PoolView("studio/ingest")
	cpu := ingest.Resources[0]
	if cpu.Name != "cpu" || cpu.Used != fromState.Usage.CpuMillis || cpu.Guaranteed != 4000 || cpu.Max != nil ||
		!cpu.Borrowing || ingest.Running != fromState.RunningTasks || ingest.Depth != 1 || ingest.Parent != "studio" {
		t.Fatalf("studio/ingest %+v (state %v)", ingest, fromState)
	}
	if m := studio.Resources[0].Max; m == nil || *m != 8000 || studio.Resources[2].Max == nil || studio.Resources[1].Max != nil {
		t.Fatalf("studio max %+v", studio.Resources)
	}
	if !strings.HasSuffix(cpu.Text, "/4/-") {
		t.Fatalf("text %q", cpu.Text)
	}
}

func TestAgentsWithGPUs(t *testing.T) {
	var l web.AgentList
	if code := get(t, newFixture(t).web(nil), "/api/agents", "", &l); code != 200 {
		t.Fatalf("status %d", code)
	}
	if len(l.Agents) != 1 || len(l.Agents[0].GPUs) != 1 {
		t.Fatalf("agents %+v", l)
	}
	a, g := l.Agents[0], l.Agents[0].GPUs[0]
	if a.ID != "a1" || a.State != "up" || a.Hostname != "enc1" || a.RunningTasks == 0 ||
		g.Model != "NVIDIA L4" || g.Memory != "16Gi" || g.EncoderSessions != 3 || g.NVENCLimit != "per_device" {
		t.Fatalf("agent %+v gpu %+v", a, g)
	}
}

// access is a token that reads some pools and maybe the cluster.
type access struct {
	pools   map[string]bool
	cluster bool
}

func (a access) CanReadPool(p string) bool { return a.pools[p] }
func (a access) CanReadCluster() bool      { return a.cluster }

func TestACLTokens(t *testing.T) {
	f := newFixture(t)
	srv := f.web(func(secret string) (web.Access, error) {
		switch secret {
		case "ingest":
			return access{pools: map[string]bool{"studio/ingest": true}}, nil
		case "ops":
			return access{pools: map[string]bool{"default": true, "studio": true, "studio/ingest": true,
				"studio/marketing": true}, cluster: true}, nil
		}
		return nil, errors.New("ACL token not found")
	})
	for _, path := range []string{"/api/jobs", "/api/jobs/job-1", "/api/pools", "/api/agents"} {
		for _, tok := range []string{"", "wrong"} {
			if code := get(t, srv, path, tok, nil); code != http.StatusUnauthorized {
				t.Fatalf("%s with token %q: status %d, want 401", path, tok, code)
			}
		}
	}
	var l web.JobList
	get(t, srv, "/api/jobs", "ingest", &l)
	if len(l.Jobs) != 1 || l.Jobs[0].ID != "job-1" || strings.Join(l.Pools, ",") != "studio/ingest" {
		t.Fatalf("ingest token sees %+v", l)
	}
	if code := get(t, srv, "/api/jobs/job-2", "ingest", nil); code != http.StatusForbidden {
		t.Fatalf("other pool's job: status %d", code)
	}
	if code := get(t, srv, "/api/agents", "ingest", nil); code != http.StatusForbidden {
		t.Fatalf("agents without cluster read: status %d", code)
	}
	var tree web.PoolTree
	get(t, srv, "/api/pools", "ingest", &tree)
	if len(tree.Pools) != 1 || tree.Pools[0].Path != "studio/ingest" || tree.Pools[0].Depth != 0 {
		t.Fatalf("ingest token's tree %+v", tree.Pools)
	}
	if code := get(t, srv, "/api/agents", "ops", nil); code != 200 {
		t.Fatalf("ops agents: %d", code)
	}
	// The page itself needs no token: it asks for one when the API says 401.
	if code := get(t, srv, "/", "", nil); code != 200 {
		t.Fatalf("page: %d", code)
	}
}

func TestPageAssetsEmbedded(t *testing.T) {
	srv := newFarm(t).web(nil)
	for path, want := range map[string]string{"/": "/ui/app.js", "/ui/app.js": "sessionStorage",
		"/ui/style.css": ".timeline"} {
		body := getRaw(t, srv, path)
		if !strings.Contains(body, want) {
			t.Fatalf("%s lacks %q", path, want)
		}
	}
	for _, path := range []string{"/ui/nope.js", "/other"} {
		if code := get(t, srv, path, "", nil); code != http.StatusNotFound {
			t.Fatalf("%s: %d", path, code)
		}
	}
	if strings.Contains(getRaw(t, srv, "/"), "http://") || strings.Contains(getRaw(t, srv, "/"), "https://") {
		t.Fatal("the page refers to another site")
	}
}

// TestFallbackAndPreemption shows a chunk that gave way to its CPU
// fallback (no agent has a GPU) and a task preempted once: the fallback
// names the task it replaces, the given-up attempt is a "fallback" one,
// and the requeue after the preemption is not a retry.
func TestFallbackAndPreemption(t *testing.T) {
	f := newFarm(t)
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a1",
		Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 1 << 30}}}}})
	cpu := &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 20}
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{
		{Name: "encode t", Tasks: []*pb.TaskSpec{
			{Name: "plan", Command: []string{"true"}, Resources: cpu},
			{Name: "enc-720p-0", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 20, Gpus: 1},
				FallbackAfterMs: 60_000, Fallback: &pb.TaskSpec{Name: "enc-720p-0-cpu", Command: []string{"true"}, Resources: cpu}},
		}},
		{Name: "batch", Tasks: []*pb.TaskSpec{{Name: "long", Command: []string{"true"}, Resources: cpu}}},
	}}}})
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Fallback{Fallback: &fsmpb.Fallback{TaskIds: []string{"job-1.1"}}}})
	f.schedule()
	long, _ := f.st.Task("job-2.0")
	f.now += 500
	f.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Preemptions: []*fsmpb.Preemption{{
		Victim: &fsmpb.Assignment{TaskId: "job-2.0", Attempt: long.Attempt(), AgentId: "a1"}, ForTaskId: "job-1.0"}}}}})
	f.now += 100
	f.schedule()
	srv := f.web(nil)

	var enc web.JobDetail
	get(t, srv, "/api/jobs/job-1", "", &enc)
	if len(enc.Stages) != 2 || enc.Stages[1].Label != "encode 720p" || len(enc.Stages[1].Tasks) != 2 {
		t.Fatalf("stages %+v", enc.Stages)
	}
	gave, fb := enc.Stages[1].Tasks[0], enc.Stages[1].Tasks[1]
	if gave.ReplacedBy != fb.ID || fb.Replaces != gave.ID || fb.Name != "enc-720p-0-cpu" ||
		len(gave.Attempts) != 1 || gave.Attempts[0].Outcome != "fallback" || gave.Attempts[0].Error == "" {
		t.Fatalf("fallback: gave way %+v, fallback %+v", gave, fb)
	}
	var batch web.JobDetail
	get(t, srv, "/api/jobs/job-2", "", &batch)
	at := batch.Stages[0].Tasks[0].Attempts
	if len(at) != 2 || at[0].Outcome != "preempted" || at[1].Retry || at[1].StartedMs == 0 {
		t.Fatalf("preempted task's attempts %+v", at)
	}
}
