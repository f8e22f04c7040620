// Package worker runs function calls through worker processes that speak a
// line protocol, so that many small calls share a few process start-ups:
// micro-batching (a worker started for queued calls serves a batch of them
// in turn, then exits) and warm capacity (workers kept alive before the
// calls arrive).
//
// # Protocol
//
// A worker is any executable that reads requests, one JSON object per line,
// on its standard input and writes one response line per request, in order,
// on its standard output:
//
//	→ {"id":"job-7.3/1","args":["5"],"traceparent":"00-4bf9…-00f0…-01"}
//	← {"id":"job-7.3/1","ok":true,"output":"slept 5ms"}
//	← {"id":"job-7.4/1","ok":false,"error":"bad input: ..."}
//
// It exits when its standard input closes. A worker that exits or writes
// garbage mid-call has crashed: the call is reported "lost", which the
// scheduler retries without using a retry, and the next call gets a new
// worker.
//
// A request's "traceparent", when present, is the W3C trace context of the
// call's attempt (what an ordinary task gets as $TRACEPARENT): a worker
// that makes spans or runs tools for the call parents them on it. A
// worker's environment is fixed when it starts, before the calls it will
// serve, so it has no $TRACEPARENT of its own.
//
// # Output
//
// Standard output is the protocol's; standard error is free for logs. What
// a call's output is (Call's Output, which the agent keeps as the attempt's
// stdout and stderr, read by `sched job logs`):
//   - stdout: the "output" of its response, as the worker wrote it, whether
//     the call succeeded or not ("error" is reported apart);
//   - stderr: every byte the worker writes on its standard error from the
//     moment its request line is sent until its response line is read,
//     including what a worker that crashes or is killed mid-call wrote
//     before it died. Bytes written between calls (start-up, idle) go to
//     the pool's Stderr instead; a worker started for a call may write its
//     start-up lines after the request was sent, and they are the call's.
//
// The attribution is exact for a worker that serves one call at a time and
// writes its logs before its response: stderr is read without blocking, and
// at the end of a call everything the pipe holds is taken for that call
// before the next request is sent.
package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Request is one call sent to a worker.
type Request struct {
	ID   string   `json:"id"`
	Args []string `json:"args"`
	// Traceparent is the W3C trace context of the call's attempt ("" when
	// the call has none).
	Traceparent string `json:"traceparent,omitempty"`
}

// Response is a worker's answer to one Request.
type Response struct {
	ID     string `json:"id"`
	OK     bool   `json:"ok"`
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ErrCrashed means the worker process died or broke the protocol.
var ErrCrashed = errors.New("worker crashed")

// maxLine bounds one response line.
const maxLine = 1 << 20

// Process is one running worker.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	errs   *errPipe
	waited chan struct{} // closed once the process exited and its stderr ended
}

// Start starts a worker process from argv with extra environment; its
// standard error goes to the agent's.
func Start(argv []string, env []string) (*Process, error) { return StartAs(argv, env, nil) }

// StartAs is Start with the worker running as cred's user (nil: the
// agent's own).
func StartAs(argv []string, env []string, cred *syscall.Credential) (*Process, error) {
	return start(argv, env, cred, os.Stderr)
}

// start starts a worker whose standard error between calls goes to idle.
func start(argv []string, env []string, cred *syscall.Credential, idle io.Writer) (*Process, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("start worker: empty command")
	}
	errs, errW, err := newErrPipe(idle)
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	fail := func(err error) (*Process, error) {
		errW.Close()
		errs.f.Close()
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fail(fmt.Errorf("start worker: %w", err))
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fail(fmt.Errorf("start worker: %w", err))
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start worker %s: %w", argv[0], err))
	}
	errW.Close() // the worker holds it now: the pipe ends when the worker does
	p := &Process{cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(stdout, 64<<10), errs: errs, waited: make(chan struct{})}
	go errs.pump()
	go func() {
		_ = cmd.Wait()
		// A child the worker left behind may hold its stderr open: give
		// the pipe a moment to end, then stop reading it.
		select {
		case <-errs.done:
		case <-time.After(time.Second):
		}
		errs.close()
		close(p.waited)
	}()
	return p, nil
}

// Call sends one request and waits for its response; stderr (nil: the
// idle writer) receives what the worker writes on its standard error while
// it serves the call. A context that ends first kills the worker (it may be
// stuck in the call) and returns the context's error. A worker that crashed
// is killed and waited for, so that stderr holds what it wrote as it died.
func (p *Process) Call(ctx context.Context, req Request, stderr io.Writer) (Response, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("encode call: %w", err)
	}
	type result struct {
		resp Response
		err  error
	}
	p.errs.switchTo(stderr)
	defer p.errs.switchTo(nil)
	done := make(chan result, 1)
	go func() {
		if _, err := p.stdin.Write(append(line, '\n')); err != nil {
			done <- result{err: fmt.Errorf("%w: write: %v", ErrCrashed, err)}
			return
		}
		data, err := p.out.ReadBytes('\n')
		if err != nil {
			done <- result{err: fmt.Errorf("%w: read: %v", ErrCrashed, err)}
			return
		}
		var resp Response
		if err := json.Unmarshal(data, &resp); err != nil || resp.ID != req.ID {
			done <- result{err: fmt.Errorf("%w: bad response line %.200q", ErrCrashed, data)}
			return
		}
		done <- result{resp: resp}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			p.Kill()
		}
		return r.resp, r.err
	case <-ctx.Done():
		p.Kill()
		<-done
		return Response{}, ctx.Err()
	}
}

// Close ends the worker: it closes its input and waits up to grace for it
// to exit, then kills it.
func (p *Process) Close(grace time.Duration) {
	_ = p.stdin.Close()
	select {
	case <-p.waited:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill kills the worker's process group and waits for it and for the end
// of its standard error.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.waited
}

// Serve runs a worker's side of the protocol: it calls fn for each request
// read from r and writes the responses to w, until r ends. Banyan's own
// functions (`sched fn ...`) use it.
func Serve(r io.Reader, w io.Writer, fn func(args []string) (string, error)) error {
	return ServeRequests(r, w, func(req Request) (string, error) { return fn(req.Args) })
}

// ServeRequests is Serve for a worker that needs the whole request, such as
// its traceparent.
func ServeRequests(r io.Reader, w io.Writer, fn func(Request) (string, error)) error {
	in := bufio.NewScanner(r)
	in.Buffer(make([]byte, 64<<10), maxLine)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for in.Scan() {
		var req Request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return fmt.Errorf("bad request line: %w", err)
		}
		resp := Response{ID: req.ID, OK: true}
		out, err := fn(req)
		resp.Output = out
		if err != nil {
			resp.OK, resp.Error = false, err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			return fmt.Errorf("write response: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write response: %w", err)
		}
	}
	return in.Err()
}
