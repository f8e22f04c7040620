package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent/process"
	"github.com/banyan-sched/banyan/agent/tasklog"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

func logsAgent(t *testing.T, now *time.Time) *Agent {
	t.Helper()
	a, err := New(Config{ID: "a1", Servers: []string{"127.0.0.1:1"}, Fingerprint: &pb.Fingerprint{Hostname: "a1"},
		TaskDir: t.TempDir(), TaskLogDir: filepath.Join(t.TempDir(), "logs"), TaskLogMax: 1 << 20,
		Clock: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestTaskOutputKeptReadAndRemoved: a task's full output is kept (small
// output in its job's pack, with no directory of the attempt's own; past
// the buffer's limit, in files of its own), read in chunks the size the
// leader asks, and removed when its job is gone or, as a backstop, when it
// is older than TaskLogAge.
func TestTaskOutputKeptReadAndRemoved(t *testing.T) {
	now := time.Now()
	a := logsAgent(t, &now)
	if got := a.cfg.Fingerprint.Labels[TaskLogDirLabel]; got != a.logs.Root() {
		t.Fatalf("label %s = %q, want %q", TaskLogDirLabel, got, a.logs.Root())
	}
	asg := &pb.TaskAssignment{JobId: "job-1", TaskId: "job-1.0", Attempt: 1,
		Spec: &pb.TaskSpec{Command: []string{"sh", "-c", "seq 1 1000; echo oops >&2"}}}
	sb, err := a.newSandbox(asg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.cleanup()
	a.runTaskForTest(t, asg, sb)

	d := a.readLog(&pb.LogRead{RequestId: 7, JobId: "job-1", TaskId: "job-1.0", Attempt: 1, MaxBytes: 10})
	if d.RequestId != 7 || string(d.Data) != "1\n2\n3\n4\n5\n" || d.Done || d.Dir != filepath.Join(a.logs.Root(), "job-1", tasklog.PackName) {
		t.Fatalf("first chunk = %+v", d)
	}
	if _, err := os.Stat(filepath.Join(a.logs.Root(), "job-1", "job-1.0")); !os.IsNotExist(err) {
		t.Fatalf("a small attempt's output made a directory of its own: %v", err)
	}
	// Past the buffer's limit the output moves to files of its own, whole.
	big := &pb.TaskAssignment{JobId: "job-1", TaskId: "job-1.1", Attempt: 1,
		Spec: &pb.TaskSpec{Command: []string{"sh", "-c", "seq 1 20000"}}}
	a.runTaskForTest(t, big, sb)
	var all []byte
	for off := int64(0); ; {
		d := a.readLog(&pb.LogRead{JobId: "job-1", TaskId: "job-1.1", Attempt: 1, Offset: off})
		if d.Error != "" || d.Missing {
			t.Fatalf("big output at %d: %+v", off, d)
		}
		if d.Dir != filepath.Join(a.logs.Root(), "job-1", "job-1.1", "1") {
			t.Fatalf("big output read from %s, want the attempt's own files", d.Dir)
		}
		all = append(all, d.Data...)
		off += int64(len(d.Data))
		if d.Done {
			break
		}
	}
	if n := len(all); n != 108894 || !bytes.HasSuffix(all, []byte("\n19999\n20000\n")) {
		t.Fatalf("big output: %d bytes ending %q; want seq 1 20000's 108894", n, all[max(0, n-20):])
	}
	d = a.readLog(&pb.LogRead{JobId: "job-1", TaskId: "job-1.0", Attempt: 1, Stderr: true})
	if string(d.Data) != "oops\n" || !d.Done {
		t.Fatalf("stderr = %+v", d)
	}
	if d := a.readLog(&pb.LogRead{JobId: "job-1", TaskId: "job-1.0", Attempt: 2}); !d.Missing {
		t.Fatalf("an attempt never run: %+v", d)
	}

	other, err := a.logs.Create(tasklog.Key{Job: "job-2", Task: "job-2.0", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	held := a.sweepLogs().GetLogs().GetHeld().GetJobIds()
	if len(held) != 2 {
		t.Fatalf("held = %q", held)
	}
	a.onLogs(context.Background(), &pb.LogsDown{Msg: &pb.LogsDown_Gone{Gone: &pb.LogJobs{JobIds: []string{"job-1", "job-9"}}}})
	if _, err := os.Stat(filepath.Join(a.logs.Root(), "job-1")); !os.IsNotExist(err) {
		t.Fatalf("output of a gone job: %v", err)
	}
	now = now.Add(tasklog.DefaultMaxAge + time.Hour)
	if held := a.sweepLogs().GetLogs().GetHeld().GetJobIds(); len(held) != 0 {
		t.Fatalf("after a week: held %q", held)
	}
}

// runTaskForTest runs an assignment's process the way execute does.
func (a *Agent) runTaskForTest(t *testing.T, asg *pb.TaskAssignment, sb *sandbox) {
	t.Helper()
	spec, err := a.processSpec(asg, sb)
	if err != nil {
		t.Fatal(err)
	}
	end := a.keepOutput(asg, &spec)
	_ = process.Run(context.Background(), spec)
	end()
}
