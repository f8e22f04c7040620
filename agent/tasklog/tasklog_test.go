package tasklog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T, max int64, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(Config{Root: filepath.Join(t.TempDir(), "logs"), MaxBytes: max, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readAll reads a stream from offset on in small chunks.
func readAll(t *testing.T, s *Store, k Key, stream string, offset int64) (data []byte, start int64, done bool) {
	t.Helper()
	start = -1
	for {
		c, err := s.Read(k, stream, offset, 7)
		if err != nil {
			t.Fatal(err)
		}
		if start < 0 {
			start = c.Offset
		}
		data = append(data, c.Data...)
		offset = c.Offset + int64(len(c.Data))
		if len(c.Data) == 0 || c.Done {
			return data, start, c.Done
		}
	}
}

func TestWithinCapKeepsEverything(t *testing.T) {
	s := open(t, 1<<20, nil)
	k := Key{Job: "job-1", Task: "job-1.0", Attempt: 1}
	a, err := s.Create(k)
	if err != nil {
		t.Fatal(err)
	}
	a.Stderr.Write([]byte("hello "))
	a.Stderr.Write([]byte("world\n"))
	a.Stdout.Write([]byte("out"))
	got, start, done := readAll(t, s, k, Stderr, 0)
	if string(got) != "hello world\n" || start != 0 || done {
		t.Fatalf("live read = %q from %d done=%v", got, start, done)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, done = readAll(t, s, k, Stderr, 0)
	if string(got) != "hello world\n" || !done {
		t.Fatalf("after close = %q done=%v", got, done)
	}
	got, _, _ = readAll(t, s, k, Stdout, 0)
	if string(got) != "out" {
		t.Fatalf("stdout = %q", got)
	}
	for _, p := range []string{s.Root(), s.Dir(k), filepath.Dir(s.Dir(k)), filepath.Join(s.Dir(k), Stderr)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

func TestRotationKeepsNewestBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write int // bytes per write
	}{{"small writes", 3}, {"one byte", 1}, {"exact half", 50}, {"larger than cap", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, 100, nil)
			k := Key{Job: "j", Task: "j.0", Attempt: 2}
			a, err := s.Create(k)
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			for i := 0; len(all) < 1234; i++ {
				p := bytes.Repeat([]byte{byte('a' + i%26)}, tc.write)
				all = append(all, p...)
				a.Stdout.Write(p)
				if a.Stdout.size > 50 {
					t.Fatalf("live file holds %d bytes, more than half the cap", a.Stdout.size)
				}
			}
			a.Close()
			got, start, done := readAll(t, s, k, Stdout, 0)
			if !done || start+int64(len(got)) != int64(len(all)) {
				t.Fatalf("read %d bytes from %d (done %v), want up to %d", len(got), start, done, len(all))
			}
			if len(got) > 100 || len(got) < 50 {
				t.Fatalf("kept %d bytes, want between half the cap and the cap", len(got))
			}
			if !bytes.Equal(got, all[start:]) {
				t.Fatalf("kept bytes are not the newest ones")
			}
			// An offset inside what is kept reads from there.
			got2, start2, _ := readAll(t, s, k, Stdout, start+10)
			if start2 != start+10 || !bytes.Equal(got2, all[start+10:]) {
				t.Fatalf("read from %d = %d bytes from %d", start+10, len(got2), start2)
			}
		})
	}
}

func TestMissingAttempt(t *testing.T) {
	s := open(t, 0, nil)
	if _, err := s.Read(Key{Job: "j", Task: "t", Attempt: 1}, Stdout, 0, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestEscapedNames(t *testing.T) {
	s := open(t, 0, nil)
	k := Key{Job: "../evil", Task: "a/b", Attempt: 1}
	a, err := s.Create(k)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if rel, _ := filepath.Rel(s.Root(), s.Dir(k)); filepath.Dir(filepath.Dir(rel)) != "%2E.%2Fevil" {
		t.Fatalf("dir = %s", rel)
	}
	jobs, _ := s.Jobs()
	if len(jobs) != 1 || jobs[0] != "../evil" {
		t.Fatalf("jobs = %q", jobs)
	}
}

func TestRemoveJobsAndAge(t *testing.T) {
	now := time.Now()
	s := open(t, 0, func() time.Time { return now })
	mk := func(job string) *Attempt {
		a, err := s.Create(Key{Job: job, Task: job + ".0", Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		a.Stdout.Write([]byte("x"))
		return a
	}
	mk("gone").Close()
	mk("kept").Close()
	running := mk("running")
	if err := s.RemoveJobs([]string{"gone", "running"}); err != nil {
		t.Fatal(err)
	}
	jobs, _ := s.Jobs()
	if len(jobs) != 2 || jobs[0] != "kept" || jobs[1] != "running" {
		t.Fatalf("after RemoveJobs: %q (a running attempt stays)", jobs)
	}
	now = now.Add(8 * 24 * time.Hour)
	removed, err := s.RemoveOlderThan(DefaultMaxAge)
	if err != nil || len(removed) != 1 || removed[0] != "kept" {
		t.Fatalf("RemoveOlderThan = %q, %v; want [kept] (running stays)", removed, err)
	}
	running.Close()
	if removed, _ := s.RemoveOlderThan(DefaultMaxAge); len(removed) != 1 {
		t.Fatalf("after close: removed %q", removed)
	}
	if jobs, _ := s.Jobs(); len(jobs) != 0 {
		t.Fatalf("left %q", jobs)
	}
}
