// Command schedfront is the front of the sched CLI, installed as sched.
//
// It runs no command itself. `sched job submit FILE` (global flags
// allowed, not --watch, not standard input) goes to this user's client
// helper over a Unix socket: a sched-client process that keeps its
// connections to the servers open, parses and submits the job file as
// sched-client would, and sends back what the call printed and its exit
// status. Every other call, and every submit the helper declines or cannot
// take, execs sched-client, the thin client, with the same arguments in
// the same process (PID, signals and exit status unchanged).
//
// A submit that finds no helper runs in sched-client and starts one in the
// background (its own session, output to a log beside its socket) for the
// calls after it. A helper exits after SCHED_HELPER_IDLE (default 10
// minutes) without a call, and SCHED_HELPER=off keeps the front from using
// or starting one. The socket lives in $XDG_RUNTIME_DIR/banyan, else
// /tmp/banyan-UID, and is only made or used in a directory of this user's
// alone; its name follows sched-client's binary, so an upgrade gets a new
// helper.
//
// The front is kept small (no fmt, net, gRPC or cobra): a call through the
// helper costs about what a Go program that does nothing costs, plus the
// helper's answer (README, "The client helper").
package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/cmd/internal/helperwire"
)

// answerTimeout bounds the wait for a helper's answer; past it the call
// runs in sched-client with the same idempotency keys. A submit's own
// deadline in the helper is 30 s.
const answerTimeout = 40

func main() {
	args := os.Args[1:]
	client, err := findClient()
	if err != nil {
		os.Stderr.WriteString("sched: " + err.Error() + "\n")
		os.Exit(2)
	}
	seed := ""
	if !helperwire.Off(os.Getenv) && helperwire.Handed(args) {
		var code int
		var ran bool
		code, ran, seed = viaHelper(client, args)
		if ran {
			os.Exit(code)
		}
	}
	env := os.Environ()
	if seed != "" {
		env = setEnv(env, helperwire.EnvSeed, seed)
	}
	err = syscall.Exec(client, append([]string{client}, args...), env)
	os.Stderr.WriteString("sched: run " + helperwire.ClientName + ": " + err.Error() + "\n")
	os.Exit(2)
}

// findClient returns sched-client's path: next to this binary's executable
// (symlinks resolved), else on PATH.
func findClient() (string, error) {
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			p := filepath.Join(filepath.Dir(exe), helperwire.ClientName)
			if syscall.Access(p, 1) == nil { // X_OK
				return p, nil
			}
		}
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" || dir[0] != '/' {
			continue // not the current directory, as exec.LookPath
		}
		p := filepath.Join(dir, helperwire.ClientName)
		if syscall.Access(p, 1) == nil {
			return p, nil
		}
	}
	return "", errNoClient
}

// errNoClient says what to install when sched-client cannot be found.
var errNoClient = errors.New(helperwire.ClientName + " is not next to this sched nor on PATH: install it beside sched (`make build` puts both in bin/)")

// setEnv returns env with key set to value, any earlier value removed.
func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			continue
		}
		out = append(out, kv)
	}
	return append(out, key+"="+value)
}

// viaHelper hands the call to the helper. ran is true when the helper ran
// it, with its exit status in code, its output written here. Otherwise the
// caller runs it in sched-client, with seed (set once the call may have
// reached the helper) as its key seed. A submit that finds no helper
// starts one.
func viaHelper(client string, args []string) (code int, ran bool, seed string) {
	uid := os.Getuid()
	dir := helperwire.SocketDir(os.Getenv, uid)
	if helperwire.MakeDir(dir, uid) != nil {
		return 0, false, "" // not a directory of ours alone: no helper
	}
	var st syscall.Stat_t
	if syscall.Stat(client, &st) != nil {
		return 0, false, ""
	}
	sock := helperwire.SocketPath(dir, &st)
	fd, err := dial(sock)
	if err != nil {
		// None, or a dead one's socket; unless the last could not start.
		if err == syscall.ENOENT || err == syscall.ECONNREFUSED {
			if failed, _ := helperwire.RecentlyFailed(sock, time.Now()); !failed {
				startHelper(client, sock)
			}
		}
		return 0, false, ""
	}
	// Non-blocking (dial): the wait parks in the runtime's poller, under
	// a deadline.
	conn := os.NewFile(uintptr(fd), sock)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(answerTimeout * time.Second))
	// A seed of the caller's own stands, as sched-client honours it.
	if seed = os.Getenv(helperwire.EnvSeed); seed == "" {
		if seed = newSeed(); seed == "" {
			return 0, false, ""
		}
	}
	wd, err := syscall.Getwd() // the kernel's path, not $PWD's: ".." resolves as it would here
	if err != nil {
		return 0, false, ""
	}
	req := &helperwire.Request{Kind: helperwire.Run, Args: args, Env: os.Environ(), Dir: wd, Seed: seed}
	resp, err := helperwire.Call(conn, req)
	if err != nil || resp.Kind != helperwire.Ran {
		return 0, false, seed
	}
	if _, err := os.Stdout.Write(resp.Stdout); err != nil {
		// As sched-client: the output is the call's result.
		os.Stderr.WriteString("sched: " + err.Error() + "\n")
		return 1, true, seed
	}
	_, _ = os.Stderr.Write(resp.Stderr)
	return resp.Code, true, seed
}

// dial connects a non-blocking Unix socket to path.
func dial(path string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// startHelper starts `sched-client helper serve` for sock in a session of
// its own, its output in a log beside the socket, and does not wait for
// it: it takes the calls after this one. Of helpers started at once for
// the same socket, one keeps it (a lock) and the others exit; a helper
// that exits cleanly removes its log, one that failed leaves it. One that
// could not start (nor be started) says so beside the socket
// (helperwire.MarkFailed), and the calls of the next minute start none.
func startHelper(client, sock string) {
	if starting(sock) {
		return
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return
	}
	defer null.Close()
	logf, err := os.OpenFile(sock+".log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		_ = helperwire.MarkFailed(sock, "start the helper: "+err.Error())
		return
	}
	defer logf.Close()
	// Started in /, without what would make it trace or time calls; the
	// descriptors this process inherited it closes itself (helper.go).
	env := os.Environ()
	kept := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "SCHED_TIMING=") {
			kept = append(kept, kv)
		}
	}
	p, err := os.StartProcess(client, []string{client, "helper", "serve", "--socket", sock},
		&os.ProcAttr{Dir: "/", Env: kept, Files: []*os.File{null, logf, logf}, Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		_ = helperwire.MarkFailed(sock, "start the helper: "+err.Error())
		return
	}
	_ = p.Release()
}

// starting reports whether a helper holds sock's lock: one on its way to
// listening (it locks first), which the call after this one will find.
func starting(sock string) bool {
	fd, err := syscall.Open(sock+".lock", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	return syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB) == syscall.EWOULDBLOCK
}

// newSeed returns 16 random bytes in hex, or "" when none can be read.
func newSeed() string {
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return ""
	}
	defer f.Close()
	var b [16]byte
	if n, err := f.Read(b[:]); err != nil || n != len(b) {
		return ""
	}
	const hexDigits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hexDigits[c>>4], hexDigits[c&15])
	}
	return string(out)
}
