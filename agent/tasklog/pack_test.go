package tasklog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBufferedAttemptsPackAndRead: small attempts are read from memory
// while they run, then from their job's pack (one 0600 file, no directory
// per attempt), also by a store opened again after a restart; an attempt
// that outgrows the buffer becomes an ordinary one with all its bytes; the
// pack goes with its job.
func TestBufferedAttemptsPackAndRead(t *testing.T) {
	s := open(t, 1<<20, nil)
	for i := range 3 {
		k := Key{Job: "job-1", Task: fmt.Sprintf("job-1.%d", i), Attempt: 1}
		b := s.CreateBuffered(k, 100)
		fmt.Fprintf(b.Stderr(), "log %d\n", i)
		if data, _, done := readAll(t, s, k, Stderr, 0); string(data) != fmt.Sprintf("log %d\n", i) || done {
			t.Fatalf("%s stderr while it runs: %q, done %v", k, data, done)
		}
		fmt.Fprintf(b.Stdout(), "out %d", i)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(s.Dir(Key{Job: "job-1", Task: "job-1.1", Attempt: 1})); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a small attempt has a directory: %v", err)
	}
	pack := filepath.Join(s.Root(), "job-1", PackName)
	if info, err := os.Stat(pack); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("pack: %v, %v", info, err)
	}
	again, err := Open(Config{Root: s.Root()})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, again} {
		for i := range 3 {
			k := Key{Job: "job-1", Task: fmt.Sprintf("job-1.%d", i), Attempt: 1}
			if out, _, done := readAll(t, st, k, Stdout, 0); string(out) != fmt.Sprintf("out %d", i) || !done {
				t.Fatalf("%s stdout: %q, done %v", k, out, done)
			}
			if errs, _, done := readAll(t, st, k, Stderr, 2); string(errs) != fmt.Sprintf("g %d\n", i) || !done {
				t.Fatalf("%s stderr from 2: %q, done %v", k, errs, done)
			}
			if st.Where(k) != pack {
				t.Fatalf("%s is kept at %s, want %s", k, st.Where(k), pack)
			}
		}
		if _, err := st.Read(Key{Job: "job-1", Task: "job-1.9", Attempt: 1}, Stdout, 0, 10); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an attempt never kept: %v", err)
		}
	}

	big := Key{Job: "job-1", Task: "job-1.big", Attempt: 1}
	b := s.CreateBuffered(big, 100)
	want := strings.Repeat("0123456789", 50)
	for i := 0; i < len(want); i += 30 {
		b.Stderr().Write([]byte(want[i:min(i+30, len(want))]))
	}
	if data, _, _ := readAll(t, s, big, Stderr, 0); string(data) != want {
		t.Fatalf("a big attempt while it runs: %d bytes, want %d", len(data), len(want))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _, done := readAll(t, s, big, Stderr, 0); string(data) != want || !done || s.Where(big) != s.Dir(big) {
		t.Fatalf("a big attempt: %d bytes, done %v, at %s", len(data), done, s.Where(big))
	}

	if err := s.RemoveJobs([]string{"job-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pack); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the pack outlived its job: %v", err)
	}
	if _, err := s.Read(Key{Job: "job-1", Task: "job-1.0", Attempt: 1}, Stdout, 0, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("output of a removed job: %v", err)
	}
}

// TestBufferedWithinCap: a buffered attempt keeps no more in memory than
// the store's cap; past it, it has files, capped and rotated like any.
func TestBufferedWithinCap(t *testing.T) {
	s := open(t, 50, nil)
	k := Key{Job: "job-1", Task: "job-1.0", Attempt: 1}
	b := s.CreateBuffered(k, 0)
	want := strings.Repeat("0123456789", 8)
	b.Stderr().Write([]byte(want))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, start, done := readAll(t, s, k, Stderr, 0)
	if !done || len(data) > 50 || start == 0 || !strings.HasSuffix(want, string(data)) || start+int64(len(data)) != int64(len(want)) {
		t.Fatalf("kept %q from %d (done %v): want the newest bytes, at most 50", data, start, done)
	}
	if s.Where(k) != s.Dir(k) {
		t.Fatalf("kept at %s, want its own files", s.Where(k))
	}
}
