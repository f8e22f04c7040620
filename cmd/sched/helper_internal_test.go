package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/cmd/internal/helperwire"
)

// The helper declines, before any server is asked, what it cannot run as
// the front's own process would.
func TestHelperDeclines(t *testing.T) {
	s := &helperServer{conns: newConnCache(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	defer s.conns.closeAll()
	// This process's environment, as a front started beside it would send
	// it (less what would trace or time the call), and no reachable server.
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "SCHED_") && !strings.HasPrefix(kv, "HTTPS_PROXY=") {
			base = append(base, kv)
		}
	}
	base = append(base, "SCHED_ADDR=127.0.0.1:1")
	with := func(kv ...string) []string { return append(append([]string(nil), base...), kv...) }
	for _, c := range []struct {
		name string
		args []string
		env  []string
		dir  string
	}{
		{"a watch", []string{"job", "submit", "--watch", "j.yaml"}, base, "/"},
		{"a short watch", []string{"job", "submit", "-w", "j.yaml"}, base, "/"},
		{"standard input", []string{"job", "submit", "-"}, base, "/"},
		{"another command", []string{"job", "list"}, base, "/"},
		{"a traced call", []string{"job", "submit", "j.yaml"}, with("OTEL_TRACES_EXPORTER=otlp"), "/"},
		{"a timed call", []string{"job", "submit", "j.yaml"}, with("SCHED_TIMING=1"), "/"},
		{"a proxy of its own", []string{"job", "submit", "j.yaml"}, with("HTTPS_PROXY=http://banyan-test.invalid:9"), "/"},
		{"GRPC_ settings of its own", []string{"job", "submit", "j.yaml"}, with("GRPC_BANYAN_TEST=1"), "/"},
		{"standard input by name", []string{"job", "submit", "/dev/stdin"}, base, "/"},
		{"a descriptor by name", []string{"job", "submit", "/proc/self/fd/0"}, base, "/"},
		{"a descriptor, relative", []string{"job", "submit", "fd/3"}, base, "/dev"},
		{"no working directory", []string{"job", "submit", "j.yaml"}, base, ""},
		{"a relative working directory", []string{"job", "submit", "j.yaml"}, base, "work"},
	} {
		resp := s.run(context.Background(), &helperwire.Request{Kind: helperwire.Run, Args: c.args, Env: c.env, Dir: c.dir})
		if resp.Kind != helperwire.Declined {
			t.Errorf("%s: kind %d (code %d, %q), want declined", c.name, resp.Kind, resp.Code, resp.Stderr)
		}
	}
	if n := s.conns.len(); n != 0 {
		t.Errorf("declining dialled %d connections", n)
	}
	if !processEnvDiffers(with("HTTPS_PROXY=x")) || processEnvDiffers(os.Environ()) {
		t.Error("processEnvDiffers: a proxy set only for the call must differ, this process's own environment must not")
	}
	// SCHED_TIMING=0 is timing off, as in sched-client: not declined (the
	// call then fails to reach the server, as it would there).
	resp := s.run(context.Background(), &helperwire.Request{Kind: helperwire.Run, Args: []string{"job", "submit", "missing.yaml"}, Env: with("SCHED_TIMING=0"), Dir: "/"})
	if resp.Kind != helperwire.Ran || resp.Code != 1 || !strings.Contains(string(resp.Stderr), "missing.yaml") {
		t.Errorf("SCHED_TIMING=0: kind %d, exit %d, %q", resp.Kind, resp.Code, resp.Stderr)
	}
	// Usage errors and help are the helper's to answer, as sched-client's.
	resp = s.run(context.Background(), &helperwire.Request{Kind: helperwire.Run, Args: []string{"job", "submit"}, Env: base, Dir: "/"})
	if resp.Kind != helperwire.Ran || resp.Code != 2 || !strings.Contains(string(resp.Stderr), "accepts 1 arg") {
		t.Errorf("a submit without a file: kind %d, exit %d, %q", resp.Kind, resp.Code, resp.Stderr)
	}
	resp = s.run(context.Background(), &helperwire.Request{Kind: helperwire.Run, Args: []string{"job", "submit", "--help"}, Env: base, Dir: "/"})
	if resp.Kind != helperwire.Ran || resp.Code != 0 || !strings.Contains(string(resp.Stdout), "Usage:") {
		t.Errorf("submit --help: kind %d, exit %d, %q", resp.Kind, resp.Code, resp.Stdout)
	}
}

// shortDir is a private temporary directory with a short path (a Unix
// socket's path has a limit of 107 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ask sends one request to the helper at sock.
func ask(t *testing.T, sock string, kind byte) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := helperwire.Call(c, &helperwire.Request{Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return string(resp.Stdout)
}

// serve runs serveHelper in a goroutine and returns its result channel,
// once the socket answers.
func serve(t *testing.T, ctx context.Context, sock string, idle time.Duration) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- serveHelper(ctx, sock, idle, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return done
		}
		select {
		case err := <-done:
			t.Fatalf("serveHelper returned before it listened: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper did not listen within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitServe(t *testing.T, done <-chan error, within time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: serveHelper: %v", what, err)
		}
	case <-time.After(within):
		t.Fatalf("%s: the helper still runs after %v", what, within)
	}
}

// One helper a socket (a second one returns at once), which exits when
// idle, when stopped, and when its context ends, removing its socket; and
// which replaces a dead helper's socket file.
func TestServeHelperLifecycle(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "h.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil { // a dead helper's leftover
		t.Fatal(err)
	}
	ctx := context.Background()
	done := serve(t, ctx, sock, 400*time.Millisecond)
	if st := ask(t, sock, helperwire.Status); !strings.Contains(st, "0 calls run") {
		t.Errorf("status: %q", st)
	}
	second := make(chan error, 1)
	go func() { second <- serveHelper(ctx, sock, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	waitServe(t, second, 5*time.Second, "a second helper for the same socket")
	waitServe(t, done, 5*time.Second, "an idle helper")
	for _, f := range []string{sock, sock + ".lock"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("the idle helper left %s: %v", filepath.Base(f), err)
		}
	}

	done = serve(t, ctx, sock, time.Hour)
	if got := ask(t, sock, helperwire.Stop); got != "helper stopping\n" {
		t.Errorf("stop: %q", got)
	}
	waitServe(t, done, 5*time.Second, "a stopped helper")

	cctx, cancel := context.WithCancel(ctx)
	done = serve(t, cctx, sock, time.Hour)
	cancel()
	waitServe(t, done, 5*time.Second, "a helper whose context ended")
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the helper left its socket: %v", err)
	}
}

// A helper is not made in a directory other users can enter, and a
// connection that does not open with the front's magic is dropped.
func TestServeHelperRefusals(t *testing.T) {
	open := shortDir(t)
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	err := serveHelper(context.Background(), filepath.Join(open, "h.sock"), time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("serveHelper in a 0755 directory: %v", err)
	}
	sock := filepath.Join(shortDir(t), "h.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(t, ctx, sock, time.Hour)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Closed with the request unread: EOF, or a reset.
	if n, err := c.Read(make([]byte, 1)); n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("a stranger's request: read %d bytes, %v; want the connection closed", n, err)
	}
	c.Close()
	cancel()
	waitServe(t, done, 5*time.Second, "after a stranger's request")
}

// Calls share a connection only with the same servers and credentials.
func TestConnKey(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := globals{addr: "a:1", token: "t", tls: tlsconfig.Files{CA: ca}}
	key := connKey(&base)
	if again := connKey(&base); again != key {
		t.Fatal("connKey is not stable")
	}
	for name, change := range map[string]func(g *globals){
		"addr":  func(g *globals) { g.addr = "a:2" },
		"token": func(g *globals) { g.token = "u" },
		"cert":  func(g *globals) { g.tls.Cert = ca },
	} {
		g := base
		change(&g)
		if connKey(&g) == key {
			t.Errorf("a changed %s keeps the key", name)
		}
	}
	if err := os.WriteFile(ca, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if connKey(&base) == key {
		t.Error("a rotated CA file keeps the key")
	}
	// Relative files are the front's: read against its directory.
	rel := globals{addr: "a:1", tls: tlsconfig.Files{CA: "ca.pem"}, call: &helperCall{dir: dir}}
	if connKey(&rel) == connKey(&globals{addr: "a:1", tls: tlsconfig.Files{CA: "ca.pem"}}) {
		t.Error("a relative CA path was not read against the call's directory")
	}
}

// A relative path is joined to the front's directory without cleaning: the
// kernel resolves ".." after a symlinked directory as in the front.
func TestCallPath(t *testing.T) {
	g := &globals{call: &helperCall{dir: "/home/u/proj"}}
	for in, want := range map[string]string{
		"a.yaml": "/home/u/proj/a.yaml", "../jobs/a.yaml": "/home/u/proj/../jobs/a.yaml",
		"/abs.yaml": "/abs.yaml", "-": "-", "": "",
	} {
		if got := g.callPath(in); got != want {
			t.Errorf("callPath(%q) = %q, want %q", in, got, want)
		}
	}
	if got := (&globals{call: &helperCall{dir: "/"}}).callPath("a"); got != "/a" {
		t.Errorf("callPath from /: %q", got)
	}
	if got := (&globals{}).callPath("a"); got != "a" {
		t.Errorf("callPath in a process of its own: %q", got)
	}
}

// A front that goes away (Ctrl-C) closes its connection, and the helper
// cancels its call: here one to a server that accepts and never answers.
func TestHelperCancelsTheCallOfAFrontGone(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // open, silent: the HTTP/2 handshake never ends
		}
	}()
	defer func() {
		hung.Close()
		<-accepted
		for _, c := range held {
			c.Close()
		}
	}()
	dir := shortDir(t)
	if err := os.WriteFile(filepath.Join(dir, "j.yaml"), []byte("name: j\ntasks:\n  - name: t\n    command: [\"true\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "h.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(t, ctx, sock, time.Hour)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "SCHED_") {
			env = append(env, kv)
		}
	}
	front, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := helperwire.WriteMagic(front); err != nil {
		t.Fatal(err)
	}
	if err := helperwire.WriteRequest(front, &helperwire.Request{Kind: helperwire.Run, Args: []string{"job", "submit", "j.yaml"},
		Env: append(env, "SCHED_ADDR="+hung.Addr().String()), Dir: dir, Seed: "00"}); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := ask(t, sock, helperwire.Status)
			if strings.Contains(st, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %q after 5 s, want %q", st, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus("1 running")
	front.Close() // the front is gone
	waitStatus("0 running")
	cancel()
	waitServe(t, done, 5*time.Second, "after the cancelled call")
}
