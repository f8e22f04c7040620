package state

// Scenario scripts: testdata/*.txt tell stories about the state machine as
// commands and the output each one printed. TestScenarios replays them;
// with -rewrite it writes the actual output back, so that a change in
// behaviour shows up as a diff of the scripts:
//
//	go test ./scheduler/state -run TestScenarios -rewrite
//
// A script is a sequence of blocks separated by blank lines; lines starting
// with '#' are comments. A block is a command line, optional input lines,
// a "----" line, and the expected output (which has no blank lines):
//
//	agent-up id=a1 cpu=4 memory=8Gi
//	----
//	agent a1: up cpu=4,memory=8Gi
//
// Arguments are key=value (a value may be double-quoted to hold spaces).
// The commands, one state per script (the clock starts at 1000):
//
//	reset [max_attempts=N] [backoff=MS] [max_backoff=MS] [max_wait=MS]
//	now <ms>|+<ms>                      set or advance the clock
//	agent-up id=A [cpu=.. memory=.. gpu=.. gpu_memory=.. nvenc=..]
//	         [labels=k=v,k=v] [known=TASK/ATTEMPT,...] [address=..]
//	agent-down id=A [reason=..]
//	pool-put path=P [guaranteed=RES] [max=RES] [create=true|false]
//	pool-delete path=P
//	submit [job args]                   then indented lines:
//	    task [name=..] [count=N] [cpu=.. memory=.. gpu=.. ...] [cmd=..]
//	         [after=a,b] [exclusive=K] [on=CONSTRAINT]... [timeout=MS]
//	         [max_attempts=N] [backoff=MS] [max_backoff=MS]
//	    job [job args]                  starts another job of the batch
//	  job args: name= pool= class=latency|batch|opportunistic priority=
//	            key= (idempotency) max_wait=
//	  a body starting with '{' is a protojson JobSpec instead.
//	plan [max_assign=N] [max_scan=N]    prints the assignments
//	commit-plan [max_assign=N]          plans and applies the assignments
//	assign task=T agent=A [attempt=N]   applies one (maybe stale) assignment
//	event task=T[,T..] [agent=A] [attempt=N] [kind=started|finished]
//	      [outcome=succeeded|failed|timeout|lost|..] [exit=N] [error=..]
//	      [stderr=..] [at=MS]           agent and attempt default to current
//	      [classify=false]              as a log entry written before exit
//	                                    codes classified failures
//	cancel job=J [reason=..]
//	show job=J | show task=T
//	agents | pools | queue
//	snapshot-roundtrip                  writes a snapshot, reads it back,
//	                                    compares and goes on with the copy
//
// Commands that change the state print what their Result says (errors,
// jobs, cancels) and every task and job whose state changed, as
// "job-1.0 t0: queued#1 -> assigned#1@a1" (state#attempt@agent). After
// every command the state's invariants are checked.

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/encoding/protojson"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the actual output")

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario files in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

// runScript replays one script, comparing (or rewriting) each output.
func runScript(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out []string
	h := newHarness()
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out = append(out, line)
			i++
			continue
		}
		start := i + 1
		cmd := line
		i++
		var input []string
		for i < len(lines) && lines[i] != "----" {
			if strings.TrimSpace(lines[i]) == "" {
				t.Fatalf("%s:%d: blank line before ---- in block %q", path, i+1, cmd)
			}
			input = append(input, lines[i])
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: block %q has no ---- line", path, start, cmd)
		}
		i++ // ----
		var want []string
		for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
			want = append(want, lines[i])
			i++
		}
		got, err := h.run(cmd, input)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, start, cmd, err)
		}
		got = strings.TrimRight(got, "\n")
		if strings.Contains(got, "\n\n") || strings.HasPrefix(got, "\n") {
			t.Fatalf("%s:%d: %s: output has a blank line, which the script format cannot hold:\n%s", path, start, cmd, got)
		}
		if errs := checkInvariants(h.s, false); len(errs) > 0 {
			t.Fatalf("%s:%d: after %s: invariants broken:\n  %s", path, start, cmd, strings.Join(errs, "\n  "))
		}
		if !*rewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", path, start, cmd, strings.Join(want, "\n"), got)
		}
		out = append(out, cmd)
		out = append(out, input...)
		out = append(out, "----")
		if got != "" {
			out = append(out, strings.Split(got, "\n")...)
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// harness holds one script's state and clock.
type harness struct {
	s   *State
	now int64
	out strings.Builder
}

func newHarness() *harness { return &harness{s: New(DefaultDefaults), now: 1000} }

func (h *harness) printf(format string, args ...any) { fmt.Fprintf(&h.out, format+"\n", args...) }

// args are a command's key=value arguments.
type args struct {
	pos  []string
	kv   map[string][]string
	used map[string]bool
}

// tokenize splits a line on spaces, keeping double-quoted parts together.
func tokenize(line string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			inQuote, have = !inQuote, true
		case c == '\\' && inQuote && i+1 < len(line):
			i++
			switch line[i] {
			case 'n':
				cur.WriteByte('\n')
			default:
				cur.WriteByte(line[i])
			}
		case (c == ' ' || c == '\t') && !inQuote:
			if have {
				toks = append(toks, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if have {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

func parseArgs(toks []string) *args {
	a := &args{kv: map[string][]string{}, used: map[string]bool{}}
	for _, tok := range toks {
		if k, v, ok := strings.Cut(tok, "="); ok {
			a.kv[k] = append(a.kv[k], v)
		} else {
			a.pos = append(a.pos, tok)
		}
	}
	return a
}

func (a *args) get(k string) (string, bool) {
	a.used[k] = true
	v, ok := a.kv[k]
	if !ok {
		return "", false
	}
	return v[len(v)-1], true
}

func (a *args) str(k, def string) string {
	if v, ok := a.get(k); ok {
		return v
	}
	return def
}

func (a *args) all(k string) []string {
	a.used[k] = true
	return a.kv[k]
}

func (a *args) list(k string) []string {
	v, ok := a.get(k)
	if !ok || v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func (a *args) int(k string, def int64) (int64, error) {
	v, ok := a.get(k)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %v", k, v, err)
	}
	return n, nil
}

// resources reads cpu=, memory=, gpu=, gpu_memory= and nvenc=.
func (a *args) resources() (pool.Resources, error) {
	var parts []string
	for _, n := range pool.ResourceNames {
		if v, ok := a.get(n); ok {
			parts = append(parts, n+"="+v)
		}
	}
	return pool.ParseResources(strings.Join(parts, ","))
}

// unused returns an error naming arguments no command read.
func (a *args) unused() error {
	var bad []string
	for k := range a.kv {
		if !a.used[k] {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("unknown arguments %v", bad)
	}
	return nil
}

// run runs one command and returns what it printed.
func (h *harness) run(line string, input []string) (string, error) {
	h.out.Reset()
	toks, err := tokenize(line)
	if err != nil {
		return "", err
	}
	a := parseArgs(toks[1:])
	switch toks[0] {
	case "reset":
		err = h.reset(a)
	case "now":
		err = h.setNow(a)
	case "agent-up":
		err = h.agentUp(a)
	case "agent-down":
		err = h.agentDown(a)
	case "devices":
		err = h.devices(a)
	case "drain":
		err = h.drain(a)
	case "gc":
		// Commits what retention removes now, as the leader does.
		age, err1 := a.int("max_age", 0)
		n, err2 := a.int("max_jobs", 0)
		if err = errors.Join(err1, err2); err == nil {
			due := h.s.GCCandidates(h.now, Retention{MaxAgeMs: age, MaxJobs: int(n)}, 0)
			h.printf("gc: %v", due)
			r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_GcJobs{GcJobs: &fsmpb.GCJobs{JobIds: append(due, a.list("also")...)}}})
			h.printf("removed: %v", r.Removed)
		}
	case "cordon":
		h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentScheduling{AgentScheduling: &fsmpb.AgentScheduling{
			AgentId: a.str("agent", ""), Ineligible: a.str("eligible", "false") != "true"}}})
		h.printf("agent %s: %s", a.str("agent", ""), agentDesc(h.s, a.str("agent", "")))
	case "drain-deadlines":
		// Commits the drain deadlines that are due now, as the leader does.
		due := h.s.DrainsDue(h.now)
		h.printf("due: %v", due)
		for _, id := range due {
			h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDrainDeadline{AgentDrainDeadline: &fsmpb.AgentDrainDeadline{AgentId: id}}})
		}
	case "pool-put":
		err = h.poolPut(a)
	case "pool-delete":
		r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: a.str("path", "")}}})
		if r.Pool != nil {
			h.printf("deleted %s", poolDesc(r.Pool))
		}
	case "submit":
		err = h.submit(a, input)
	case "plan":
		err = h.plan(a, false)
	case "commit-plan":
		err = h.plan(a, true)
	case "assign":
		err = h.assign(a)
	case "event":
		err = h.event(a)
	case "cancel":
		h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{
			JobId: a.str("job", ""), Reason: a.str("reason", "")}}})
	case "promote":
		// Promotes the opportunistic jobs that are due now, as the leader does.
		due := h.s.DuePromotions(h.now)
		h.printf("due: %v", due)
		if len(due) > 0 {
			h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{JobIds: due}}})
		}
	case "usage":
		c := h.s.PoolCost(a.str("pool", ""), 0)
		h.printf("cpu_s=%.1f gpu_s=%.1f nvenc_s=%.1f billed=%.4f", c.CpuSeconds, c.GpuSeconds, c.NvencSeconds, c.Billed)
	case "show":
		err = h.show(a)
	case "agents":
		h.agents()
	case "pools":
		h.pools()
	case "queue":
		h.queue()
	case "snapshot-roundtrip":
		err = h.snapshotRoundTrip()
	default:
		return "", fmt.Errorf("unknown command %q", toks[0])
	}
	if err != nil {
		return "", err
	}
	if toks[0] != "submit" && len(input) > 0 {
		return "", fmt.Errorf("%s takes no input lines", toks[0])
	}
	if err := a.unused(); err != nil {
		return "", err
	}
	return h.out.String(), nil
}

func (h *harness) reset(a *args) error {
	d := DefaultDefaults
	var err error
	for _, f := range []struct {
		key string
		dst *int64
	}{{"backoff", &d.InitialBackoffMs}, {"max_backoff", &d.MaxBackoffMs}, {"max_wait", &d.OpportunisticMaxWaitMs}} {
		if *f.dst, err = a.int(f.key, *f.dst); err != nil {
			return err
		}
	}
	n, err := a.int("max_attempts", int64(d.MaxAttempts))
	if err != nil {
		return err
	}
	d.MaxAttempts = int32(n)
	h.s, h.now = New(d), 1000
	return nil
}

func (h *harness) setNow(a *args) error {
	if len(a.pos) != 1 {
		return fmt.Errorf("now takes one value")
	}
	v := a.pos[0]
	n, err := strconv.ParseInt(strings.TrimPrefix(v, "+"), 10, 64)
	if err != nil {
		return err
	}
	if strings.HasPrefix(v, "+") {
		n += h.now
	}
	h.now = n
	return nil
}

// taskDesc renders a task's state as state#attempt@agent.
func taskDesc(t *pb.Task) string {
	d := strings.ToLower(strings.TrimPrefix(t.State.String(), "TASK_STATE_"))
	if t.State == pb.TaskState_TASK_STATE_QUEUED { // the pending attempt has no record yet
		d += "#" + strconv.Itoa(len(t.Attempts)+1)
	} else if n := len(t.Attempts); n > 0 {
		cur := t.Attempts[n-1]
		d += "#" + strconv.Itoa(int(cur.Number))
		if isPlaced(t.State) {
			d += "@" + cur.AgentId
			if len(cur.Gpus) > 0 {
				var uuids []string
				for _, g := range cur.Gpus {
					uuids = append(uuids, g.Uuid)
				}
				d += "[" + strings.Join(uuids, "+") + "]"
			}
		}
	}
	if t.State == pb.TaskState_TASK_STATE_QUEUED && t.NotBeforeUnixMs != 0 {
		d += fmt.Sprintf(" (not before %d)", t.NotBeforeUnixMs)
	}
	return d
}

func jobDesc(j *pb.Job) string {
	d := strings.ToLower(strings.TrimPrefix(j.State.String(), "JOB_STATE_"))
	if j.Reason != "" {
		d += fmt.Sprintf(" (%s)", j.Reason)
	}
	return d
}

// apply applies cmd at the harness clock and prints its Result and the
// state changes it caused.
func (h *harness) apply(cmd *fsmpb.Command) *Result {
	cmd.NowUnixMs = h.now
	beforeTasks := map[string]string{}
	for id, t := range allTasks(h.s) {
		beforeTasks[id] = taskDesc(t.PB)
	}
	beforeJobs := map[string]string{}
	for _, j := range h.s.jobs.all {
		id := j.PB.Id
		beforeJobs[id] = jobDesc(j.PB)
	}
	r := h.s.Apply(cmd)
	if r.Err != nil {
		h.printf("error: %v", r.Err)
	}
	for i, j := range r.Jobs {
		ex := ""
		if i < len(r.Existing) && r.Existing[i] {
			ex = " (existing)"
		}
		h.printf("%s %s: %s%s", j.Id, j.Name, jobDesc(j), ex)
	}
	for _, c := range r.Cancels {
		h.printf("cancel %s#%d on %s: %s", c.TaskID, c.Attempt, c.AgentID, c.Reason)
	}
	for _, id := range h.s.JobIDs() {
		j := h.s.job(id)
		before, existed := beforeJobs[id]
		if now := jobDesc(j.PB); existed && now != before {
			h.printf("%s: %s -> %s", id, before, now)
		}
		for _, tid := range j.TaskIDs() {
			t := h.s.task(tid)
			now := taskDesc(t.PB)
			if before, ok := beforeTasks[tid]; !ok {
				h.printf("  %s %s: -> %s", tid, t.PB.Name, now)
			} else if before != now {
				h.printf("  %s %s: %s -> %s", tid, t.PB.Name, before, now)
			}
		}
	}
	return r
}

func (h *harness) agentUp(a *args) error {
	id := a.str("id", "")
	res, err := a.resources()
	if err != nil {
		return err
	}
	labels := map[string]string{}
	for _, kv := range a.list("labels") {
		k, v, _ := strings.Cut(kv, "=")
		labels[k] = v
	}
	var known []*fsmpb.Assignment
	for _, k := range a.list("known") {
		tid, att, ok := strings.Cut(k, "/")
		n, err := strconv.Atoi(att)
		if !ok || err != nil {
			return fmt.Errorf("known %q: want TASK/ATTEMPT", k)
		}
		known = append(known, &fsmpb.Assignment{TaskId: tid, Attempt: int32(n), AgentId: id})
	}
	fp := &pb.Fingerprint{Hostname: id, Capacity: pb.FromVector(res)}
	if len(labels) > 0 {
		fp.Labels = labels
	}
	if fp.Gpus, err = parseGPUs(a.list("gpus"), a.str("nvenc_limit", "per_device")); err != nil {
		return err
	}
	nvencCap, err := a.int("nvenc_cap", 0)
	if err != nil {
		return err
	}
	fp.NvencSystemSessions = int32(nvencCap)
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
		AgentId: id, Fingerprint: fp, Address: a.str("address", ""), Known: known}}})
	if r.Err == nil {
		h.printf("agent %s: %s", id, agentDesc(h.s, id))
	}
	return nil
}

func agentDesc(s *State, id string) string {
	v := s.AgentView(id)
	d := fmt.Sprintf("%s %v", v.State, v.Fingerprint.GetCapacity().Vector())
	if u := v.Used.Vector(); !u.IsZero() {
		d += " used=" + u.String()
	}
	if labels := v.Fingerprint.GetLabels(); len(labels) > 0 {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			keys[i] = k + "=" + labels[k]
		}
		d += " labels=" + strings.Join(keys, ",")
	}
	for _, g := range v.Fingerprint.GetGpus() {
		if g.Unhealthy != "" {
			d += fmt.Sprintf(" unhealthy=%s(%s)", g.Uuid, g.Unhealthy)
		}
	}
	if len(v.GpuUse) > 0 {
		uses := make([]string, len(v.GpuUse))
		for i, u := range v.GpuUse {
			uses[i] = fmt.Sprintf("%s:%s/%d/%d", u.Uuid, pool.FormatQuantity("gpu_memory", u.MemoryBytes), u.Nvenc, u.Tasks)
			if u.Whole {
				uses[i] += "/whole"
			}
		}
		d += " gpu_use=" + strings.Join(uses, ",")
	}
	if v.Ineligible {
		d += " ineligible"
	}
	if dr := v.Drain; dr != nil {
		d += fmt.Sprintf(" draining(since=%d deadline=%d keep_opportunistic=%v complete=%v)", dr.StartedUnixMs,
			dr.DeadlineUnixMs, dr.KeepOpportunistic, dr.Complete)
	}
	if run := s.AgentRunning(id); len(run) > 0 {
		names := make([]string, len(run))
		for i, c := range run {
			names[i] = fmt.Sprintf("%s#%d", c.TaskID, c.Attempt)
		}
		d += " running=" + strings.Join(names, ",")
	}
	return d
}

func (h *harness) agentDown(a *args) error {
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{
		AgentId: a.str("id", ""), Reason: a.str("reason", "lease expired")}}})
	return nil
}

func (h *harness) poolPut(a *args) error {
	path := a.str("path", "")
	g, err := pool.ParseResources(a.str("guaranteed", ""))
	if err != nil {
		return err
	}
	m, names, err := pool.ParseResourcesNamed(a.str("max", ""))
	if err != nil {
		return err
	}
	create := a.str("create", "true") == "true"
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{
		Pool:   &pb.Pool{Path: path, Guaranteed: pb.FromVector(g), Max: pb.FromVector(m), MaxSet: names},
		Create: create}}})
	if r.Pool != nil {
		h.printf("%s", poolDesc(r.Pool))
	}
	return nil
}

func poolDesc(p *pb.Pool) string {
	q, _ := pb.QuotaFromPool(p)
	return fmt.Sprintf("pool %s: guaranteed=%v max=%s usage=%v queued=%d running=%d", p.Path,
		q.Guaranteed, q.MaxString(), p.Usage.Vector(), p.QueuedTasks, p.RunningTasks)
}

var classes = map[string]pb.JobClass{
	"latency": pb.JobClass_JOB_CLASS_LATENCY, "batch": pb.JobClass_JOB_CLASS_BATCH,
	"opportunistic": pb.JobClass_JOB_CLASS_OPPORTUNISTIC,
}

func jobSpec(a *args) (*pb.JobSpec, error) {
	spec := &pb.JobSpec{Name: a.str("name", ""), Pool: a.str("pool", ""), IdempotencyKey: a.str("key", "")}
	if c, ok := a.get("class"); ok {
		if spec.Class, ok = classes[c]; !ok {
			return nil, fmt.Errorf("unknown class %q", c)
		}
	}
	prio, err := a.int("priority", 0)
	if err != nil {
		return nil, err
	}
	spec.Priority = int32(prio)
	if spec.MaxWaitMs, err = a.int("max_wait", 0); err != nil {
		return nil, err
	}
	return spec, a.unused()
}

func taskSpecs(a *args) ([]*pb.TaskSpec, error) {
	res, err := a.resources()
	if err != nil {
		return nil, err
	}
	ts := &pb.TaskSpec{Name: a.str("name", ""), Command: []string{a.str("cmd", "true")},
		After: a.list("after"), ExclusiveKey: a.str("exclusive", "")}
	if !res.IsZero() {
		ts.Resources = pb.FromVector(res)
	}
	if ts.TimeoutMs, err = a.int("timeout", 0); err != nil {
		return nil, err
	}
	for _, c := range a.all("on") {
		ts.Constraints = append(ts.Constraints, parseConstraint(c))
	}
	if _, ok := a.kv["max_attempts"]; ok || a.kv["backoff"] != nil || a.kv["max_backoff"] != nil {
		ts.Retry = &pb.RetryPolicy{}
		n, err := a.int("max_attempts", 0)
		if err != nil {
			return nil, err
		}
		ts.Retry.MaxAttempts = int32(n)
		if ts.Retry.InitialBackoffMs, err = a.int("backoff", 0); err != nil {
			return nil, err
		}
		if ts.Retry.MaxBackoffMs, err = a.int("max_backoff", 0); err != nil {
			return nil, err
		}
	}
	count, err := a.int("count", 1)
	if err != nil {
		return nil, err
	}
	if err := a.unused(); err != nil {
		return nil, err
	}
	if count == 1 {
		return []*pb.TaskSpec{ts}, nil
	}
	out := make([]*pb.TaskSpec, count)
	for i := range out {
		out[i] = clone(ts)
		if ts.Name != "" {
			out[i].Name = fmt.Sprintf("%s%d", ts.Name, i)
		}
	}
	return out, nil
}

// parseConstraint reads label=value, label!=value, label==value,
// exists(label) and not_exists(label); anything else is passed on as the
// op of a constraint on "x", so that validation can reject it.
func parseConstraint(s string) *pb.Constraint {
	for _, op := range []string{"not_exists", "exists"} {
		if inner, ok := strings.CutPrefix(s, op+"("); ok {
			return &pb.Constraint{Label: strings.TrimSuffix(inner, ")"), Op: op}
		}
	}
	for _, op := range []string{"!=", "==", "="} {
		if l, v, ok := strings.Cut(s, op); ok {
			return &pb.Constraint{Label: l, Op: op, Value: v}
		}
	}
	return &pb.Constraint{Label: "x", Op: s}
}

func (h *harness) submit(a *args, input []string) error {
	var specs []*pb.JobSpec
	body := strings.TrimSpace(strings.Join(input, "\n"))
	if strings.HasPrefix(body, "{") {
		spec := &pb.JobSpec{}
		if err := protojson.Unmarshal([]byte(body), spec); err != nil {
			return err
		}
		specs = append(specs, spec)
	} else {
		spec, err := jobSpec(a)
		if err != nil {
			return err
		}
		specs = append(specs, spec)
		for _, l := range input {
			toks, err := tokenize(strings.TrimSpace(l))
			if err != nil {
				return err
			}
			la := parseArgs(toks[1:])
			switch toks[0] {
			case "job":
				if spec, err = jobSpec(la); err != nil {
					return err
				}
				specs = append(specs, spec)
			case "task":
				ts, err := taskSpecs(la)
				if err != nil {
					return err
				}
				spec.Tasks = append(spec.Tasks, ts...)
			default:
				return fmt.Errorf("submit: unknown input %q", l)
			}
		}
	}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: specs}}})
	return nil
}

func (h *harness) plan(a *args, commit bool) error {
	lim := DefaultPlanLimits
	n, err := a.int("max_assign", int64(lim.MaxAssign))
	if err != nil {
		return err
	}
	lim.MaxAssign = int(n)
	if n, err = a.int("max_scan", int64(lim.MaxScan)); err != nil {
		return err
	}
	lim.MaxScan = int(n)
	if n, err = a.int("preempt", int64(lim.PreemptBudget)); err != nil {
		return err
	}
	lim.PreemptBudget = int(n)
	if n, err = a.int("min_runtime", lim.MinRuntimeMs); err != nil {
		return err
	}
	lim.MinRuntimeMs = n
	full := h.s.Plan(h.now, lim)
	plan := full.Assignments
	if len(plan) == 0 && len(full.Preemptions) == 0 {
		h.printf("(none)")
		return nil
	}
	if !commit {
		for _, p := range full.Preemptions {
			h.printf("preempt %s#%d on %s for %s", p.Victim.TaskId, p.Victim.Attempt, p.Victim.AgentId, p.ForTaskId)
		}
		for _, as := range plan {
			h.printf("%s#%d -> %s", as.TaskId, as.Attempt, as.AgentId)
		}
		return nil
	}
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: full}})
	h.printRejected(plan, r)
	return nil
}

// printRejected names the assignments Apply did not take.
func (h *harness) printRejected(plan []*fsmpb.Assignment, r *Result) {
	took := map[string]bool{}
	for _, as := range r.Assigned {
		took[as.TaskId] = true
	}
	for _, as := range plan {
		if !took[as.TaskId] {
			h.printf("rejected %s#%d -> %s", as.TaskId, as.Attempt, as.AgentId)
		}
	}
}

func (h *harness) assign(a *args) error {
	tid := a.str("task", "")
	t, ok := h.s.Task(tid)
	if !ok {
		return fmt.Errorf("no task %s", tid)
	}
	att, err := a.int("attempt", int64(t.Attempt()))
	if err != nil {
		return err
	}
	as := []*fsmpb.Assignment{{TaskId: tid, Attempt: int32(att), AgentId: a.str("agent", "")}}
	r := h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: as}}})
	h.printRejected(as, r)
	return nil
}

func (h *harness) event(a *args) error {
	kind := a.str("kind", "finished")
	outcome := ""
	if kind == "finished" {
		outcome = a.str("outcome", "succeeded")
	}
	exit, err := a.int("exit", 0)
	if err != nil {
		return err
	}
	at, err := a.int("at", h.now)
	if err != nil {
		return err
	}
	classify := a.str("classify", "true") == "true"
	classifyNVENC := a.str("classify_nvenc", "true") == "true"
	agentArg, hasAgent := a.get("agent")
	attArg, hasAttempt := a.get("attempt")
	byAgent := map[string]*fsmpb.AgentEvents{}
	var order []*fsmpb.AgentEvents
	for _, tid := range a.list("task") {
		t, ok := h.s.Task(tid)
		if !ok {
			return fmt.Errorf("no task %s", tid)
		}
		agent, attempt := t.AgentID(), t.Attempt()
		if hasAgent {
			agent = agentArg
		}
		if hasAttempt {
			n, err := strconv.Atoi(attArg)
			if err != nil {
				return err
			}
			attempt = int32(n)
		}
		ae := byAgent[agent]
		if ae == nil {
			ae = &fsmpb.AgentEvents{AgentId: agent}
			byAgent[agent] = ae
			order = append(order, ae)
		}
		ae.Events = append(ae.Events, &pb.TaskEvent{TaskId: tid, Attempt: attempt, Kind: kind, UnixMs: at,
			Outcome: outcome, ExitCode: int32(exit), Error: a.str("error", ""), StderrTail: a.str("stderr", "")})
	}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: order,
		ClassifyExitCodes: classify, ClassifyNvencSessions: classifyNVENC}}})
	return nil
}

func (h *harness) show(a *args) error {
	if id, ok := a.get("task"); ok {
		v := h.s.TaskView(id)
		if v == nil {
			h.printf("no task %s", id)
			return nil
		}
		h.printTask(v)
		return nil
	}
	id := a.str("job", "")
	j := h.s.JobView(id, true)
	if j == nil {
		h.printf("no job %s", id)
		return nil
	}
	h.printf("%s %s: %s", j.Id, j.Name, jobDesc(j))
	line := fmt.Sprintf("  pool=%s class=%s priority=%d submitted=%d", j.Pool,
		strings.ToLower(strings.TrimPrefix(j.Class.String(), "JOB_CLASS_")), j.Priority, j.SubmittedUnixMs)
	if j.FinishedUnixMs != 0 {
		line += fmt.Sprintf(" finished=%d", j.FinishedUnixMs)
	}
	if j.IdempotencyKey != "" {
		line += " key=" + j.IdempotencyKey
	}
	if j.MaxWaitMs != 0 {
		line += fmt.Sprintf(" max_wait=%d", j.MaxWaitMs)
	}
	h.printf("%s", line)
	c := j.Counts
	h.printf("  counts: total=%d waiting=%d queued=%d running=%d succeeded=%d failed=%d replaced=%d cancelled=%d blocked=%d",
		c.Total, c.Waiting, c.Queued, c.Running, c.Succeeded, c.Failed, c.Replaced, c.Cancelled, c.Blocked)
	for _, t := range j.Tasks {
		h.printTask(t)
	}
	return nil
}

func (h *harness) printTask(t *pb.Task) {
	line := fmt.Sprintf("  %s %s: %s", t.Id, t.Name, taskDesc(t))
	if t.RetriesUsed != 0 {
		line += fmt.Sprintf(" retries_used=%d", t.RetriesUsed)
	}
	if t.BlockedReason != "" {
		line += fmt.Sprintf(" blocked=%q", t.BlockedReason)
	}
	if t.ReplacedBy != "" {
		line += " replaced_by=" + t.ReplacedBy
	}
	h.printf("%s", line)
	for _, at := range t.Attempts {
		l := fmt.Sprintf("    #%d", at.Number)
		if at.AgentId != "" {
			l += " on " + at.AgentId
		}
		for _, f := range []struct {
			name string
			v    int64
		}{{"queued", at.QueuedUnixMs}, {"placed", at.PlacedUnixMs}, {"started", at.StartedUnixMs}, {"finished", at.FinishedUnixMs}} {
			if f.v != 0 {
				l += fmt.Sprintf(" %s=%d", f.name, f.v)
			}
		}
		if at.Outcome != "" {
			l += " " + at.Outcome
		}
		if at.FailureClass != "" && at.FailureClass != at.Outcome {
			l += " class=" + at.FailureClass
		}
		if at.ExitCode != 0 {
			l += fmt.Sprintf(" exit=%d", at.ExitCode)
		}
		if at.Error != "" {
			l += fmt.Sprintf(" error=%q", at.Error)
		}
		h.printf("%s", l)
	}
	if t.State == pb.TaskState_TASK_STATE_QUEUED {
		h.printf("    #%d queued=%d", len(t.Attempts)+1, t.QueuedUnixMs)
	}
}

func (h *harness) agents() {
	if len(h.s.agents) == 0 {
		h.printf("(none)")
	}
	for _, id := range h.s.AgentIDs() {
		h.printf("%s: %s", id, agentDesc(h.s, id))
	}
}

func (h *harness) pools() {
	for _, p := range h.s.pools.Paths() {
		h.printf("%s", poolDesc(h.s.PoolView(p)))
	}
}

func (h *harness) queue() {
	items := queueOrder(h.s)
	if len(items) == 0 {
		h.printf("(empty)")
	}
	for _, it := range items {
		t := h.s.task(it.TaskID)
		l := fmt.Sprintf("%s %s pool=%s class=%s priority=%d", it.TaskID, t.PB.Name, it.Pool,
			strings.ToLower(strings.TrimPrefix(pb.JobClass(it.Key.Class).String(), "JOB_CLASS_")), it.Key.Priority)
		if t.PB.NotBeforeUnixMs != 0 {
			l += fmt.Sprintf(" not_before=%d", t.PB.NotBeforeUnixMs)
		}
		h.printf("%s", l)
	}
}

func (h *harness) snapshotRoundTrip() error {
	s2, err := roundTrip(h.s)
	if err != nil {
		return err
	}
	if diffs := compareStates(h.s, s2, h.now); len(diffs) > 0 {
		for _, d := range diffs {
			h.printf("diff: %s", d)
		}
		return nil
	}
	h.s = s2
	h.printf("ok")
	return nil
}

// parseGPUs reads GPUs written UUID/INDEX/MEMORY/SESSIONS[/MODEL], all with
// the NVENC limit rule limit (per_device, per_system or none).
func parseGPUs(list []string, limit string) ([]*pb.GPU, error) {
	rule, ok := pb.NVENCLimit_value["NVENC_LIMIT_"+strings.ToUpper(limit)]
	if !ok {
		return nil, fmt.Errorf("nvenc_limit %q: want per_device, per_system or none", limit)
	}
	var out []*pb.GPU
	for _, g := range list {
		f := strings.Split(g, "/")
		if len(f) < 4 {
			return nil, fmt.Errorf("gpu %q: want UUID/INDEX/MEMORY/SESSIONS[/MODEL]", g)
		}
		idx, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, err
		}
		mem, err := pool.ParseResources("gpu_memory=" + f[2])
		if err != nil {
			return nil, err
		}
		ses, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, err
		}
		gpu := &pb.GPU{Uuid: f[0], Index: int32(idx), MemoryBytes: mem.GPUMemoryBytes, EncoderSessions: int32(ses),
			NvencLimit: pb.NVENCLimit(rule)}
		if len(f) > 4 {
			gpu.Model = f[4]
		}
		out = append(out, gpu)
	}
	return out, nil
}

// devices sends an agent's device update: its GPUs as they are, with
// unhealthy=UUID:REASON,... and sessions=UUID:N,... changed.
func (h *harness) devices(a *args) error {
	id := a.str("agent", "")
	v := h.s.AgentView(id)
	if v == nil {
		return fmt.Errorf("no agent %s", id)
	}
	gpus := v.Fingerprint.GetGpus()
	set := func(key string, f func(g *pb.GPU, val string) error) error {
		for _, kv := range a.list(key) {
			uuid, val, _ := strings.Cut(kv, ":")
			found := false
			for _, g := range gpus {
				if g.Uuid == uuid {
					if err := f(g, val); err != nil {
						return err
					}
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s: no GPU %s", key, uuid)
			}
		}
		return nil
	}
	if err := set("unhealthy", func(g *pb.GPU, val string) error { g.Unhealthy = val; return nil }); err != nil {
		return err
	}
	if err := set("sessions", func(g *pb.GPU, val string) error {
		n, err := strconv.Atoi(val)
		g.EncoderSessions = int32(n)
		return err
	}); err != nil {
		return err
	}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDevices{AgentDevices: &fsmpb.AgentDevices{AgentId: id,
		Update: &pb.DeviceUpdate{Gpus: gpus, NvencSystemSessions: v.Fingerprint.GetNvencSystemSessions()}}}})
	h.printf("agent %s: %s", id, agentDesc(h.s, id))
	return nil
}

// drain starts an agent's drain: deadline=MS (absolute, 0 none), keep_opp.
func (h *harness) drain(a *args) error {
	id := a.str("agent", "")
	deadline, err := a.int("deadline", 0)
	if err != nil {
		return err
	}
	h.apply(&fsmpb.Command{Cmd: &fsmpb.Command_AgentScheduling{AgentScheduling: &fsmpb.AgentScheduling{
		AgentId: id, Ineligible: true, Drain: &pb.AgentDrain{DeadlineUnixMs: deadline,
			KeepOpportunistic: a.str("keep_opp", "false") == "true", By: a.str("by", "test")}}}})
	h.printf("agent %s: %s", id, agentDesc(h.s, id))
	return nil
}
