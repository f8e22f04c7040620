package worker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// errPipe carries a worker's standard error to the writer of the call it
// serves, or to the idle writer between calls.
//
// The read end is non-blocking. One goroutine (pump) waits for bytes and
// reads what is there; a call's end reads what is left (take) before it
// switches the destination. Every read and the write of what it read
// happen under mu, so each byte goes to the destination current when it
// was read, and none read before a switch lands after it.
type errPipe struct {
	f    *os.File
	rc   syscall.RawConn
	idle io.Writer

	mu  sync.Mutex
	to  io.Writer // guarded by mu
	buf []byte    // guarded by mu

	done chan struct{} // closed when pump returns
}

// readBudget bounds the reads of one turn, so that a worker that writes
// without pause cannot keep the lock from a switch for long.
const readBudget = 16

// maxTakeTurns bounds what a switch takes (16 MiB at 32 KiB a read): what
// a worker writes faster than that after its response is not its call's.
const maxTakeTurns = 32

// read results.
const (
	drained = iota // the pipe is empty for now
	more           // the budget ran out with bytes left
	ended          // end of file: every writer closed it
)

// newErrPipe makes the pipe whose write end the worker gets as its
// standard error; idle receives what it writes between calls.
func newErrPipe(idle io.Writer) (*errPipe, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("worker stderr: %w", err)
	}
	rc, err := r.SyscallConn()
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, fmt.Errorf("worker stderr: %w", err)
	}
	if idle == nil {
		idle = io.Discard
	}
	return &errPipe{f: r, rc: rc, idle: idle, to: idle, buf: make([]byte, 32<<10), done: make(chan struct{})}, w, nil
}

// pump moves bytes until the worker and everything it started closed the
// pipe, or close is called.
func (e *errPipe) pump() {
	defer close(e.done)
	for {
		res := drained
		err := e.rc.Read(func(fd uintptr) bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			res = e.readLocked(fd)
			return res != drained // drained: wait until readable again
		})
		if err != nil || res == ended {
			return
		}
	}
}

// readLocked reads what the pipe holds, up to readBudget reads, into the
// current destination. A destination that fails loses those bytes; the
// worker never waits on it.
func (e *errPipe) readLocked(fd uintptr) int {
	for range readBudget {
		n, err := syscall.Read(int(fd), e.buf)
		switch {
		case n > 0:
			_, _ = e.to.Write(e.buf[:n])
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			return drained
		default: // 0 bytes: end of file; or a read error
			return ended
		}
	}
	return more
}

// switchTo takes what the pipe holds now for the current destination, then
// makes w (nil: the idle writer) the destination of what follows.
func (e *errPipe) switchTo(w io.Writer) {
	if w == nil {
		w = e.idle
	}
	take := func(fd uintptr) {
		for turn := 0; turn < maxTakeTurns && e.readLocked(fd) == more; turn++ {
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Control fails only once the pipe is closed: nothing is left to take.
	_ = e.rc.Control(take)
	e.to = w
}

// close ends the pump and closes the read end.
func (e *errPipe) close() {
	_ = e.f.Close()
	<-e.done
}
