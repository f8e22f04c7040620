package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSnapshotSaveInspectRestore saves the state of one `sched dev`,
// inspects the file, restores it into a fresh one and finds the jobs
// there; damaged and foreign files are refused with a reason. It also
// covers `operator raft list-peers`, `server remove` of an unknown server
// and `version`.
func TestSnapshotSaveInspectRestore(t *testing.T) {
	dir := t.TempDir()
	a := startDev(t, freeAddr(t), filepath.Join(dir, "a"), 1)
	var ids []string
	for range 3 {
		ids = append(ids, submit(t, a, "../../examples/hello.yaml"))
	}
	file := filepath.Join(dir, "backup.snap")
	out, stderr, err := a.run("operator", "snapshot", "save", file)
	if err != nil || !strings.Contains(out, "Saved snapshot of index") {
		t.Fatalf("snapshot save: %v %s%s", err, out, stderr)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", err, fi.Mode())
	}
	if _, stderr, err := a.run("operator", "snapshot", "save", file); err == nil || !strings.Contains(stderr, "exists") {
		t.Fatalf("save over an existing file: %v %s", err, stderr)
	}
	out, stderr, err = a.run("-o", "json", "operator", "snapshot", "inspect", file)
	if err != nil {
		t.Fatalf("inspect: %v %s", err, stderr)
	}
	var sum struct {
		Index  uint64 `json:"index"`
		Jobs   int    `json:"jobs"`
		Tasks  int    `json:"tasks"`
		Agents int    `json:"agents"`
		SHA    string `json:"sha256"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Jobs != 3 || sum.Tasks < 3 || sum.Agents != 1 || sum.Index == 0 || len(sum.SHA) != 64 {
		t.Fatalf("inspect -o json: %v %s", err, out)
	}
	if out, _, err := a.run("operator", "snapshot", "inspect", file); err != nil || !strings.Contains(out, "Jobs") {
		t.Fatalf("inspect: %v %s", err, out)
	}

	// Damaged and foreign files.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.snap")
	damaged := append([]byte(nil), data...)
	damaged[len(damaged)-10] ^= 0xff
	if err := os.WriteFile(bad, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startDev(t, freeAddr(t), filepath.Join(dir, "b"), 1)
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{damaged, "damaged"},
		{data[:len(data)-100], "truncated"},
		{[]byte("hello\n"), "not a Banyan snapshot file"},
	} {
		if err := os.WriteFile(bad, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := b.run("operator", "snapshot", "restore", bad); err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("restore of a bad file: %v %q, want %q", err, stderr, tc.want)
		}
	}

	// Restore into the fresh server: the jobs are there.
	out, stderr, err = b.run("operator", "snapshot", "restore", file)
	if err != nil || !strings.Contains(out, "3 jobs") {
		t.Fatalf("restore: %v %s%s", err, out, stderr)
	}
	for _, id := range ids {
		if out, stderr, err := b.run("job", "show", id); err != nil || !strings.Contains(out, id) {
			t.Fatalf("job %s after restore: %v %s%s", id, err, out, stderr)
		}
	}

	out, _, err = b.run("operator", "raft", "list-peers")
	if err != nil || !strings.Contains(out, "leader") || !strings.Contains(out, "true") {
		t.Fatalf("list-peers: %v %s", err, out)
	}
	if _, stderr, err := b.run("server", "remove", "nope"); err == nil || !strings.Contains(stderr, `no server "nope"`) {
		t.Fatalf("remove of an unknown server: %v %s", err, stderr)
	}
	if out, _, err := b.run("version"); err != nil || !strings.HasPrefix(out, "sched ") || !strings.Contains(out, "go1") {
		t.Fatalf("version: %v %s", err, out)
	}
}

// TestJobGC: `sched job gc` removes finished jobs (with tighter settings,
// or all of them) and leaves running ones; bad values exit 2.
func TestJobGC(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)
	var done []string
	for range 3 {
		id := submit(t, d, "../../examples/hello.yaml")
		waitJobState(t, d, id, "succeeded", 20*time.Second)
		done = append(done, id)
	}
	slow := filepath.Join(t.TempDir(), "slow.yaml")
	if err := os.WriteFile(slow, []byte("name: slow\ntasks:\n  - name: t\n    command: [sleep, \"30\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	running := submit(t, d, slow)
	if out, stderr, err := d.run("job", "gc", "--max-jobs", "2"); err != nil || !strings.Contains(out, "Removed 1 ") {
		t.Fatalf("gc --max-jobs 2: %v %s%s", err, out, stderr)
	}
	if _, stderr, err := d.run("job", "show", done[0]); err == nil || !strings.Contains(stderr, "not found") {
		t.Fatalf("the oldest finished job after gc: %v %s", err, stderr)
	}
	if out, stderr, err := d.run("job", "gc", "--all"); err != nil || !strings.Contains(out, "Removed 2 ") {
		t.Fatalf("gc --all: %v %s%s", err, out, stderr)
	}
	if _, _, err := d.run("job", "show", running); err != nil {
		t.Fatalf("gc removed a running job: %v", err)
	}
	if _, stderr, err := d.run("job", "gc", "--max-age", "-1s"); err == nil || !strings.Contains(stderr, "negative") {
		t.Fatalf("gc --max-age -1s: %v %s", err, stderr)
	}
}
