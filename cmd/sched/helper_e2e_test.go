package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/bench/schedbuild"
	"github.com/banyan-sched/banyan/cmd/internal/helperwire"
)

// The front (cmd/schedfront, installed as sched) and the client helper
// (helper.go): `sched job submit` handed to a per-user helper process.

// frontBuild is the front.
var frontBuild onceBuilt

// frontInstall returns a new directory laid out as `make build` leaves
// bin/: the front as sched, the thin client as sched-client, the full
// binary as banyand.
func frontInstall(t *testing.T) string {
	t.Helper()
	thin := thinBuild.build(t, "thin", "-tags", schedbuild.ThinTags, ".")
	front := frontBuild.build(t, "front", "../schedfront")
	dir := t.TempDir()
	install(t, front, filepath.Join(dir, "sched"))
	install(t, thin, filepath.Join(dir, "sched-client"))
	install(t, schedBin, filepath.Join(dir, "banyand"))
	return dir
}

// helperEnv is a runtime directory of the test's own (short: a Unix
// socket's path has a limit of 107 bytes), and the environment that points
// the front and its helper there. The helper is stopped, and waited for,
// when the test ends.
func helperEnv(t *testing.T, sched string) []string {
	t.Helper()
	rt, err := os.MkdirTemp("", "bh")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_RUNTIME_DIR=" + rt, "SCHED_HELPER_IDLE=2m", "SCHED_HELPER=on"}
	t.Cleanup(func() {
		pid := helperPID(t, sched, env)
		runBin(t, sched, env, "helper", "stop")
		if pid > 0 {
			waitGone(t, pid)
		}
		os.RemoveAll(rt)
	})
	return env
}

var helperStatus = regexp.MustCompile(`^helper pid (\d+), up \S+, (\d+) calls run, (\d+) declined`)

// helperCounts is the helper's pid and its counts of calls run and
// declined, from `sched helper status`; pid 0 when none runs.
func helperCounts(t *testing.T, sched string, env []string) (pid, ran, declined int) {
	t.Helper()
	out, errOut, code := runBin(t, sched, env, "helper", "status")
	if code != 0 {
		t.Fatalf("sched helper status: exit %d: %s", code, errOut)
	}
	if strings.HasPrefix(out, "no helper is running") {
		return 0, 0, 0
	}
	m := helperStatus.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("sched helper status said %q", out)
	}
	pid, _ = strconv.Atoi(m[1])
	ran, _ = strconv.Atoi(m[2])
	declined, _ = strconv.Atoi(m[3])
	return pid, ran, declined
}

func helperPID(t *testing.T, sched string, env []string) int {
	pid, _, _ := helperCounts(t, sched, env)
	return pid
}

// waitHelper waits until a helper other than not runs, and returns its pid.
func waitHelper(t *testing.T, sched string, env []string, not int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if pid := helperPID(t, sched, env); pid != 0 && pid != not {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no helper started within 15 s of a submit that found none\n%s", helperDir(env))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// helperDir lists the helper's socket directory under env's
// XDG_RUNTIME_DIR, with its logs, for a failure's message.
func helperDir(env []string) string {
	dir := socketDir(env)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s:\n", e.Name())
		if strings.HasSuffix(e.Name(), ".log") {
			data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			b.Write(data)
		}
	}
	return b.String()
}

// socketDir is the helper's socket directory under env's XDG_RUNTIME_DIR.
func socketDir(env []string) string {
	var rt string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "XDG_RUNTIME_DIR="); ok {
			rt = v
		}
	}
	return filepath.Join(rt, "banyan")
}

// waitGone waits until process pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return // a zombie: exited, its parent not yet told
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper %d still runs 15 s after it was told to stop", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var submittedLine = regexp.MustCompile(`^(job-\d+)\tvia\t1 tasks\n$`)

// A submit that finds no helper runs in sched-client and starts one; the
// calls after it run in the helper, with the front's working directory,
// flags and environment, and print and exit as sched-client does. What
// the helper must not run (standard input, a helper turned off) runs in
// sched-client, and a helper killed with SIGKILL is replaced.
func TestFrontHandsSubmitsToTheHelper(t *testing.T) {
	bin := frontInstall(t)
	sched := filepath.Join(bin, "sched")
	env := helperEnv(t, sched)
	addr := freeAddr(t)
	d := startDev(t, addr, filepath.Join(t.TempDir(), "data"), 1)
	work := t.TempDir()
	job := "name: via\ntasks:\n  - name: t\n    command: [\"true\"]\n    resources: {cpu: 1, memory: 16Mi}\n"
	if err := os.WriteFile(filepath.Join(work, "job.yaml"), []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "bad.yaml"), []byte("name: via\ntasks: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ids []string
	submit := func(what string, env []string, args ...string) {
		t.Helper()
		out, errOut, code := runIn(t, work, sched, env, append([]string{"--addr", addr, "job", "submit"}, args...)...)
		m := submittedLine.FindStringSubmatch(out)
		if code != 0 || m == nil || errOut != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", what, code, out, errOut)
		}
		ids = append(ids, m[1])
	}

	if pid := helperPID(t, sched, env); pid != 0 {
		t.Fatalf("a helper (pid %d) runs before any call", pid)
	}
	submit("the first submit (no helper yet)", env, "job.yaml")
	pid := waitHelper(t, sched, env, 0)
	submit("a submit through the helper", env, "job.yaml")
	if _, ran, _ := helperCounts(t, sched, env); ran != 1 {
		t.Fatalf("the helper ran %d calls, want 1", ran)
	}

	// Output flags and a token from the environment reach the call.
	out, errOut, code := runIn(t, work, sched, append(env, "SCHED_ADDR="+addr), "-o", "json", "job", "submit", "job.yaml")
	var resp struct {
		Jobs []struct {
			ID             string `json:"id"`
			Name           string `json:"name"`
			IdempotencyKey string `json:"idempotency_key"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); code != 0 || err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].Name != "via" {
		t.Fatalf("-o json through the helper: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}
	if k := resp.Jobs[0].IdempotencyKey; !regexp.MustCompile(`^cli-[0-9a-f]{32}-1$`).MatchString(k) {
		t.Errorf("idempotency key %q: want the front's seed and the job's number", k)
	}
	ids = append(ids, resp.Jobs[0].ID)

	// A missing or bad file: the same words and exit status as sched-client's.
	for _, file := range []string{"missing.yaml", "bad.yaml"} {
		args := []string{"--addr", addr, "job", "submit", file}
		hOut, hErr, hCode := runIn(t, work, sched, env, args...)
		dOut, dErr, dCode := runIn(t, work, sched, append(env, "SCHED_HELPER=off"), args...)
		if hCode == 0 || hOut != dOut || hErr != dErr || hCode != dCode || !strings.Contains(hErr, file) {
			t.Errorf("%s through the helper: exit %d, %q %q; in sched-client: exit %d, %q %q",
				file, hCode, hOut, hErr, dCode, dOut, dErr)
		}
	}
	_, ran, declined := helperCounts(t, sched, env)
	if ran != 4 || declined != 0 {
		t.Fatalf("the helper ran %d calls and declined %d, want 4 and 0", ran, declined)
	}

	// Standard input: declined, run in sched-client.
	cmd := exec.Command(sched, "--addr", addr, "job", "submit", "-")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(job)
	stdinOut, err := cmd.Output()
	if err != nil || !submittedLine.Match(stdinOut) {
		t.Fatalf("submit of standard input: %v, %q", err, stdinOut)
	}
	ids = append(ids, submittedLine.FindStringSubmatch(string(stdinOut))[1])
	// SCHED_HELPER=off: not even offered.
	submit("a submit with the helper off", append(env, "SCHED_HELPER=off"), "job.yaml")
	if _, ran, declined := helperCounts(t, sched, env); ran != 4 || declined != 1 {
		t.Fatalf("the helper ran %d calls and declined %d, want 4 and 1", ran, declined)
	}

	// kill -9 leaves a socket with no one behind it: the next submit runs
	// in sched-client and starts a new helper.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	submit("the submit after the helper was killed", env, "job.yaml")
	waitHelper(t, sched, env, pid)
	submit("a submit through the new helper", env, "job.yaml")

	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("job %s reported twice", id)
		}
		seen[id] = true
		var j struct{ ID, Name string }
		showJobAs(t, d, id, &j)
		if j.ID != id || j.Name != "via" {
			t.Errorf("job %s on the server is %+v", id, j)
		}
	}
	if len(ids) != 7 {
		t.Errorf("%d jobs submitted, want 7", len(ids))
	}
}

// A call run again with the seed its front handed a helper that did not
// answer makes the same idempotency keys: the job is found, not made twice.
func TestSubmitSeedMakesTheSameKeys(t *testing.T) {
	addr := freeAddr(t)
	startDev(t, addr, filepath.Join(t.TempDir(), "data"), 1)
	file := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(file, []byte("jobs:\n  - name: a\n    tasks: [{name: t, command: [\"true\"]}]\n  - name: b\n    tasks: [{name: t, command: [\"true\"]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := []string{"SCHED_SUBMIT_SEED=0123456789abcdef0123456789abcdef"}
	first, errOut, code := runBin(t, schedBin, seed, "--addr", addr, "job", "submit", file)
	if code != 0 || strings.Count(first, "\n") != 2 || strings.Contains(first, "existing") {
		t.Fatalf("first submit: exit %d, %q, %q", code, first, errOut)
	}
	again, errOut, code := runBin(t, schedBin, seed, "--addr", addr, "job", "submit", file)
	want := strings.ReplaceAll(first, "tasks\n", "tasks (existing job with the same idempotency key)\n")
	if code != 0 || again != want {
		t.Fatalf("the same seed again: exit %d, %q (stderr %q), want %q", code, again, errOut, want)
	}
	other, _, code := runBin(t, schedBin, []string{"SCHED_SUBMIT_SEED=ffff"}, "--addr", addr, "job", "submit", file)
	if code != 0 || strings.Contains(other, "existing") || other == first {
		t.Fatalf("another seed: exit %d, %q", code, other)
	}
}

// A helper that cannot start (here a bad SCHED_HELPER_IDLE, which it reads
// from the environment of the call that started it) is started once, not
// on every submit: it says why beside its socket, `sched helper status`
// reports it, and the submits of the next minute run in sched-client
// without starting another. After that minute the next submit tries again.
func TestFrontStartsNoHelperAfterOneFailed(t *testing.T) {
	bin := frontInstall(t)
	sched := filepath.Join(bin, "sched")
	env := append(helperEnv(t, sched), "SCHED_HELPER_IDLE=soon")
	addr := freeAddr(t)
	startDev(t, addr, filepath.Join(t.TempDir(), "data"), 1)
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "job.yaml"), []byte("name: via\ntasks:\n  - name: t\n    command: [\"true\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func(what string) {
		t.Helper()
		out, errOut, code := runIn(t, work, sched, env, "--addr", addr, "job", "submit", "job.yaml")
		if code != 0 || !submittedLine.MatchString(out) || errOut != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", what, code, out, errOut)
		}
	}
	dir := socketDir(env)
	// starts counts the helpers that failed: each writes its error, naming
	// the variable, to the log beside the socket.
	starts := func() int {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		n := 0
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			n += strings.Count(string(b), `SCHED_HELPER_IDLE="soon"`)
		}
		return n
	}
	waitStarts := func(want int) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			marks, _ := filepath.Glob(filepath.Join(dir, "*.failed"))
			if n := starts(); n == want && len(marks) == 1 {
				return marks[0]
			} else if n > want {
				t.Fatalf("%d helpers started, want %d\n%s", n, want, helperDir(env))
			}
			if time.Now().After(deadline) {
				t.Fatalf("no failed helper's mark within 15 s (%d started, want %d)\n%s", starts(), want, helperDir(env))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	submit("the first submit")
	mark := waitStarts(1)
	for i := range 3 {
		submit(fmt.Sprintf("submit %d after the helper failed", i+1))
	}
	out, errOut, code := runBin(t, sched, env, "helper", "status")
	if code != 0 || !strings.HasPrefix(out, "no helper is running; the last could not start") ||
		!strings.Contains(out, "SCHED_HELPER_IDLE") || !strings.Contains(out, "submits start none until") {
		t.Errorf("sched helper status: exit %d, %q %q; want the failure and its reason", code, out, errOut)
	}
	// A start would show within a moment; none may.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := starts(); n != 1 {
			t.Fatalf("%d helpers started while the last failure was recent, want 1\n%s", n, helperDir(env))
		}
	}

	// A minute on, the next submit starts one again.
	past := time.Now().Add(-helperwire.RetryAfter - time.Second)
	if err := os.Chtimes(mark, past, past); err != nil {
		t.Fatal(err)
	}
	submit("the submit a minute after the failure")
	waitStarts(2)
}

// A front with no sched-client beside it or on PATH says what is missing.
func TestFrontWithoutTheClient(t *testing.T) {
	front := frontBuild.build(t, "front", "../schedfront")
	dir := t.TempDir()
	install(t, front, filepath.Join(dir, "sched"))
	out, errOut, code := runBin(t, filepath.Join(dir, "sched"), []string{"PATH=" + t.TempDir()}, "job", "list")
	if code != 2 || out != "" || !strings.Contains(errOut, "sched-client") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 naming sched-client", code, out, errOut)
	}
}

// A server killed and restarted while the helper keeps a connection to it:
// the call while it is down fails as sched-client's would (exit 3), and
// the next call after the restart goes through the helper's connection,
// dialled anew.
func TestHelperAfterServerRestart(t *testing.T) {
	bin := frontInstall(t)
	sched := filepath.Join(bin, "sched")
	env := helperEnv(t, sched)
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	file := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(file, []byte("name: via\ntasks:\n  - name: t\n    command: [\"true\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func(what string) (string, int) {
		t.Helper()
		out, errOut, code := runBin(t, sched, env, "--addr", addr, "job", "submit", file)
		return out + errOut, code
	}
	d := startDev(t, addr, data, 1)
	submit("the first submit")
	waitHelper(t, sched, env, 0)
	if out, code := submit("a submit through the helper"); code != 0 {
		t.Fatalf("a submit through the helper: exit %d: %s", code, out)
	}
	d.kill()
	if out, code := submit("a submit with the server down"); code != 3 {
		t.Fatalf("a submit with the server down: exit %d, want 3: %s", code, out)
	}
	time.Sleep(2 * time.Second)
	startDev(t, addr, data, 1)
	began := time.Now()
	out, code := submit("the submit after the restart")
	if code != 0 || !submittedLine.MatchString(out) {
		t.Fatalf("the submit after the restart: exit %d after %v: %s", code, time.Since(began), out)
	}
	if _, ran, _ := helperCounts(t, sched, env); ran != 3 {
		t.Errorf("the helper ran %d calls, want 3", ran)
	}
}

// What a call's process holds: a descriptor the caller left open is not
// kept by the helper the call starts; a job file named by a descriptor
// (/dev/stdin) is read in the front's own process; the caller's own seed
// stands; output that cannot be written fails the call as in sched-client.
func TestFrontKeepsTheCallersProcess(t *testing.T) {
	bin := frontInstall(t)
	sched := filepath.Join(bin, "sched")
	env := helperEnv(t, sched)
	addr := freeAddr(t)
	startDev(t, addr, filepath.Join(t.TempDir(), "data"), 1)
	job := "name: via\ntasks:\n  - name: t\n    command: [\"true\"]\n"
	file := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(file, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, stdin io.Reader, stdout io.Writer, extra []*os.File, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(sched, append([]string{"--addr", addr, "job", "submit"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var errOut strings.Builder
		cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = stdin, stdout, &errOut, extra
		_ = cmd.Run()
		return errOut.String(), cmd.ProcessState.ExitCode()
	}

	// The first call starts the helper while it holds a pipe's write end
	// (as a caller's lock or a parent's pipe): once the call has ended
	// and the helper runs, nothing may hold it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if errOut, code := run(env, nil, &out, []*os.File{w}, file); code != 0 || !submittedLine.MatchString(out.String()) {
		t.Fatalf("the first submit: exit %d, %q, %q", code, out.String(), errOut)
	}
	w.Close()
	waitHelper(t, sched, env, 0)
	eof := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 1))
		eof <- err
	}()
	select {
	case err := <-eof:
		if err != io.EOF {
			t.Errorf("the pipe: %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the helper keeps a descriptor its first caller left open")
	}
	r.Close()

	// /dev/stdin names the front's standard input: declined, read there.
	out.Reset()
	if errOut, code := run(env, strings.NewReader(job), &out, nil, "/dev/stdin"); code != 0 || !submittedLine.MatchString(out.String()) {
		t.Errorf("submit /dev/stdin: exit %d, %q, %q", code, out.String(), errOut)
	}
	// The caller's seed: the same keys twice, through the helper.
	seed := append(env, "SCHED_SUBMIT_SEED=00112233445566778899aabbccddeeff")
	var first, again strings.Builder
	run(seed, nil, &first, nil, file)
	run(seed, nil, &again, nil, file)
	if !submittedLine.MatchString(first.String()) || again.String() != strings.Replace(first.String(), "tasks\n", "tasks (existing job with the same idempotency key)\n", 1) {
		t.Errorf("the caller's seed twice: %q then %q", first.String(), again.String())
	}
	// Output to a full device: the call fails, in the same words as sched-client's.
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open /dev/full: %v", err)
	}
	defer full.Close()
	hErr, hCode := run(env, nil, full, nil, file)
	dErr, dCode := run(append(env, "SCHED_HELPER=off"), nil, full, nil, file)
	if hCode != 1 || hErr != dErr || hCode != dCode || !strings.Contains(hErr, "no space left on device") {
		t.Errorf("stdout on a full device: through the helper exit %d %q, in sched-client exit %d %q", hCode, hErr, dCode, dErr)
	}
	if _, ran, declined := helperCounts(t, sched, env); ran != 3 || declined != 1 {
		t.Errorf("the helper ran %d calls and declined %d, want 3 and 1", ran, declined)
	}
}
