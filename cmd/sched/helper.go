package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/cmd/internal/helperwire"
	"github.com/banyan-sched/banyan/scheduler/tracing/otelenv"
	"github.com/spf13/cobra"
)

// The client helper: a per-user process that runs `sched job submit` for
// the sched front (cmd/schedfront) over a Unix socket, on connections to
// the servers that it keeps open between calls. helperwire's doc says why.
//
// A call the helper runs is parsed and executed by the same command tree
// as in a process of its own, with the front's arguments, environment and
// working directory (helperCall) and its output captured for the front.
// The helper declines, before it sends anything to a server, what it
// cannot run as the front's process would: a watch, a file on standard
// input, a traced or timed call. The front then runs the call in
// sched-client.

// errDeclined is returned by a command that the helper must not run; the
// front runs it itself.
var errDeclined = errors.New("declined by the client helper")

// Defaults of the helper.
const (
	// helperIdle is how long a helper waits for a call before it exits.
	helperIdle = 10 * time.Minute
	// helperConnIdle is how long a connection to a server set stays open
	// with no call on it.
	helperConnIdle = 2 * time.Minute
	// helperFrameTimeout bounds reading a request and writing an answer.
	helperFrameTimeout = 10 * time.Second
)

func newHelperCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "helper",
		Short:  "The client helper that runs job submissions for the sched front",
		Hidden: true,
		Long: `sched (the front) hands "sched job submit" to a per-user helper, which keeps
its connections to the servers open between calls; it starts one when it
finds none. SCHED_HELPER=off turns it off; SCHED_HELPER_IDLE (default 10m)
is how long a helper waits for a call before it exits.`,
	}
	var sock string
	var idle time.Duration
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the helper (the front starts it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if sock == "" {
				if sock, err = ownHelperSocket(); err != nil {
					return err
				}
			}
			defer func() {
				// The fronts start no other for a while; said only in a
				// directory of this user's alone.
				if err != nil && helperwire.CheckDir(filepath.Dir(sock), os.Getuid()) == nil {
					_ = helperwire.MarkFailed(sock, err.Error())
				}
			}()
			if !cmd.Flags().Changed("idle") {
				if v := os.Getenv(helperwire.EnvIdle); v != "" {
					d, err := time.ParseDuration(v)
					if err != nil || d <= 0 {
						return usageError{fmt.Sprintf("%s=%q: want a positive duration such as 10m", helperwire.EnvIdle, v)}
					}
					idle = d
				}
			}
			if idle <= 0 {
				return usageError{fmt.Sprintf("--idle %v: want a positive duration", idle)}
			}
			phases.begin(false, time.Now()) // a helper's calls are not timed
			// The front started this process in / with its own descriptors;
			// any its caller had left open (a lock, a pipe a parent waits
			// on) must not stay open here for the helper's life.
			closeInherited()
			return serveHelper(cmd.Context(), sock, idle, slog.Default())
		},
	}
	serve.Flags().StringVar(&sock, "socket", "", "the socket to listen on (default: this binary's, as the front finds it)")
	serve.Flags().DurationVar(&idle, "idle", helperIdle, "exit after this long without a call (env "+helperwire.EnvIdle+")")
	ask := func(use, short string, kind byte) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				out, err := askHelper(kind)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			},
		}
	}
	cmd.AddCommand(serve,
		ask("status", "Say whether this user's helper runs, and what it has done", helperwire.Status),
		ask("stop", "Stop this user's helper once its calls are done", helperwire.Stop))
	return cmd
}

// closeInherited closes the descriptors above 2 that this process did not
// open: those without close-on-exec (everything the Go runtime and
// packages open has it).
func closeInherited() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno == 0 && flags&syscall.FD_CLOEXEC == 0 {
			syscall.Close(fd)
		}
	}
}

// ownHelperSocket is the socket of the helper that this binary runs, where
// the front looks for it.
func ownHelperSocket() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", exe, err)
	}
	dir := helperwire.SocketDir(os.Getenv, os.Getuid())
	if err := helperwire.CheckDir(dir, os.Getuid()); err != nil && !errors.Is(err, syscall.ENOENT) {
		return "", fmt.Errorf("helper socket directory: %w", err)
	}
	return helperwire.SocketPath(dir, &st), nil
}

// askHelper sends a Status or Stop request to this binary's helper and
// returns its answer's text.
func askHelper(kind byte) ([]byte, error) {
	sock, err := ownHelperSocket()
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("unix", sock, helperFrameTimeout)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return []byte("no helper is running" + lastFailure(sock, time.Now()) + "\n"), nil
		}
		return nil, fmt.Errorf("reach the helper: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(helperFrameTimeout))
	resp, err := helperwire.Call(c, &helperwire.Request{Kind: kind})
	if err != nil {
		return nil, fmt.Errorf("ask the helper: %w", err)
	}
	return resp.Stdout, nil
}

// lastFailure says, for the status of a socket with no helper, when and
// why its last helper could not start and whether the fronts start
// another yet ("" when none failed).
func lastFailure(sock string, now time.Time) string {
	why, err := os.ReadFile(sock + helperwire.FailedSuffix)
	if err != nil {
		return ""
	}
	recent, at := helperwire.RecentlyFailed(sock, now)
	next := "the next submit starts one"
	if recent {
		next = "submits start none until " + at.Add(helperwire.RetryAfter).Format(time.TimeOnly)
	}
	return fmt.Sprintf("; the last could not start at %s (%s): %s (its log: %s.log)",
		at.Format(time.DateTime), next, strings.TrimSpace(string(why)), sock)
}

// helperServer is a running helper.
type helperServer struct {
	uid   int
	idle  time.Duration
	conns *connCache
	log   *slog.Logger
	stop  context.CancelFunc
	start time.Time

	mu       sync.Mutex
	active   int           // calls being run
	last     time.Time     // when the last call ended (or the helper started)
	ran      int           // calls run
	declined int           // calls declined
	busy     time.Duration // the calls run, request read to answer ready, summed
}

// serveHelper listens on sock, in a directory of this user's alone, and
// runs calls until ctx ends, a Stop request comes, or no call has come for
// idle. Of helpers started for the same socket, the first takes a lock
// beside it and the others return at once.
func serveHelper(ctx context.Context, sock string, idle time.Duration, log *slog.Logger) error {
	uid := os.Getuid()
	if err := helperwire.CheckDir(filepath.Dir(sock), uid); err != nil {
		return fmt.Errorf("helper socket directory: %w", err)
	}
	lock, err := lockHelper(sock + ".lock")
	if err != nil || lock == nil {
		return err // nil, nil: another helper serves this socket
	}
	clean := false
	defer func() {
		var held syscall.Stat_t
		if id, err := fileID(lock.Name()); err == nil && syscall.Fstat(int(lock.Fd()), &held) == nil &&
			id == [2]uint64{held.Dev, held.Ino} { // still this helper's (see the socket's removal)
			if clean { // nothing to report: the next helper starts with a new log
				os.Remove(sock + ".log")
			}
			os.Remove(lock.Name()) // before the unlock: a helper that opens it next makes a new one
		}
		lock.Close()
	}()
	// Holding the lock, any socket file left is a dead helper's.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove a dead helper's socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("helper: %w", err)
	}
	// Removed on the way out only while it is still this helper's: one
	// that outlived its directory (removed and made again) must not take
	// its successor's socket with it.
	ln.SetUnlinkOnClose(false)
	own, ownErr := fileID(sock)
	defer func() {
		if id, err := fileID(sock); ownErr == nil && err == nil && id == own {
			os.Remove(sock)
		}
	}()
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("helper socket: %w", err)
	}
	os.Remove(sock + helperwire.FailedSuffix) // the fronts may start helpers again
	// Calls run on the caller's context: a Stop, or the idle timer, ends
	// the accept loop (ctx below) and lets the calls in progress finish.
	calls := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	now := time.Now()
	s := &helperServer{uid: uid, idle: idle, conns: newConnCache(), log: log, stop: cancel, start: now, last: now}
	log.Info("client helper serving", "socket", sock, "pid", os.Getpid(), "idle", idle)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // ends the helper when it has been idle long enough; closes idle connections
		defer wg.Done()
		tick := time.NewTicker(max(min(idle/4, 15*time.Second), 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				s.conns.prune(now, helperConnIdle)
				if s.idleSince(now) >= idle {
					log.Info("client helper idle: exiting", "idle", idle)
					cancel()
					return
				}
			}
		}
	}()
	go func() { // owned by the accept loop below, which waits for ctx too
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("client helper: accept", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, calls, c)
		}()
	}
	wg.Wait()
	s.conns.closeAll()
	s.mu.Lock()
	log.Info("client helper stopped", "calls", s.ran, "declined", s.declined)
	s.mu.Unlock()
	clean = true
	return nil
}

// lockHelper takes the lock file at path for this helper: the file, locked,
// or nil when another helper holds it. A lock file removed and made anew
// between the open and the lock (a helper exiting) is opened again, so
// that two helpers never hold locks on different files of one name.
//
// A front holds the lock shared for a moment while it looks whether a
// helper is starting (cmd/schedfront), so a lock held is tried a few
// times over 20 ms before this helper leaves it to the other.
func lockHelper(path string) (*os.File, error) {
	busy := 0
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("helper lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("helper lock %s: %w", path, err)
			}
			if busy++; busy == 5 {
				return nil, nil
			}
			time.Sleep(4 * time.Millisecond)
			continue
		}
		var held, named syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &named) == nil &&
			held.Dev == named.Dev && held.Ino == named.Ino {
			return f, nil
		}
		f.Close() // the file was removed, or replaced, after the open
	}
}

// idleSince is how long the helper has had no call running, at now.
func (s *helperServer) idleSince(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active > 0 {
		return 0
	}
	return now.Sub(s.last)
}

// handle serves one connection: one request from a front of this user's.
// A call that comes once the helper is stopping (serving ended) is
// declined; one that has begun runs to its end on calls.
func (s *helperServer) handle(serving, calls context.Context, c *net.UnixConn) {
	defer c.Close()
	if uid, err := peerUID(c); err != nil || uid != s.uid {
		s.log.Warn("client helper: refused a connection not from this user", "uid", uid, "err", err)
		return
	}
	_ = c.SetDeadline(time.Now().Add(helperFrameTimeout))
	if err := helperwire.ReadMagic(c); err != nil {
		s.log.Warn("client helper: bad request", "err", err)
		return
	}
	req, err := helperwire.ReadRequest(c)
	if err != nil {
		s.log.Warn("client helper: bad request", "err", err)
		return
	}
	var resp *helperwire.Response
	switch req.Kind {
	case helperwire.Stop:
		resp = &helperwire.Response{Kind: helperwire.Done, Stdout: []byte("helper stopping\n")}
		s.stop()
	case helperwire.Status:
		resp = &helperwire.Response{Kind: helperwire.Done, Stdout: []byte(s.status(time.Now()))}
	default:
		_ = c.SetDeadline(time.Time{}) // the call has its own deadline
		began := s.begin()
		if serving.Err() != nil {
			resp = &helperwire.Response{Kind: helperwire.Declined}
		} else {
			// A front that goes away (Ctrl-C, a timeout's kill) closes
			// its end: the call stops as sched-client's would.
			ctx, cancel := context.WithCancel(calls)
			gone := make(chan struct{})
			go func() {
				defer close(gone)
				var b [1]byte
				_, _ = c.Read(b[:]) // returns when the front closes, or at the deadline set once the call is done
				cancel()
			}()
			resp = s.run(ctx, req)
			_ = c.SetReadDeadline(time.Now()) // end the watch
			<-gone
			cancel()
		}
		s.end(began, resp.Kind == helperwire.Ran)
	}
	_ = c.SetDeadline(time.Now().Add(helperFrameTimeout))
	if err := helperwire.WriteResponse(c, resp); err != nil {
		s.log.Warn("client helper: answer lost", "err", err)
	}
}

func (s *helperServer) begin() time.Time {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	return time.Now()
}

func (s *helperServer) end(began time.Time, ran bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	s.last = now
	if ran {
		s.ran++
		s.busy += now.Sub(began)
	} else {
		s.declined++
	}
}

func (s *helperServer) status(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	mean := time.Duration(0)
	if s.ran > 0 {
		mean = s.busy / time.Duration(s.ran)
	}
	return fmt.Sprintf("helper pid %d, up %s, %d calls run, %d declined, %d running, %d server connections, exits after %s idle; a call took %.2f ms on average\n",
		os.Getpid(), now.Sub(s.start).Round(time.Second), s.ran, s.declined, s.active, s.conns.len(), s.idle, float64(mean)/float64(time.Millisecond))
}

// run runs one call for a front, or declines it.
func (s *helperServer) run(ctx context.Context, req *helperwire.Request) (resp *helperwire.Response) {
	declined := &helperwire.Response{Kind: helperwire.Declined}
	if !helperwire.Handed(req.Args) || otelenv.Enabled(req.Env) || !filepath.IsAbs(req.Dir) {
		return declined
	}
	getenv := envLookup(req.Env, req.Seed)
	if timingWanted(getenv("SCHED_TIMING")) || processEnvDiffers(req.Env) {
		return declined
	}
	var out, errOut bytes.Buffer
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("client helper: a call panicked", "panic", p, "stack", string(debug.Stack()))
			errOut.WriteString(fmt.Sprintf("sched: internal error in the client helper: %v\n", p))
			resp = &helperwire.Response{Kind: helperwire.Ran, Code: 1, Stdout: out.Bytes(), Stderr: errOut.Bytes()}
		}
	}()
	root := newRootCmdCall(req.Args, &helperCall{getenv: getenv, dir: req.Dir, conns: s.conns})
	root.SetArgs(req.Args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(ctx)
	if errors.Is(err, errDeclined) {
		return declined
	}
	code := 0
	if err != nil {
		errOut.WriteString("sched: " + oneLine(err) + "\n")
		code = exitCode(err)
	}
	return &helperwire.Response{Kind: helperwire.Ran, Code: code, Stdout: out.Bytes(), Stderr: errOut.Bytes()}
}

// processEnvDiffers reports whether env sets a variable that a process
// reads for itself, not per call, otherwise than this helper's own
// environment: gRPC's proxy (HTTPS_PROXY and the like, read when a
// connection is dialled), GODEBUG and gRPC's GRPC_* settings. Such a call
// runs in a process of its own, with its own.
func processEnvDiffers(env []string) bool {
	return !maps.Equal(processEnv(env), ownProcessEnv())
}

// ownProcessEnv is processEnv of this process's environment, read once.
var ownProcessEnv = sync.OnceValue(func() map[string]string { return processEnv(os.Environ()) })

// processEnv picks from env the variables processEnvDiffers compares.
func processEnv(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GRPC_"), k == "GODEBUG", strings.EqualFold(k, "https_proxy"),
			strings.EqualFold(k, "http_proxy"), strings.EqualFold(k, "no_proxy"), strings.EqualFold(k, "all_proxy"):
			m[k] = v
		}
	}
	return m
}

// envLookup is getenv over env (KEY=VALUE, the last of a key winning, as
// in a process), with the front's seed as helperwire.EnvSeed.
func envLookup(env []string, seed string) func(string) string {
	m := make(map[string]string, len(env)+1)
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	if seed != "" {
		m[helperwire.EnvSeed] = seed
	}
	return func(k string) string { return m[k] }
}

// callPath is path as the call's process would open it: against the
// front's working directory when the helper runs the call, joined without
// cleaning, so that the kernel resolves ".." after a symlinked directory
// as it would in the front's process.
func (g *globals) callPath(path string) string {
	if g.call == nil || path == "" || path == "-" || filepath.IsAbs(path) {
		return path
	}
	return strings.TrimSuffix(g.call.dir, "/") + "/" + path
}

// processPath reports whether path names something of the process that
// opens it (/dev/stdin, /dev/fd/N, /proc/self/...): in the helper it would
// be the helper's, not the front's.
func processPath(path string) bool {
	return strings.HasPrefix(path, "/dev/") || strings.HasPrefix(path, "/proc/")
}

// fileID is the device and inode of the file at path (not followed).
func fileID(path string) ([2]uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return [2]uint64{}, err
	}
	return [2]uint64{st.Dev, st.Ino}, nil
}

// peerUID is the user id of the process at the other end of c.
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// connCache holds the helper's connections, one per server set and
// credentials (connKey), shared by the calls that name the same.
type connCache struct {
	mu     sync.Mutex
	m      map[string]*cachedConn
	closed bool
}

type cachedConn struct {
	c    *client
	refs int // calls using it
	used time.Time
}

func newConnCache() *connCache { return &connCache{m: map[string]*cachedConn{}} }

// get returns the connection for g's servers and credentials, dialling it
// the first time, and counts a call on it until release.
func (cc *connCache) get(g *globals) (*client, func(), error) {
	key := connKey(g)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return nil, nil, errors.New("the client helper is stopping")
	}
	e, ok := cc.m[key]
	if !ok {
		own := *g // its TLS files named as the front's process would open them
		own.tls.CA, own.tls.Cert, own.tls.Key = g.callPath(g.tls.CA), g.callPath(g.tls.Cert), g.callPath(g.tls.Key)
		c, err := dial(&own)
		if err != nil {
			return nil, nil, err
		}
		e = &cachedConn{c: c}
		cc.m[key] = e
	} else {
		e.c.conn.wake()
	}
	e.refs++
	e.used = time.Now()
	return e.c, func() {
		cc.mu.Lock()
		e.refs--
		e.used = time.Now()
		cc.mu.Unlock()
	}, nil
}

// prune closes the connections no call has used for idle.
func (cc *connCache) prune(now time.Time, idle time.Duration) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for k, e := range cc.m {
		if e.refs == 0 && now.Sub(e.used) >= idle {
			e.c.Close()
			delete(cc.m, k)
		}
	}
}

// closeAll closes every connection; get fails from then on.
func (cc *connCache) closeAll() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.closed = true
	for k, e := range cc.m {
		e.c.Close()
		delete(cc.m, k)
	}
}

func (cc *connCache) len() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.m)
}

// connKey names what a connection is made of: the server addresses, the
// TLS files with their contents (a rotated certificate gets a new
// connection), and the token.
func connKey(g *globals) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		for i, l := 0, uint64(len(b)); i < 8; i, l = i+1, l>>8 {
			n[i] = byte(l)
		}
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(g.addr))
	files := []string{g.tls.CA, g.tls.Cert, g.tls.Key}
	for _, f := range files {
		field([]byte(f))
		if f == "" {
			field(nil)
			continue
		}
		data, err := os.ReadFile(g.callPath(f))
		if err != nil {
			data = []byte("unreadable: " + err.Error())
		}
		field(data)
	}
	field([]byte(g.token))
	return hex.EncodeToString(h.Sum(nil))
}
