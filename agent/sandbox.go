package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/banyan-sched/banyan/agent/cgroup"
	"github.com/banyan-sched/banyan/agent/process"
	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// Task isolation. Every task gets a private directory below the agent's
// task directory:
//
//	TASKDIR/           0711, the agent's: others may pass, not list
//	  <32 hex>/        0700, the task user's; a random, unguessable name
//	    tmp/           0700, $TMPDIR
//	    result         0600, $BANYAN_RESULT
//
// and, where the agent has cgroups, its own cgroup with limits from its
// ask. Both are removed when the task ends.

// sandbox is one task's private directory and cgroup.
type sandbox struct {
	dir, tmp, result string
	group            *cgroup.Group // nil without cgroups
}

// prepareTaskDir makes dir (or a new temp dir when empty) the parent of
// task directories: owned by the agent, mode 0711. created reports whether
// the agent made a temp dir it must remove.
func prepareTaskDir(dir string) (path string, created bool, err error) {
	if dir == "" {
		if dir, err = os.MkdirTemp("", "banyan-tasks-"); err != nil {
			return "", false, fmt.Errorf("task directory: %w", err)
		}
		created = true
	} else if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", false, fmt.Errorf("task directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", false, fmt.Errorf("task directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return "", false, fmt.Errorf("task directory %s: must be a directory owned by the agent's user (uid %d)", dir, os.Geteuid())
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", false, fmt.Errorf("task directory: %w", err)
	}
	return dir, created, nil
}

// checkReachable fails unless u can pass through every directory from "/"
// down to dir: otherwise each task would fail to start with a bare
// "permission denied".
func checkReachable(dir string, u *process.User) error {
	if u == nil || u.UID == 0 {
		return nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("task directory: %w", err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !searchable(uint32(fi.Mode().Perm()), st.Uid, st.Gid, u) {
			return fmt.Errorf("task directory %s: %s (mode %04o) is not searchable by the task user %s; use --task-dir elsewhere",
				dir, p, fi.Mode().Perm(), u.Name)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// searchable reports whether u may pass through a directory with mode perm
// owned by uid:gid.
func searchable(perm, uid, gid uint32, u *process.User) bool {
	switch {
	case uid == u.UID:
		return perm&0o100 != 0
	case gid == u.GID || slices.Contains(u.Groups, gid):
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

// taskLimits is a task's cgroup limits: its ask, and the agent's pids cap.
func taskLimits(r *pb.Resources, pids int64) cgroup.Limits {
	return cgroup.Limits{MemoryBytes: r.GetMemoryBytes(), CPUMillis: r.GetCpuMillis(), Pids: pids}
}

// newSandbox creates a task's private directory, its temp dir and cgroup.
func (a *Agent) newSandbox(t *pb.TaskAssignment) (_ *sandbox, err error) {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("task directory name: %w", err)
	}
	sb := &sandbox{dir: filepath.Join(a.taskDir, hex.EncodeToString(rnd[:]))}
	sb.tmp, sb.result = filepath.Join(sb.dir, "tmp"), filepath.Join(sb.dir, "result")
	defer func() {
		if err != nil {
			sb.cleanup()
		}
	}()
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create task directory: %w", err)
	}
	if err := os.Mkdir(sb.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("create task temp dir: %w", err)
	}
	// The result file is the task's to create ($BANYAN_RESULT): none
	// means no result, and readResult takes only a plain file.
	if u := a.cfg.RunAs; u != nil && (int(u.UID) != os.Geteuid() || int(u.GID) != os.Getegid()) {
		for _, p := range []string{sb.tmp, sb.dir} {
			if err := os.Lchown(p, int(u.UID), int(u.GID)); err != nil {
				return nil, fmt.Errorf("hand task directory to %s: %w", u.Name, err)
			}
		}
	}
	if a.cfg.Cgroups != nil {
		if sb.group, err = a.cfg.Cgroups.New(t.TaskId, taskLimits(t.Spec.GetResources(), a.cfg.TaskPids)); err != nil {
			return nil, fmt.Errorf("task cgroup: %w", err)
		}
	}
	return sb, nil
}

// cleanup kills what is left of the task and removes its directory.
func (s *sandbox) cleanup() error {
	var errs []error
	if s.group != nil {
		errs = append(errs, s.group.Remove())
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove task directory: %w", err))
	}
	return errors.Join(errs...)
}

// readResult reads what a task wrote to its result file (nil if nothing).
// The file lives in the task's directory, so the task may have replaced
// it: links, FIFOs, devices and hard links to other files are refused.
func readResult(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // the task wrote no result
	}
	if err != nil {
		return nil, fmt.Errorf("read task result: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read task result: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || !ok || st.Nlink != 1 {
		return nil, fmt.Errorf("read task result: $BANYAN_RESULT is not a plain file of the task's own")
	}
	if fi.Size() > MaxResultBytes {
		return nil, resultTooLarge(fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxResultBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read task result: %w", err)
	}
	if len(data) > MaxResultBytes {
		return nil, resultTooLarge(int64(len(data)))
	}
	if len(data) == 0 {
		return nil, nil
	}
	return data, nil
}

// switchTo is the user to switch tasks to: nil when u is the agent's own
// user and group (a non-root process may not even set its own groups).
func switchTo(u *process.User, euid, egid int) *process.User {
	if u == nil || int(u.UID) == euid && int(u.GID) == egid {
		return nil
	}
	return u
}

// credential is the user tasks and function workers run as, for
// exec (nil: the agent's own).
func (a *Agent) credential() *syscall.Credential {
	u := a.cfg.RunAs
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// isolationSummary describes how tasks are isolated, for the start log.
func (a *Agent) isolationSummary() []any {
	runAs := "agent's user"
	if u := a.cfg.RunAs; u != nil {
		runAs = fmt.Sprintf("%s (uid %d)", u.Name, u.UID)
	}
	out := []any{"run_as", runAs, "task_dir", a.taskDir}
	if a.cfg.Cgroups != nil {
		out = append(out, "cgroup", a.cfg.Cgroups.Dir(), "limits", a.cfg.Cgroups.Enabled())
	}
	return out
}
