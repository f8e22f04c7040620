package cgroup

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// AgentLeaf is the cgroup an agent moves itself into when its own cgroup
// must hold no processes for controllers to be enabled below it (cgroup
// v2's "no internal processes" rule, e.g. in a systemd unit with
// Delegate=yes).
const AgentLeaf = "banyan-agent"

// removeWait bounds how long Remove waits for a killed group to empty.
const removeWait = 5 * time.Second

// Options says where a Manager keeps its task groups.
type Options struct {
	// Name is the directory of this agent's task groups, created below the
	// parent (sanitized with SanitizeName), e.g. "banyan-tasks-a1".
	Name string
	// Parent, when set, is the cgroup v2 directory to create Name in;
	// default: the agent's own cgroup (from /proc/self/cgroup).
	Parent string
}

// Manager creates one cgroup per task below its directory.
type Manager struct {
	dir     string
	enabled []string
}

// Setup prepares the directory of task groups and enables the controllers
// it can (Enabled lists them). It fails when cgroups cannot be used at all:
// no cgroup2 file system, no permission (not root and not delegated), a
// read-only mount, or a kernel without cgroup.kill (Linux < 5.14). A
// directory left by an earlier run of the same agent is emptied (its tasks
// are killed: the leader has requeued them) and reused.
func Setup(opt Options) (*Manager, error) {
	parent := opt.Parent
	if parent == "" {
		var err error
		if parent, err = ownCgroupDir(); err != nil {
			return nil, err
		}
	}
	avail, err := readControllers(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	enabled := enableControllers(parent, avail)
	dir := filepath.Join(parent, SanitizeName(opt.Name))
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		clearStale(dir)
	} else if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cgroup %s has no cgroup.kill (needs Linux 5.14 or later): %w", dir, err)
	}
	m := &Manager{dir: dir}
	for _, c := range enabled {
		if writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c) == nil {
			m.enabled = append(m.enabled, c)
		}
	}
	return m, nil
}

// Dir is the directory holding the task groups.
func (m *Manager) Dir() string { return m.dir }

// Enabled lists the controllers task groups get ("cpu", "memory", "pids");
// limits of the others are not enforced.
func (m *Manager) Enabled() []string { return append([]string(nil), m.enabled...) }

// Missing lists the controllers of Controllers that are not enabled.
func (m *Manager) Missing() []string {
	var out []string
	for _, c := range Controllers {
		if !slices.Contains(m.enabled, c) {
			out = append(out, c)
		}
	}
	return out
}

// New creates a task's cgroup (named after name plus a random suffix) and
// writes its limits.
func (m *Manager) New(name string, l Limits) (*Group, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("cgroup name: %w", err)
	}
	dir := filepath.Join(m.dir, SanitizeName(name)+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create task cgroup: %w", err)
	}
	g := &Group{dir: dir, limits: l}
	for file, v := range LimitFiles(l, m.enabled) {
		if err := writeFile(filepath.Join(dir, file), v); err != nil && !(file == "memory.swap.max" && errors.Is(err, os.ErrNotExist)) {
			_ = os.Remove(dir)
			return nil, fmt.Errorf("task cgroup %s: %w", file, err)
		}
	}
	return g, nil
}

// Close kills and removes any task groups left, then the manager's
// directory.
func (m *Manager) Close() error {
	clearStale(m.dir)
	if err := os.Remove(m.dir); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", m.dir, err)
	}
	return nil
}

// Group is one task's cgroup.
type Group struct {
	dir    string
	limits Limits
}

// Dir is the group's directory.
func (g *Group) Dir() string { return g.dir }

// Open opens the group's directory, for starting a process directly inside
// it (SysProcAttr.UseCgroupFD); the caller closes it.
func (g *Group) Open() (*os.File, error) {
	f, err := os.OpenFile(g.dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open task cgroup: %w", err)
	}
	return f, nil
}

// Kill sends SIGKILL to every process in the group, including those that
// left the task's process group or session.
func (g *Group) Kill() error {
	if err := writeFile(filepath.Join(g.dir, "cgroup.kill"), "1"); err != nil {
		return fmt.Errorf("kill task cgroup: %w", err)
	}
	return nil
}

// Populated reports whether any process is still in the group.
func (g *Group) Populated() (bool, error) {
	ev, err := readKeyed(filepath.Join(g.dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	return ev["populated"] != 0, nil
}

// OOMReason explains an OOM kill in the group ("" when there was none).
func (g *Group) OOMReason() string {
	ev, err := readKeyed(filepath.Join(g.dir, "memory.events"))
	if err != nil || ev["oom_kill"] == 0 {
		return ""
	}
	if g.limits.MemoryBytes == 0 {
		return "out of memory: killed by the kernel's OOM killer (the task asked for no memory, so had no limit)"
	}
	return fmt.Sprintf("out of memory: killed by the kernel for using more than its memory ask of %d bytes (%s)",
		g.limits.MemoryBytes, humanBytes(g.limits.MemoryBytes))
}

// PidsLimited reports whether a fork was refused at pids.max.
func (g *Group) PidsLimited() bool {
	ev, err := readKeyed(filepath.Join(g.dir, "pids.events"))
	return err == nil && ev["max"] > 0
}

// Remove kills what is left in the group, waits (briefly) for it to empty
// and removes it.
func (g *Group) Remove() error {
	_ = g.Kill()
	deadline := time.Now().Add(removeWait)
	for {
		err := os.Remove(g.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove task cgroup %s: %w", g.dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ownCgroupDir finds the agent's own cgroup v2 directory; an agent already
// moved into AgentLeaf uses the leaf's parent.
func ownCgroupDir() (string, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer mi.Close()
	mount, err := ParseMountInfo(mi)
	if err != nil {
		return "", err
	}
	pc, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	defer pc.Close()
	own, err := ParseOwnCgroup(pc)
	if err != nil {
		return "", err
	}
	if filepath.Base(own) == AgentLeaf {
		own = filepath.Dir(own)
	}
	return filepath.Join(mount, own), nil
}

// enableControllers enables the wanted controllers for parent's children.
// If the kernel refuses because parent holds processes (EBUSY), the agent
// moves itself into the AgentLeaf child and tries again. It returns what
// got enabled (possibly nothing: the groups still serve to kill).
func enableControllers(parent string, avail []string) []string {
	var enabled []string
	moved := false
	for _, c := range avail {
		err := writeFile(filepath.Join(parent, "cgroup.subtree_control"), "+"+c)
		if errors.Is(err, syscall.EBUSY) && !moved {
			moved = true
			if moveSelf(filepath.Join(parent, AgentLeaf)) == nil {
				err = writeFile(filepath.Join(parent, "cgroup.subtree_control"), "+"+c)
			}
		}
		if err == nil {
			enabled = append(enabled, c)
		}
	}
	return enabled
}

// moveSelf moves this process into the cgroup dir (created if needed).
func moveSelf(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create agent cgroup: %w", err)
	}
	return writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(os.Getpid()))
}

// clearStale kills and removes task groups left in dir by an earlier run.
func clearStale(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			_ = (&Group{dir: filepath.Join(dir, e.Name())}).Remove()
		}
	}
}

// readControllers reads a cgroup.controllers file and keeps the ones in
// Controllers.
func readControllers(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []string
	for _, c := range strings.Fields(string(data)) {
		if slices.Contains(Controllers, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func readKeyed(path string) (map[string]int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ParseKeyed(bytes.NewReader(data))
}

// writeFile writes one value to a cgroup interface file (no create, no
// truncate: the kernel takes each write as one command).
func writeFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(v)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", v, path, werr)
	}
	return cerr
}

// humanBytes renders a byte count in binary units (64Mi).
func humanBytes(n int64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti"}
	i := 0
	for n >= 1024 && n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strconv.FormatInt(n, 10) + units[i]
}
