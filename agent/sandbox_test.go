package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/agent/cgroup/cgrouptest"
	"github.com/banyan-sched/banyan/agent/process"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// nobody is the task user of these tests when they run as root.
var nobody = &process.User{Name: "nobody", UID: 65534, GID: 65534, Groups: []uint32{65534}}

// testAgent is an agent that is never connected: tasks started with
// a.start finish into a.unacked.
func testAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	// TaskDir stays empty: a temp dir under the system's, whose parents the
	// task user can pass through (t.TempDir's are 0700).
	cfg.ID, cfg.Servers, cfg.Fingerprint = "t", []string{"127.0.0.1:1"}, &pb.Fingerprint{}
	if os.Geteuid() == 0 && cfg.RunAs == nil {
		cfg.RunAs = nobody
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Shutdown)
	return a
}

// runTask starts one command task and waits for its finished event.
func runTask(t *testing.T, a *Agent, id string, cmd ...string) *pb.TaskEvent {
	t.Helper()
	a.start(context.Background(), &pb.TaskAssignment{TaskId: id, Attempt: 1, JobId: "j",
		Spec: &pb.TaskSpec{Command: cmd, Resources: &pb.Resources{CpuMillis: 500, MemoryBytes: 64 << 20}}})
	a.tasksWG.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	ev := a.unacked[id+"/1"]
	if ev == nil {
		t.Fatalf("task %s did not finish", id)
	}
	return ev
}

func TestTaskPrivateDirs(t *testing.T) {
	a := testAgent(t, Config{})
	uid := os.Geteuid()
	if a.cfg.RunAs != nil {
		uid = int(a.cfg.RunAs.UID)
	}
	ev := runTask(t, a, "t1", "sh", "-c", `test ! -e "$BANYAN_RESULT" || echo the result file is there already
		echo hi > "$TMPDIR/f"; printf %s "$TMPDIR" > "$BANYAN_RESULT"
		stat -c '%a %u' "$TMPDIR" "${TMPDIR%/tmp}"; stat -c %u "$BANYAN_RESULT"; stat -c %a "${TMPDIR%/*/tmp}"; pwd`)
	if ev.Outcome != process.OutcomeSucceeded {
		t.Fatalf("task: %+v", ev)
	}
	tmp := string(ev.Result)
	dir := filepath.Dir(tmp)
	if filepath.Dir(dir) != a.taskDir || len(filepath.Base(dir)) != 32 {
		t.Errorf("TMPDIR %s: want TASKDIR/<32 hex>/tmp", tmp)
	}
	want := fmt.Sprintf("700 %d\n700 %d\n%d\n711\n%s\n", uid, uid, uid, dir)
	if ev.StdoutTail != want {
		t.Errorf("modes, owners and cwd:\n%s\nwant:\n%s", ev.StdoutTail, want)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("task directory %s left behind: %v", dir, err)
	}
	a.Shutdown()
	if _, err := os.Stat(a.taskDir); !os.IsNotExist(err) {
		t.Errorf("agent's temp task directory %s left behind: %v", a.taskDir, err)
	}
}

// TestTaskDirsClosedToOtherUsers: one task's files are out of reach of a
// task running as another user, and no task can list the task directory.
func TestTaskDirsClosedToOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run tasks as two different users")
	}
	a := testAgent(t, Config{})
	sb, err := a.newSandbox(&pb.TaskAssignment{TaskId: "victim", Spec: &pb.TaskSpec{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.cleanup()
	if err := os.WriteFile(filepath.Join(sb.tmp, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	daemon := &process.User{Name: "daemon", UID: 1, GID: 1}
	for _, c := range []struct {
		user *process.User
		cmd  string
	}{
		{daemon, "cat " + sb.tmp + "/secret"},
		{daemon, "ls " + sb.dir},
		{daemon, "touch " + sb.tmp + "/x"},
		{daemon, "echo evil > " + sb.result},
		{daemon, "cat " + sb.result},
		{nobody, "ls " + a.taskDir}, // even the same user cannot list the others
		{daemon, "ls " + a.taskDir},
	} {
		r := process.Run(context.Background(), process.Spec{User: c.user, Command: []string{"sh", "-c", c.cmd}})
		if r.Outcome == process.OutcomeSucceeded || !strings.Contains(r.Stderr, "ermission denied") {
			t.Errorf("%s as %s: %s %q, want permission denied", c.cmd, c.user.Name, r.Outcome, r.Stderr)
		}
	}
}

func TestReadResultRefusesSwappedFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	if err := os.WriteFile(outside, []byte("not the task's"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok")
	if err := os.WriteFile(ok, []byte("r"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readResult(ok); err != nil || string(got) != "r" {
		t.Fatalf("readResult(plain) = %q, %v", got, err)
	}
	link, hard, fifo := filepath.Join(dir, "link"), filepath.Join(dir, "hard"), filepath.Join(dir, "fifo")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, hard); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, hard, fifo} {
		done := make(chan error, 1)
		go func() { _, err := readResult(p); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("readResult(%s) accepted a swapped result file", filepath.Base(p))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("readResult(%s) blocked", filepath.Base(p))
		}
	}
}

// TestCancelKillsTaskCgroup: a cancel from the leader (also how preemption
// arrives) kills a descendant that escaped the task's process group.
func TestCancelKillsTaskCgroup(t *testing.T) {
	m := cgrouptest.Manager(t)
	a := testAgent(t, Config{Cgroups: m, TaskPids: 64, KillGrace: 100 * time.Millisecond})
	pidDir, err := os.MkdirTemp("", "banyan-pid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pidDir) })
	if err := os.Chmod(pidDir, 0o777); err != nil { // the task user writes here
		t.Fatal(err)
	}
	pidFile := filepath.Join(pidDir, "pid")
	a.start(context.Background(), &pb.TaskAssignment{TaskId: "esc", Attempt: 1, Spec: &pb.TaskSpec{Command: []string{
		"sh", "-c", "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! > " + pidFile + ".tmp; mv " + pidFile + ".tmp " + pidFile + "; sleep 30"}}})
	var pid int
	for deadline := time.Now().Add(5 * time.Second); ; {
		if data, err := os.ReadFile(pidFile); err == nil {
			fmt.Sscan(string(data), &pid)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("task never wrote its child's pid")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	a.cancelTasks(&pb.CancelTasks{Tasks: []*pb.TaskAssignment{{TaskId: "esc", Attempt: 1}}, Reason: "preempted"})
	a.tasksWG.Wait()
	for deadline := time.Now().Add(2 * time.Second); syscall.Kill(pid, 0) == nil && !zombie(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("escaped child %d survived the cancel", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if entries, _ := os.ReadDir(m.Dir()); len(dirs(entries)) != 0 {
		t.Errorf("task cgroups left: %v", entries)
	}
}

func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func dirs(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestTaskLimitsFromAsk(t *testing.T) {
	l := taskLimits(&pb.Resources{CpuMillis: 1500, MemoryBytes: 64 << 20, Gpus: 1}, 512)
	if l.CPUMillis != 1500 || l.MemoryBytes != 64<<20 || l.Pids != 512 {
		t.Errorf("taskLimits = %+v", l)
	}
	if l := taskLimits(nil, 0); l.CPUMillis != 0 || l.MemoryBytes != 0 || l.Pids != 0 {
		t.Errorf("taskLimits(nil) = %+v", l)
	}
}

func TestSwitchTo(t *testing.T) {
	u := &process.User{Name: "banyan", UID: 990, GID: 990}
	if got := switchTo(u, 990, 990); got != nil {
		t.Errorf("own user: %+v, want no switch", got)
	}
	if got := switchTo(u, 0, 0); got != u {
		t.Errorf("root agent: %+v, want %+v", got, u)
	}
	if got := switchTo(nil, 0, 0); got != nil {
		t.Errorf("no --run-as: %+v", got)
	}
}

func TestTaskDirMustBeReachable(t *testing.T) {
	u := &process.User{Name: "task", UID: 990, GID: 990, Groups: []uint32{44}}
	for _, c := range []struct {
		perm, uid, gid uint32
		want           bool
	}{
		{0o711, 0, 0, true}, {0o750, 0, 0, false}, {0o750, 0, 44, true}, {0o700, 990, 0, true},
		{0o070, 990, 990, false}, {0o701, 0, 990, false}, {0o755, 0, 990, true},
	} {
		if got := searchable(c.perm, c.uid, c.gid, u); got != c.want {
			t.Errorf("searchable(%04o, %d:%d) = %v, want %v", c.perm, c.uid, c.gid, got, c.want)
		}
	}
	if os.Geteuid() != 0 {
		return
	}
	closed := filepath.Join(t.TempDir(), "tasks") // t.TempDir is 0700
	_, err := New(Config{ID: "t", Servers: []string{"127.0.0.1:1"}, Fingerprint: &pb.Fingerprint{}, RunAs: nobody,
		TaskDir: closed, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "not searchable by the task user nobody") {
		t.Fatalf("New with an unreachable task dir = %v", err)
	}
}

// TestNoResultFileIsNoResult: the result file is the task's to create; a
// task that writes none succeeds with no result.
func TestNoResultFileIsNoResult(t *testing.T) {
	if got, err := readResult(filepath.Join(t.TempDir(), "result")); got != nil || err != nil {
		t.Fatalf("readResult(missing) = %q, %v; want nothing and no error", got, err)
	}
	a := testAgent(t, Config{})
	ev := runTask(t, a, "t1", "true")
	if ev.Outcome != process.OutcomeSucceeded || ev.Result != nil {
		t.Fatalf("a task writing no result: %s, result %q", ev.Outcome, ev.Result)
	}
}
