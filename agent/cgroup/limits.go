// Package cgroup gives each task of an agent its own cgroup (cgroup v2 only;
// v1 hierarchies are not supported): resource limits from the task's ask
// (memory.max, cpu.max, pids.max), a whole-group kill (cgroup.kill) that
// reaches descendants which left the task's process group, and the count
// of OOM kills that explains a task's death.
//
// The pure part (this file) turns an ask into the files to write and reads
// the kernel's files; cgroup.go does the file-system work. A Manager owns
// one directory of task groups; a Group is one task's cgroup. Neither starts
// goroutines; Manager and Group methods are safe for concurrent use because
// each call is a self-contained sequence of file operations.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Controllers are the cgroup v2 controllers a Manager enables for tasks.
var Controllers = []string{"cpu", "memory", "pids"}

// CPUPeriod is the cpu.max period, in microseconds.
const CPUPeriod = 100000

// Limits is one task's resource limits; a zero field means no limit.
type Limits struct {
	// MemoryBytes becomes memory.max (and memory.swap.max 0, so a task
	// over its ask is OOM-killed rather than swapped out).
	MemoryBytes int64
	// CPUMillis becomes cpu.max: CPUMillis*100 µs of CPU per 100 ms.
	CPUMillis int64
	// Pids becomes pids.max.
	Pids int64
}

// Validate refuses negative limits.
func (l Limits) Validate() error {
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("cgroup limits: negative memory %d", l.MemoryBytes)
	case l.CPUMillis < 0:
		return fmt.Errorf("cgroup limits: negative cpu %dm", l.CPUMillis)
	case l.Pids < 0:
		return fmt.Errorf("cgroup limits: negative pids %d", l.Pids)
	}
	return nil
}

// LimitFiles returns the interface files to write (name -> content) for l,
// given the controllers enabled for the group. Limits whose controller is
// missing are left out; unset limits are written as "max" so a reused name
// never inherits an old value.
func LimitFiles(l Limits, enabled []string) map[string]string {
	files := map[string]string{}
	if slices.Contains(enabled, "memory") {
		files["memory.max"] = limitOrMax(l.MemoryBytes)
		if l.MemoryBytes > 0 {
			files["memory.swap.max"] = "0"
		}
		files["memory.oom.group"] = "1" // an OOM kill takes the whole task
	}
	if slices.Contains(enabled, "cpu") {
		if l.CPUMillis > 0 {
			files["cpu.max"] = fmt.Sprintf("%d %d", l.CPUMillis*CPUPeriod/1000, CPUPeriod)
		} else {
			files["cpu.max"] = fmt.Sprintf("max %d", CPUPeriod)
		}
	}
	if slices.Contains(enabled, "pids") {
		files["pids.max"] = limitOrMax(l.Pids)
	}
	return files
}

func limitOrMax(v int64) string {
	if v <= 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// ParseOwnCgroup returns the cgroup v2 path of a process from its
// /proc/PID/cgroup text (the "0::/path" line).
func ParseOwnCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			if !strings.HasPrefix(p, "/") {
				return "", fmt.Errorf("cgroup v2 path %q is not absolute", p)
			}
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	return "", errors.New("no cgroup v2 entry (0::) for this process: cgroup v1 only, which is not supported")
}

// ParseMountInfo returns the mount point of the cgroup2 file system from
// /proc/self/mountinfo text ("/sys/fs/cgroup" on a unified host,
// "/sys/fs/cgroup/unified" on a hybrid one).
func ParseMountInfo(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && qf[0] == "cgroup2" {
			return unescapeMount(pf[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", errors.New("no cgroup2 file system mounted (cgroup v1 is not supported)")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ParseKeyed reads a flat keyed file such as memory.events or
// cgroup.events ("key value" lines) into a map.
func ParseKeyed(r io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", sc.Text(), err)
		}
		out[k] = n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read keyed file: %w", err)
	}
	return out, nil
}

// SanitizeName turns an agent or task id into a cgroup directory name:
// letters, digits, '-', '_' and '.' are kept, anything else becomes '_'.
func SanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	out := string(b)
	if out == "" || out == "." || out == ".." {
		out = "_" + out
	}
	return out
}
