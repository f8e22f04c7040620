// Package helperwire is what the sched front (cmd/schedfront, installed as
// sched) and the client helper (`sched-client helper serve`) share: where
// the helper's socket lives, which calls the front hands it, and the frames
// of a call and its answer.
//
// A script that submits one job per `sched job submit` pays a Go process's
// start, the package initialisation of a gRPC client, a dial and an
// HTTP/2 handshake on every call. The helper is a per-user process that
// keeps the connections to the servers open and runs the submit for the
// front, which links none of that: the front's start is about a Go
// program's that does nothing. ssh's ControlMaster, Bazel's server and
// Nailgun work the same way.
//
// The front is sized by what it imports: this package imports only the
// standard library's smallest packages (no fmt, net, reflect or
// encoding/binary), and the front imports little else.
package helperwire

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Env names.
const (
	// EnvMode turns the helper off: SCHED_HELPER=off (or 0, false, no)
	// makes every call run in a process of its own, as before the helper.
	EnvMode = "SCHED_HELPER"
	// EnvIdle is how long a helper waits for a call before it exits (a Go
	// duration; default DefaultIdle). The helper reads its own environment,
	// which is that of the call that started it.
	EnvIdle = "SCHED_HELPER_IDLE"
	// EnvSeed, set by the front when it runs a call itself after handing
	// it to a helper that did not answer, makes `sched job submit` derive
	// the idempotency keys of the jobs that have none from it, as the
	// helper did: the call run again cannot submit a job twice.
	EnvSeed = "SCHED_SUBMIT_SEED"
	// EnvRuntimeDir is the per-user runtime directory (XDG).
	EnvRuntimeDir = "XDG_RUNTIME_DIR"
)

// Off reports whether the environment turns the helper off.
func Off(getenv func(string) string) bool {
	switch getenv(EnvMode) {
	case "off", "0", "false", "no":
		return true
	}
	return false
}

// ClientName is the name the thin client is installed under, next to the
// front (or on PATH): it runs every call the front does not hand to a
// helper, and the helper itself.
const ClientName = "sched-client"

// SocketDir is the directory of uid's helper sockets: banyan under
// $XDG_RUNTIME_DIR when that is an absolute path to a directory uid owns
// (not, say, the invoking user's under sudo -E), else banyan-UID under
// /tmp. CheckDir says whether it is safe to use.
func SocketDir(getenv func(string) string, uid int) string {
	if d := getenv(EnvRuntimeDir); d != "" && d[0] == '/' {
		var st syscall.Stat_t
		if syscall.Stat(d, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR && int(st.Uid) == uid {
			return d + "/banyan"
		}
	}
	return "/tmp/banyan-" + strconv.Itoa(uid)
}

// ErrUnsafeDir is CheckDir's answer for a directory that another user
// could have made or could write to.
var ErrUnsafeDir = errors.New("not a directory of this user's alone (owner, mode 0700, no symlink)")

// CheckDir returns nil when dir is a directory (not a symlink) owned by
// uid that no other user can read, write or enter; else an error naming
// the problem. A helper socket is only made and used in such a directory:
// on a shared /tmp another user could make banyan-UID first.
func CheckDir(dir string, uid int) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != uid || st.Mode&0o077 != 0 {
		return &os.PathError{Op: "check", Path: dir, Err: ErrUnsafeDir}
	}
	return nil
}

// MakeDir makes dir (one level, mode 0700) unless it exists, then checks
// it (CheckDir).
func MakeDir(dir string, uid int) error {
	if err := syscall.Mkdir(dir, 0o700); err != nil && err != syscall.EEXIST {
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return CheckDir(dir, uid)
}

// SocketName is the file name of the socket of the helper run by the
// client binary whose stat is bin, for processes in the namespaces that ns
// names (Namespaces). A new build (a changed binary) gets a helper of its
// own, and the old one exits when it has been idle long enough; a process
// in another network or mount namespace (a container or sandbox sharing
// the directory, a test's namespace) gets one that dials from its network
// and reads files from its mounts.
func SocketName(bin *syscall.Stat_t, ns uint64) string {
	h := uint64(14695981039346656037) // FNV-1a over the binary's identity and the namespaces
	for _, v := range []uint64{bin.Dev, bin.Ino, uint64(bin.Size), uint64(bin.Mtim.Sec), uint64(bin.Mtim.Nsec), ns} {
		for i := 0; i < 8; i++ {
			h ^= v & 0xff
			h *= 1099511628211
			v >>= 8
		}
	}
	return "sched-" + strconv.FormatUint(h, 36) + ".sock"
}

// Namespaces names this process's network and mount namespaces in one
// number (their inodes), 0 where /proc does not say.
func Namespaces() uint64 {
	var ns uint64
	for _, name := range []string{"/proc/self/ns/net", "/proc/self/ns/mnt"} {
		var st syscall.Stat_t
		if syscall.Stat(name, &st) == nil {
			ns = ns*1000003 + st.Ino
		}
	}
	return ns
}

// FailedSuffix names the file beside a helper's socket that a helper
// which could not start writes its error to (a socket path too long, a
// bad SCHED_HELPER_IDLE): for RetryAfter from then no front starts
// another, so a helper that cannot start costs a start a minute, not one
// a call. A helper removes it once it listens.
const FailedSuffix = ".failed"

// RetryAfter is how long after a helper failed to start a front starts
// none for the same socket.
const RetryAfter = time.Minute

// MarkFailed records in sock's FailedSuffix file that its helper could not
// start, and why (the write also sets the time RecentlyFailed reads).
func MarkFailed(sock, why string) error {
	f, err := os.OpenFile(sock+FailedSuffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(why + "\n")
	return errors.Join(err, f.Close())
}

// RecentlyFailed reports whether sock's helper failed to start less than
// RetryAfter before now (a time ahead of now, after the clock was set
// back, counts as recent only up to RetryAfter ahead), and when.
func RecentlyFailed(sock string, now time.Time) (bool, time.Time) {
	fi, err := os.Stat(sock + FailedSuffix)
	if err != nil {
		return false, time.Time{}
	}
	d := now.Sub(fi.ModTime())
	return d < RetryAfter && d > -RetryAfter, fi.ModTime()
}

// SocketPath is the socket, in dir (SocketDir), of the helper run by the
// client binary whose stat is bin, for this process's namespaces: where
// the front looks for it and where the helper listens.
func SocketPath(dir string, bin *syscall.Stat_t) string {
	return dir + "/" + SocketName(bin, Namespaces())
}

// RootValueFlags are sched's global flags that take their value as the
// next argument; Handed, and sched's own parsing of which command a call
// names, step over it. A test in cmd/sched checks the list against the
// root command's flags.
var RootValueFlags = map[string]bool{"--addr": true, "-o": true, "--output": true, "--log-level": true,
	"--log-format": true, "--tls-ca": true, "--tls-cert": true, "--tls-key": true, "--token": true}

// Handed reports whether the front hands a call with args (without the
// program name) to the helper: `job submit` with only global flags before
// it. The helper parses the call as sched does and declines what it does
// not run (--watch, a file on standard input, a traced call); everything
// else never reaches it.
func Handed(args []string) bool {
	var words []string
	for i := 0; i < len(args) && len(words) < 2; i++ {
		a := args[i]
		switch {
		case a == "--" || a == "-":
			return false
		case len(a) > 2 && a[:2] == "--" && contains(a, '='):
		case len(a) > 2 && a[:2] == "-o": // -ojson
		case RootValueFlags[a]:
			i++
		case a != "" && a[0] == '-':
			return false // --help, or a flag sched's root does not take
		default:
			words = append(words, a)
		}
	}
	return len(words) == 2 && words[0] == "job" && words[1] == "submit"
}

func contains(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
