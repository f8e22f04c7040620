package helperwire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHanded(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"job", "submit", "a.yaml"}, true},
		{[]string{"--addr", "h:1", "job", "submit", "a.yaml"}, true},
		{[]string{"--addr=h:1", "-o", "json", "--token", "t", "job", "submit", "a.yaml"}, true},
		{[]string{"-ojson", "job", "submit", "a.yaml"}, true},
		{[]string{"job", "submit", "--watch", "a.yaml"}, true}, // the helper parses it and declines
		{[]string{"job", "submit"}, true},                      // a usage error, the helper's to say
		{[]string{"job", "list"}, false},
		{[]string{"job"}, false},
		{[]string{"submit", "job"}, false},
		{[]string{"server", "--data-dir", "d"}, false},
		{[]string{"--help", "job", "submit", "a.yaml"}, false},
		{[]string{"-h"}, false},
		{[]string{"--", "job", "submit"}, false},
		{[]string{"-", "job", "submit"}, false},
		{[]string{"", "job", "submit"}, false},
		{[]string{"--addr"}, false},
		{[]string{"--verbose", "job", "submit", "a.yaml"}, false}, // not a flag of the root's
		{nil, false},
	} {
		if got := Handed(c.args); got != c.want {
			t.Errorf("Handed(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestOff(t *testing.T) {
	for v, want := range map[string]bool{"": false, "on": false, "off": true, "0": true, "false": true, "no": true, "1": false} {
		if got := Off(func(string) string { return v }); got != want {
			t.Errorf("Off with %s=%q: %v, want %v", EnvMode, v, got, want)
		}
	}
}

func TestSocketDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	uid := os.Getuid()
	rt := t.TempDir()
	if got := SocketDir(env(map[string]string{EnvRuntimeDir: rt}), uid); got != rt+"/banyan" {
		t.Errorf("with XDG_RUNTIME_DIR: %s", got)
	}
	tmp := "/tmp/banyan-" + strconv.Itoa(uid+1)
	if got := SocketDir(env(map[string]string{EnvRuntimeDir: rt}), uid+1); got != tmp {
		t.Errorf("an XDG_RUNTIME_DIR of another user's must be ignored: %s", got)
	}
	if got := SocketDir(env(map[string]string{EnvRuntimeDir: rt + "/missing"}), uid); got != "/tmp/banyan-"+strconv.Itoa(uid) {
		t.Errorf("a missing XDG_RUNTIME_DIR must be ignored: %s", got)
	}
	if got := SocketDir(env(nil), 1000); got != "/tmp/banyan-1000" {
		t.Errorf("without: %s", got)
	}
	if got := SocketDir(env(map[string]string{EnvRuntimeDir: "relative"}), 7); got != "/tmp/banyan-7" {
		t.Errorf("a relative XDG_RUNTIME_DIR must be ignored: %s", got)
	}
}

func TestCheckDir(t *testing.T) {
	uid := os.Getuid()
	base := t.TempDir()
	private := filepath.Join(base, "private")
	if err := MakeDir(private, uid); err != nil {
		t.Fatalf("MakeDir: %v", err)
	}
	if err := MakeDir(private, uid); err != nil {
		t.Fatalf("MakeDir of an existing private dir: %v", err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir  string
		uid  int
		want error
	}{
		{private, uid, nil},
		{private, uid + 1, ErrUnsafeDir},
		{open, uid, ErrUnsafeDir},
		{link, uid, ErrUnsafeDir},
		{file, uid, ErrUnsafeDir},
		{filepath.Join(base, "missing"), uid, syscall.ENOENT},
	} {
		err := CheckDir(c.dir, c.uid)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("CheckDir(%s, %d) = %v, want %v", filepath.Base(c.dir), c.uid, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), filepath.Base(c.dir)) {
			t.Errorf("CheckDir's error %q does not name the directory", err)
		}
	}
	if err := MakeDir(open, uid); !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("MakeDir of a directory others can enter: %v, want ErrUnsafeDir", err)
	}
}

func TestFailedMark(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sched-x.sock")
	now := time.Now()
	if failed, _ := RecentlyFailed(sock, now); failed {
		t.Fatal("failed with no mark")
	}
	if err := MarkFailed(sock, "helper: listen: path too long"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(sock + FailedSuffix); err != nil || string(b) != "helper: listen: path too long\n" {
		t.Fatalf("mark %q, %v", b, err)
	}
	failed, at := RecentlyFailed(sock, time.Now())
	if !failed || at.Before(now.Add(-time.Second)) {
		t.Fatalf("just marked: failed %v at %v", failed, at)
	}
	for _, c := range []struct {
		age  time.Duration
		want bool
	}{
		{0, true},
		{RetryAfter - time.Second, true},
		{RetryAfter + time.Second, false},
		{-RetryAfter / 2, true},            // the clock set back a little
		{-RetryAfter - time.Second, false}, // or far: not forever
	} {
		when := now.Add(-c.age)
		if err := os.Chtimes(sock+FailedSuffix, when, when); err != nil {
			t.Fatal(err)
		}
		if got, _ := RecentlyFailed(sock, now); got != c.want {
			t.Errorf("marked %v ago: recently failed %v, want %v", c.age, got, c.want)
		}
	}
	// A second failure rewrites the mark, its time with it.
	if err := MarkFailed(sock, "again"); err != nil {
		t.Fatal(err)
	}
	if failed, _ := RecentlyFailed(sock, time.Now()); !failed {
		t.Error("a second failure did not renew the mark")
	}
	// A symlink in its place is not followed.
	link := filepath.Join(t.TempDir(), "sched-y.sock")
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, link+FailedSuffix); err != nil {
		t.Fatal(err)
	}
	if err := MarkFailed(link, "x"); err == nil {
		t.Error("MarkFailed wrote through a symlink")
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the symlink's target was made: %v", err)
	}
}

func TestSocketName(t *testing.T) {
	st := syscall.Stat_t{Dev: 1, Ino: 2, Size: 3}
	st.Mtim.Sec, st.Mtim.Nsec = 4, 5
	name := SocketName(&st, 9)
	if !strings.HasPrefix(name, "sched-") || !strings.HasSuffix(name, ".sock") || strings.ContainsRune(name, '/') {
		t.Fatalf("SocketName = %q", name)
	}
	if again := SocketName(&st, 9); again != name {
		t.Errorf("not stable: %q then %q", name, again)
	}
	seen := map[string]string{name: "base"}
	for what, change := range map[string]func(s *syscall.Stat_t, ns *uint64){
		"inode":     func(s *syscall.Stat_t, _ *uint64) { s.Ino++ },
		"size":      func(s *syscall.Stat_t, _ *uint64) { s.Size++ },
		"mtime":     func(s *syscall.Stat_t, _ *uint64) { s.Mtim.Nsec++ },
		"device":    func(s *syscall.Stat_t, _ *uint64) { s.Dev++ },
		"namespace": func(_ *syscall.Stat_t, ns *uint64) { *ns++ },
	} {
		s, ns := st, uint64(9)
		change(&s, &ns)
		n := SocketName(&s, ns)
		if prev, dup := seen[n]; dup {
			t.Errorf("a changed %s gives the name of %s: %s", what, prev, n)
		}
		seen[n] = what
	}
	if Namespaces() == 0 {
		t.Log("no /proc/self/ns here")
	}
}

func TestFramesRoundTrip(t *testing.T) {
	req := &Request{Kind: Run, Args: []string{"job", "submit", "a b.yaml", ""}, Env: []string{"A=1", "B="},
		Dir: "/srv/jobs", Seed: "00ff"}
	var buf bytes.Buffer
	if err := WriteMagic(&buf); err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	if err := ReadMagic(&buf); err != nil {
		t.Fatalf("ReadMagic: %v", err)
	}
	got, err := ReadRequest(&buf)
	if err != nil {
		t.Fatalf("ReadRequest: %v", err)
	}
	if !reflect.DeepEqual(got, req) {
		t.Errorf("request: got %+v, want %+v", got, req)
	}
	for _, resp := range []*Response{
		{Kind: Ran, Code: 3, Stdout: []byte("job-1\tone\t1 tasks\n"), Stderr: []byte("sched: x\n")},
		{Kind: Ran, Code: -1}, // nothing printed: nil slices back
		{Kind: Declined},
	} {
		buf.Reset()
		if err := WriteResponse(&buf, resp); err != nil {
			t.Fatal(err)
		}
		got, err := ReadResponse(&buf)
		if err != nil {
			t.Fatalf("ReadResponse: %v", err)
		}
		if !reflect.DeepEqual(got, resp) {
			t.Errorf("response: got %+v, want %+v", got, resp)
		}
	}
}

func TestMalformedFrames(t *testing.T) {
	frame := func(payload ...byte) []byte {
		n := len(payload)
		return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, payload...)
	}
	var good bytes.Buffer
	_ = WriteRequest(&good, &Request{Kind: Run, Args: []string{"a"}})
	for name, c := range map[string]struct {
		in   []byte
		want error
	}{
		"empty":               {nil, io.EOF},
		"short length":        {[]byte{0, 0}, io.ErrUnexpectedEOF},
		"short payload":       {[]byte{0, 0, 0, 9, 1}, io.ErrUnexpectedEOF},
		"over the limit":      {[]byte{0x7f, 0xff, 0xff, 0xff}, ErrFrame},
		"no fields":           {frame(), ErrFrame},
		"unknown kind":        {frame(append([]byte{9}, good.Bytes()[5:]...)...), ErrFrame},
		"string past the end": {frame(1, 0, 0, 0, 200, 'x'), ErrFrame},
		"list past the end":   {frame(1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), ErrFrame},
		"trailing bytes":      {frame(append(append([]byte{}, good.Bytes()[4:]...), 0)...), ErrFrame},
	} {
		_, err := ReadRequest(bytes.NewReader(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: ReadRequest error %v, want %v", name, err, c.want)
		}
	}
	if err := ReadMagic(strings.NewReader("GET / HTTP/1.1\r\n\r\n")); !errors.Is(err, ErrFrame) {
		t.Errorf("ReadMagic of another protocol: %v, want ErrFrame", err)
	}
	if _, err := ReadResponse(bytes.NewReader(frame(7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))); !errors.Is(err, ErrFrame) {
		t.Errorf("ReadResponse of an unknown kind: %v, want ErrFrame", err)
	}
}
