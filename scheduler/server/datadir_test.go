package server

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
)

func quietTestLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startTestServer(t *testing.T, dir string, ln net.Listener, bootstrap bool) *Server {
	t.Helper()
	s, err := New(Config{NodeID: "s1", DataDir: dir, Listener: ln, Bootstrap: bootstrap, RaftLogLevel: "off",
		Logger: quietTestLogger()})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if l := s.currentLeader(); l != nil && l.isReady() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The data dir is 0700 and everything Banyan writes there 0600 (raft.db,
// the snapshots' state.bin and meta.json), even over a dir an earlier
// version left readable; and a task whose environment is just under the
// spec bound survives a restart from a snapshot.
func TestDataDirPrivateAndSnapshotAtBoundSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old", "state.bin"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := startTestServer(t, dir, ln, true)
	env := strings.Repeat("k", limits.TaskSpecBytes-64)
	// Two jobs of three tasks at the bound: 6 MiB in one submission, each
	// job within its own bound.
	var jobs []*pb.JobSpec
	for j := 0; j < 2; j++ {
		spec := &pb.JobSpec{Name: "big-env"}
		for i := 0; i < 3; i++ {
			spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Command: []string{"true"}, Env: map[string]string{"BIG": env}})
		}
		jobs = append(jobs, spec)
	}
	r, err := s.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: jobs}}})
	if err != nil || len(r.Jobs) != 2 {
		t.Fatalf("submit: %v", err)
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var files int
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := dataFileMode
		if d.IsDir() {
			want = dataDirMode
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil || files < 3 {
		t.Fatalf("walk data dir: %v (%d files)", err, files)
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startTestServer(t, dir, ln2, false)
	defer s2.Close()
	var got int
	s2.fsm.Read(func(st *state.State) {
		for _, jv := range r.Jobs {
			j, ok := st.Job(jv.Id)
			if !ok {
				continue
			}
			for _, id := range j.TaskIDs() {
				if tk, ok := st.Task(id); ok && tk.Spec().Env["BIG"] == env {
					got++
				}
			}
		}
	})
	if got != 6 {
		t.Fatalf("after restart %d of 6 tasks kept their environment", got)
	}
}

// Incident: an empty snapshot with a valid CRC started the server with no
// state at all. Now the server refuses to start and says why.
func TestEmptySnapshotStopsStart(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := startTestServer(t, dir, ln, true)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	metas, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
	if len(metas) == 0 {
		t.Fatal("no snapshot written")
	}
	for _, meta := range metas {
		data, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		m["Size"], m["CRC"] = 0, make([]byte, 8) // the CRC-64 of nothing
		if data, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(meta, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(meta), "state.bin"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(Config{NodeID: "s1", DataDir: dir, Listener: ln2, RaftLogLevel: "off", Logger: quietTestLogger()})
	if err == nil {
		s2.Close()
		t.Fatal("server started from an empty snapshot")
	}
	if !errors.Is(err, state.ErrBadSnapshot) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("start error %v, want one saying the snapshot is empty", err)
	}
}
