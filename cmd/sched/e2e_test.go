package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests drive the real `sched` binary: `sched dev` as a child process,
// the client commands against it over gRPC on loopback, and kill -9.

var schedBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sched-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	schedBin = filepath.Join(dir, "sched")
	out, err := exec.Command("go", "build", "-o", schedBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build sched: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// devProc is a running `sched dev`.
type devProc struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	// bin runs the client commands (run); empty: schedBin.
	bin string
}

func startDev(t *testing.T, addr, dataDir string, agents int) *devProc {
	t.Helper()
	return startDevWith(t, addr, dataDir, agents, nil)
}

// startDevWith starts `sched dev` with extra environment and flags.
func startDevWith(t *testing.T, addr, dataDir string, agents int, env []string, extra ...string) *devProc {
	t.Helper()
	return startDevBin(t, schedBin, addr, dataDir, agents, env, extra...)
}

// startDevBin is startDevWith for the sched binary bin, which also runs
// the dev's client commands.
func startDevBin(t *testing.T, bin, addr, dataDir string, agents int, env []string, extra ...string) *devProc {
	t.Helper()
	var log syncBuffer
	args := append([]string{"dev", "--addr", addr, "--data-dir", dataDir, "--agents", fmt.Sprint(agents),
		"--lease", "2s", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devProc{cmd: cmd, addr: addr, log: &log, bin: bin}
	t.Cleanup(func() { d.kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _, err := d.run("agent", "list")
		if err == nil && strings.Count(out, " up ") == agents {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("sched dev not ready: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *devProc) kill() {
	if d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		_ = d.cmd.Wait()
	}
}

// run runs a client command against the dev server.
func (d *devProc) run(args ...string) (stdout, stderr string, err error) {
	bin := d.bin
	if bin == "" {
		bin = schedBin
	}
	return runSchedBin(bin, d.addr, args...)
}

func runSched(addr string, args ...string) (stdout, stderr string, err error) {
	return runSchedBin(schedBin, addr, args...)
}

// runSchedBin runs the sched binary bin with --addr addr and args.
func runSchedBin(bin, addr string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(bin, append([]string{"--addr", addr}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

type jobJSON struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Counts struct {
		Total     int `json:"total"`
		Succeeded int `json:"succeeded"`
	} `json:"counts"`
	Tasks []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		State    string `json:"state"`
		Attempts []struct {
			Number     int    `json:"number"`
			AgentID    string `json:"agent_id"`
			Outcome    string `json:"outcome"`
			QueuedMs   int64  `json:"queued_unix_ms"`
			PlacedMs   int64  `json:"placed_unix_ms"`
			StartedMs  int64  `json:"started_unix_ms"`
			FinishedMs int64  `json:"finished_unix_ms"`
			Stdout     string `json:"stdout_tail"`
		} `json:"attempts"`
	} `json:"tasks"`
}

func showJob(t *testing.T, d *devProc, id string) jobJSON {
	t.Helper()
	var j jobJSON
	showJobAs(t, d, id, &j)
	return j
}

// showJobAs decodes `sched job show ID -o json` into v.
func showJobAs(t *testing.T, d *devProc, id string, v any) {
	t.Helper()
	out, stderr, err := d.run("job", "show", id, "-o", "json")
	if err != nil {
		t.Fatalf("job show %s: %v: %s", id, err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("job show json: %v\n%s", err, out)
	}
}

func submit(t *testing.T, d *devProc, file string) string {
	t.Helper()
	out, stderr, err := d.run("job", "submit", file, "-o", "json")
	if err != nil {
		t.Fatalf("submit %s: %v: %s", file, err, stderr)
	}
	var resp struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Jobs) != 1 {
		t.Fatalf("submit output: %v\n%s", err, out)
	}
	return resp.Jobs[0].ID
}

// TestThousandTasksExactlyOnce runs examples/thousand.yaml on three agents
// and checks that every task ran exactly once with its whole timeline.
func TestThousandTasksExactlyOnce(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 3)
	id := submit(t, d, "../../examples/thousand.yaml")
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	j := showJob(t, d, id)
	if j.State != "succeeded" || len(j.Tasks) != 1000 || j.Counts.Succeeded != 1000 {
		t.Fatalf("job %s: state %s, %d tasks, %d succeeded", id, j.State, len(j.Tasks), j.Counts.Succeeded)
	}
	agents := map[string]int{}
	for i, task := range j.Tasks {
		if len(task.Attempts) != 1 {
			t.Fatalf("task %s ran %d times", task.ID, len(task.Attempts))
		}
		a := task.Attempts[0]
		if a.Outcome != "succeeded" || a.QueuedMs == 0 || a.PlacedMs == 0 || a.StartedMs == 0 || a.FinishedMs == 0 {
			t.Fatalf("task %s attempt not fully recorded: %+v", task.ID, a)
		}
		if want := fmt.Sprintf("echo-%d", i); !strings.Contains(a.Stdout, fmt.Sprint(i)) {
			t.Fatalf("task %s (%s) stdout %q", task.ID, want, a.Stdout)
		}
		agents[a.AgentID]++
	}
	t.Logf("tasks per agent: %v", agents)
}

// TestKill9KeepsState kills `sched dev` with SIGKILL while a job runs and
// checks that the restarted process shows the same jobs and finishes the
// unfinished one, whose last task waits for a whole array.
func TestKill9KeepsState(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	d := startDev(t, addr, dir, 2)
	done := submit(t, d, "../../examples/hello.yaml")
	if _, stderr, err := d.run("job", "watch", done); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	before := showJob(t, d, done)
	slowFile := filepath.Join(t.TempDir(), "slow.yaml")
	if err := os.WriteFile(slowFile, []byte(`name: slow
tasks:
  - name: nap
    count: 12
    command: [sh, -c, "sleep 0.5"]
    resources: {cpu: 1}
  - name: join
    command: [/bin/true]
    after: [nap]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	slow := submit(t, d, slowFile)
	time.Sleep(800 * time.Millisecond)
	d.kill()

	d2 := startDev(t, addr, dir, 2)
	after := showJob(t, d2, done)
	if after.State != before.State || len(after.Tasks) != len(before.Tasks) {
		t.Fatalf("finished job changed across kill -9: %s/%d vs %s/%d", after.State, len(after.Tasks),
			before.State, len(before.Tasks))
	}
	for i := range after.Tasks {
		if after.Tasks[i].Attempts[0].FinishedMs != before.Tasks[i].Attempts[0].FinishedMs {
			t.Fatalf("task %s timeline changed", after.Tasks[i].ID)
		}
	}
	if _, stderr, err := d2.run("job", "watch", slow); err != nil {
		t.Fatalf("unfinished job after restart: %v: %s", err, stderr)
	}
	j := showJob(t, d2, slow)
	if j.State != "succeeded" || j.Counts.Succeeded != 13 {
		t.Fatalf("slow job: %s %d succeeded, want the 12 naps and join", j.State, j.Counts.Succeeded)
	}
	// join waits for the whole array (after: [nap]) across the restart:
	// it starts after the last nap finished.
	var lastNap, join int64
	for _, tk := range j.Tasks {
		n := len(tk.Attempts)
		if n == 0 {
			t.Fatalf("task %s has no attempt", tk.Name)
		}
		if tk.Name == "join" {
			join = tk.Attempts[n-1].StartedMs
		} else {
			lastNap = max(lastNap, tk.Attempts[n-1].FinishedMs)
		}
	}
	if join < lastNap {
		t.Fatalf("join started at %d, before the last nap finished at %d", join, lastNap)
	}
}

// TestBadJobFiles checks each bad job file gets a one-line error naming the
// problem and a non-zero exit.
func TestBadJobFiles(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)
	if _, stderr, err := d.run("pool", "create", "capped", "--max", "cpu=4"); err != nil {
		t.Fatalf("pool create: %v: %s", err, stderr)
	}
	cases := []struct{ file, want string }{
		{"syntax.yaml", "line"},
		{"unknown-field.yaml", "unknown field"},
		{"negative.yaml", "negative"},
		{"unknown-pool.yaml", `unknown pool "nope"`},
		{"over-max.yaml", "cpu 64 > max 4"},
		{"missing.yaml", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			stdout, stderr, err := d.run("job", "submit", filepath.Join("../../examples/bad", c.file))
			var exit *exec.ExitError
			if err == nil || !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("want non-zero exit, got %v (stdout %q)", err, stdout)
			}
			msg := strings.TrimRight(stderr, "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) || strings.Contains(msg, "panic") {
				t.Fatalf("want one line containing %q, got %q", c.want, stderr)
			}
		})
	}
}

// TestSubmitFileLargerThanAMessage: a file whose jobs together are larger
// than a server's gRPC message (16 MiB) is submitted in several calls,
// every job once and whole; a job larger than a server takes is refused
// by the CLI before anything is sent, in one line naming it and the limit.
func TestSubmitFileLargerThanAMessage(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)
	dir := t.TempDir()
	// Four jobs of 5,000 tasks, each task written out with a 1 KiB
	// argument (arrays go as one spec, so they would not fill a message):
	// about 5 MiB a job as sent, 20 MiB in all. The constraint keeps them
	// queued: no agent has the label.
	pad := strings.Repeat("p", 1024)
	jobOf := func(name string, n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "{\"name\": %q, \"tasks\": [", name)
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "{\"name\": \"frame-%d\", \"command\": [\"/bin/true\", \"%s\"], \"constraints\": [\"renderer=none\"]}", i, pad)
		}
		b.WriteString("]}")
		return b.String()
	}
	var jobs []string
	for _, name := range []string{"a", "b", "c", "d"} {
		jobs = append(jobs, jobOf(name, 5000))
	}
	file := filepath.Join(dir, "large.json")
	if err := os.WriteFile(file, []byte("{\"jobs\": ["+strings.Join(jobs, ",")+"]}"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := d.run("job", "submit", file)
	if err != nil {
		t.Fatalf("submit: %v: %s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("submit printed %d jobs, want 4:\n%s", len(lines), out)
	}
	for i, name := range []string{"a", "b", "c", "d"} {
		if want := fmt.Sprintf("job-%d\t%s\t5000 tasks", i+1, name); lines[i] != want {
			t.Errorf("line %d %q, want %q", i+1, lines[i], want)
		}
	}

	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, []byte(jobOf("huge", 9000)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = d.run("job", "submit", huge)
	msg := strings.TrimRight(stderr, "\n")
	if err == nil || strings.Contains(msg, "\n") || !strings.Contains(msg, "job huge: 9000 tasks make a job spec of") ||
		!strings.Contains(msg, "more than the limit of 8388608 (8MiB) per job") {
		t.Fatalf("a job over the limit: error %v, stderr %q; want one line naming the job and the 8MiB limit", err, stderr)
	}
	out, stderr, err = d.run("job", "list")
	if err != nil {
		t.Fatalf("job list: %v: %s", err, stderr)
	}
	if n := strings.Count(out, "job-"); n != 4 {
		t.Fatalf("%d jobs after the refused one, want the 4 before it:\n%s", n, out)
	}
}

// TestShowJobLargerThanAMessage: `sched job show` of a job whose tasks'
// views together pass a server's message (100,000 queued tasks with their
// blocked reasons, about 18 MB) lists every task, read a page at a time.
func TestShowJobLargerThanAMessage(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)
	file := filepath.Join(t.TempDir(), "array.yaml")
	if err := os.WriteFile(file, []byte("name: array\ntasks:\n  - name: frame-of-the-second-reel\n    count: 100000\n"+
		"    command: [/bin/true]\n    constraints: [renderer=none]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, file)
	out, stderr, err := d.run("job", "show", id, "-o", "json")
	if err != nil {
		t.Fatalf("job show: %v: %s", err, stderr)
	}
	var job struct {
		Counts struct {
			Total int `json:"total"`
		} `json:"counts"`
		Tasks []struct {
			Name          string `json:"name"`
			BlockedReason string `json:"blocked_reason"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(out), &job); err != nil {
		t.Fatalf("job show json: %v", err)
	}
	if job.Counts.Total != 100000 || len(job.Tasks) != 100000 {
		t.Fatalf("job show: %d tasks of %d listed, want all 100000", len(job.Tasks), job.Counts.Total)
	}
	for _, i := range []int{0, 49999, 99999} {
		want := "frame-of-the-second-reel-" + strconv.Itoa(i)
		if task := job.Tasks[i]; task.Name != want || task.BlockedReason == "" {
			t.Errorf("task %d: %q, blocked reason %q; want %s and why it waits", i, task.Name, task.BlockedReason, want)
		}
	}
}

// TestArrayPipelineRunsInOrder: a job of arrays whose after lists name a
// whole array and, by ${INDEX}, one task of another, run by sched dev's
// agents. Each task checks on disk that what it waits for has run: check-i
// that encode-i wrote its chunk, concat that all did. The job succeeds only
// if every task started after its own dependencies.
func TestArrayPipelineRunsInOrder(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 2)
	out := t.TempDir()
	file := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`name: pipeline
tasks:
  - name: encode
    count: 6
    command: [sh, -c, "sleep 0.$((${INDEX} %% 3)); echo ${INDEX} > %[1]s/chunk-${INDEX}"]
    resources: {cpu: 100m}
  - name: check
    count: 6
    command: [sh, -c, "test -s %[1]s/chunk-${INDEX} && touch %[1]s/checked-${INDEX}"]
    resources: {cpu: 100m}
    after: ["encode-${INDEX}"]
  - name: concat
    command: [sh, -c, "test $(ls %[1]s | grep -c chunk-) = 6 && test $(ls %[1]s | grep -c checked-) = 6 && cat %[1]s/chunk-* > %[1]s/all"]
    resources: {cpu: 100m}
    after: [check, encode]
`, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, file)
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	j := showJob(t, d, id)
	if j.State != "succeeded" || j.Counts.Succeeded != 13 {
		t.Fatalf("pipeline: %s with %d of 13 tasks succeeded", j.State, j.Counts.Succeeded)
	}
	all, err := os.ReadFile(filepath.Join(out, "all"))
	if err != nil || string(all) != "0\n1\n2\n3\n4\n5\n" {
		t.Fatalf("concat wrote %q, %v", all, err)
	}
}

// TestFunctionCalls runs 300 calls of the built-in echo function through
// sched dev's agents: they are micro-batched through worker processes, and
// each call's output is recorded, and kept for `sched job logs`.
func TestFunctionCalls(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 2)
	if _, stderr, err := d.run("pool", "set", "default", "--warm", "echo=2"); err != nil {
		t.Fatalf("pool set --warm: %v: %s", err, stderr)
	}
	file := filepath.Join(t.TempDir(), "calls.yaml")
	if err := os.WriteFile(file, []byte(`name: calls
tasks:
  - name: call
    count: 300
    function: echo
    args: ["hello", "${INDEX}"]
    resources: {cpu: 10m}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, file)
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	j := showJob(t, d, id)
	if j.Counts.Succeeded != 300 {
		t.Fatalf("%d of 300 calls succeeded", j.Counts.Succeeded)
	}
	for i, task := range j.Tasks {
		if want := fmt.Sprintf("hello %d", i); task.Attempts[0].Stdout != want {
			t.Fatalf("call %d output %q, want %q", i, task.Attempts[0].Stdout, want)
		}
	}
	// A call served by a worker keeps its output like any attempt:
	// `sched job logs` reads it from the agent's files.
	for _, i := range []int{0, 7, 299} {
		task := j.Tasks[i]
		out, stderr, err := d.run("job", "logs", id, task.Name, "--attempt", "1")
		if want := fmt.Sprintf("hello %d", i); err != nil || out != want {
			t.Fatalf("job logs %s %s: %q, %v: %s; want %q", id, task.Name, out, err, stderr, want)
		}
	}
	out, _, err := d.run("pool", "list", "-o", "json")
	if err != nil || !strings.Contains(out, `"echo": 2`) {
		t.Fatalf("pool list does not show the warm reservation: %v\n%s", err, out)
	}
}

// syncBuffer collects a running process's output; the test may read it
// while the process writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
