package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent/tasklog"
	"github.com/banyan-sched/banyan/agent/worker"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// workerEnv makes the test binary a line-protocol worker (TestMain): for
// each call it writes "ARGS on PID" on stderr (and bigLog after it when the
// first argument is "big") and answers with its pid and the call's
// traceparent. (What a worker writes outside calls is tested in
// agent/worker.)
const workerEnv = "BANYAN_AGENT_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		err := worker.ServeRequests(os.Stdin, os.Stdout, func(req worker.Request) (string, error) {
			fmt.Fprintf(os.Stderr, "%s on %d\n", strings.Join(req.Args, " "), os.Getpid())
			if req.Args[0] == "big" {
				os.Stderr.WriteString(bigLog)
			}
			return fmt.Sprintf("pid=%d traceparent=%s", os.Getpid(), req.Traceparent), nil
		})
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// bigLog is more than a call keeps in memory.
var bigLog = strings.Repeat(strings.Repeat("x", 99)+"\n", 1000)

// finished waits for the finished event of a task's attempt.
func (a *Agent) finishedForTest(t *testing.T, task string, attempt int32) *pb.TaskEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a.mu.Lock()
		ev := a.unacked[task+"/"+fmt.Sprint(attempt)]
		a.mu.Unlock()
		if ev != nil {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s#%d did not finish", task, attempt)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCallOnWarmWorkerKeepsOutputAndTrace: function calls served by one
// warm worker keep their output, read through the same reader as an
// ordinary attempt's (what `sched job logs` gets): the response's output
// as stdout, what the worker wrote on stderr while serving the call as
// stderr. Small calls are kept in their job's pack file, a call with more
// output in files of its own. Each call carries its attempt's traceparent
// to the worker, as an ordinary task gets TRACEPARENT. The output goes
// with its job.
func TestCallOnWarmWorkerKeepsOutputAndTrace(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, err := New(Config{ID: "a1", Servers: []string{"127.0.0.1:1"}, Fingerprint: &pb.Fingerprint{Hostname: "a1"},
		TaskDir: t.TempDir(), TaskLogDir: filepath.Join(t.TempDir(), "logs"), TaskLogMax: 1 << 20,
		Clock: func() time.Time { return now }, Env: map[string]string{workerEnv: "1"},
		Functions: map[string][]string{"probe": {exe}}, Warm: map[string]int{"probe": 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if w, _ := a.pools["probe"].Stats(); w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the warm worker did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tp := func(i int) string { return fmt.Sprintf("00-%032x-%016x-01", 0xab00+i, 0xcd00+i) }
	pid := ""
	for i := 1; i <= 3; i++ {
		task, args := fmt.Sprintf("job-1.%d", i), []string{"thumb", fmt.Sprint(i)}
		where := filepath.Join(a.logs.Root(), "job-1", tasklog.PackName)
		if i == 3 {
			args[0], where = "big", filepath.Join(a.logs.Root(), "job-1", task, "1")
		}
		a.start(context.Background(), &pb.TaskAssignment{JobId: "job-1", TaskId: task, Attempt: 1, Traceparent: tp(i),
			Spec: &pb.TaskSpec{Function: "probe", Args: args}})
		ev := a.finishedForTest(t, task, 1)
		if ev.Outcome != "succeeded" {
			t.Fatalf("%s: %+v", task, ev)
		}
		out := a.readLog(&pb.LogRead{JobId: "job-1", TaskId: task, Attempt: 1})
		callPid, trace, ok := strings.Cut(strings.TrimPrefix(string(out.Data), "pid="), " traceparent=")
		if !ok || !out.Done || string(out.Data) != ev.StdoutTail || out.Dir != where {
			t.Fatalf("%s stdout: %+v (event's tail %q)", task, out, ev.StdoutTail)
		}
		if trace != tp(i) {
			t.Fatalf("%s: the worker saw traceparent %q, want the attempt's %q", task, trace, tp(i))
		}
		if pid == "" {
			pid = callPid
		} else if callPid != pid {
			t.Fatalf("%s ran on worker %s, not on the warm worker %s", task, callPid, pid)
		}
		want := fmt.Sprintf("%s on %s\n", strings.Join(args, " "), pid)
		if i == 3 {
			want += bigLog
		}
		var errs []byte
		for {
			d := a.readLog(&pb.LogRead{JobId: "job-1", TaskId: task, Attempt: 1, Stderr: true, Offset: int64(len(errs))})
			errs = append(errs, d.Data...)
			if d.Done || len(d.Data) == 0 {
				break
			}
		}
		if string(errs) != want {
			t.Fatalf("%s stderr: %d bytes %.100q, want %d bytes %.100q", task, len(errs), errs, len(want), want)
		}
		info, err := os.Stat(where)
		if err != nil || info.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s kept at %s: %v, %v", task, where, info, err)
		}
	}
	a.onLogs(context.Background(), &pb.LogsDown{Msg: &pb.LogsDown_Gone{Gone: &pb.LogJobs{JobIds: []string{"job-1"}}}})
	if _, err := os.Stat(filepath.Join(a.logs.Root(), "job-1")); !os.IsNotExist(err) {
		t.Fatalf("the calls' output outlived their job: %v", err)
	}
}
