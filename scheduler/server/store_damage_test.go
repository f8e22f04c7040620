package server

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDamagedStoreStopsWithItsName truncates raft.db in two ways (not a
// whole page; whole pages cut before the freelist, where bbolt panics) and
// checks that the server refuses to start with an error naming the file
// and the way out, not a crash.
func TestDamagedStoreStopsWithItsName(t *testing.T) {
	dir := t.TempDir()
	start := func() (*Server, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return New(Config{NodeID: "n1", DataDir: dir, Listener: ln, Bootstrap: true, RaftLogLevel: "off",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	s, err := start()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "raft.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	for _, size := range []int64{fi.Size() - 100, 2 * page} {
		if err := os.Truncate(db, size); err != nil {
			t.Fatal(err)
		}
		s, err := start()
		if err == nil {
			s.Close()
			t.Fatalf("raft.db cut to %d bytes: server started", size)
		}
		if !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "rejoin") {
			t.Fatalf("raft.db cut to %d bytes: %v; want the file and the way out named", size, err)
		}
		t.Logf("cut to %d bytes: %v", size, err)
	}
}

// TestFailedBootstrapLeavesNothingOpen: a bootstrap that fails (two peers
// with one id) closes raft and its store, so the same data dir opens again
// at once (bbolt's file lock would otherwise hold the next start forever).
func TestFailedBootstrapLeavesNothingOpen(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ln := listen()
	_, err := New(Config{NodeID: "n1", DataDir: dir, Listener: ln, RaftLogLevel: "off", Logger: quiet,
		Peers: []Peer{{ID: "n1", Addr: ln.Addr().String()}, {ID: "n1", Addr: "127.0.0.1:1"}}})
	if err == nil || !strings.Contains(err.Error(), "bootstrap") {
		t.Fatalf("duplicate peer ids: %v, want a bootstrap error", err)
	}
	done := make(chan error, 1)
	go func() {
		s, err := New(Config{NodeID: "n1", DataDir: dir, Listener: listen(), Bootstrap: true, RaftLogLevel: "off", Logger: quiet})
		if err == nil {
			err = s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the data dir is still held by the failed start")
	}
}

// TestDamagedFreelistRefused garbles the freelist page a store's meta
// names (what 16 KiB of garbage in the middle of raft.db did: bbolt looped
// on it when the store opened) and checks the start is refused at once,
// naming the page.
func TestDamagedFreelistRefused(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(Config{NodeID: "n1", DataDir: dir, Listener: ln, Bootstrap: true, RaftLogLevel: "off", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "raft.db")
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	meta := make([]byte, 80)
	if _, err := f.ReadAt(meta, 0); err != nil {
		t.Fatal(err)
	}
	pageSize, freelist := int64(binary.LittleEndian.Uint32(meta[24:])), int64(binary.LittleEndian.Uint64(meta[48:]))
	garbage := make([]byte, pageSize)
	for i := range garbage {
		garbage[i] = byte(i*7 + 13)
	}
	if _, err := f.WriteAt(garbage, freelist*pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err = New(Config{NodeID: "n1", DataDir: dir, Listener: ln2, Bootstrap: true, RaftLogLevel: "off", Logger: quiet})
	if err == nil {
		s.Close()
		t.Fatal("a store with a garbled freelist started")
	}
	if !strings.Contains(err.Error(), "freelist page") || !strings.Contains(err.Error(), db) {
		t.Fatalf("%v; want the freelist page and the file named", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refused after %v", d)
	}
}
