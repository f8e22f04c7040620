package worker

import (
	"container/heap"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// Call is one queued function call.
type Call struct {
	ID   string
	Args []string
	// Class and Priority order the queue: lower class first (latency=1),
	// then higher priority, then arrival.
	Class    int32
	Priority int32
	// Timeout bounds the call (0 = none).
	Timeout time.Duration
	// Traceparent is the W3C trace context sent with the call ("" = none).
	Traceparent string
	// Started is called when a worker takes the call; the Output it
	// returns receives the call's output (zero: none is kept). Done is
	// called when the call ends, after its output was written.
	Started func() Output
	Done    func(Result)
}

// Output is where a call's output goes (see the package doc for what it
// is): Stdout gets its response's output, Stderr what the worker writes on
// its standard error while it serves the call. A nil writer keeps nothing.
type Output struct {
	Stdout, Stderr io.Writer
}

// Outcome values of a Result, matching the agent's task outcomes.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeTimeout   = "timeout"
	OutcomeLost      = "lost" // the worker crashed: retried without using a retry
)

// Result is how a call ended.
type Result struct {
	Outcome string
	Output  string
	Error   string
	// Warm reports whether a worker that already existed served the call.
	Warm bool
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Name is the function's name (for logs).
	Name string
	// Command starts one worker.
	Command []string
	// Env is added to each worker's environment.
	Env []string
	// MaxWorkers bounds the workers running at once (default 64).
	MaxWorkers int
	// BatchTarget is how many queued calls justify one more worker
	// (default 10): 100 queued calls start 10 workers of about 10 calls.
	BatchTarget int
	// MaxBatch is how many calls a worker that is not warm serves before it
	// exits, so batches stay bounded (default 100).
	MaxBatch int
	// Credential, when set, is the user workers run as.
	Credential *syscall.Credential
	// Stderr receives what workers write on their standard error outside
	// calls (default os.Stderr).
	Stderr io.Writer
	// Logger receives the pool's logs.
	Logger *slog.Logger
}

// Pool runs one function's calls through its workers. Calls wait in a
// priority queue; a worker always takes the most urgent call next, so a
// batch never holds back a more important call that arrives meanwhile.
type Pool struct {
	cfg PoolConfig
	log *slog.Logger

	mu      sync.Mutex
	queue   callQueue
	seq     uint64
	workers int // running worker goroutines
	warm    int // target of warm workers (kept alive while idle)
	idle    int // warm workers waiting for a call
	wake    *sync.Cond
	closed  bool
	wg      sync.WaitGroup
}

// NewPool returns a pool with no workers; they start as calls arrive, or
// with SetWarm.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 64
	}
	if cfg.BatchTarget <= 0 {
		cfg.BatchTarget = 10
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	p := &Pool{cfg: cfg, log: cfg.Logger.With("function", cfg.Name)}
	p.wake = sync.NewCond(&p.mu)
	return p
}

// Submit queues a call and starts a worker if the queue calls for one.
func (p *Pool) Submit(c Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		go c.Done(Result{Outcome: OutcomeLost, Error: "agent shutting down"})
		return
	}
	p.seq++
	heap.Push(&p.queue, &queued{call: c, seq: p.seq})
	p.wake.Signal()
	p.growLocked()
}

// SetWarm sets how many workers to keep alive while idle, starting them now.
func (p *Pool) SetWarm(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.warm = min(max(n, 0), p.cfg.MaxWorkers)
	for p.workers < p.warm && !p.closed {
		p.startLocked(true)
	}
	p.wake.Broadcast() // surplus warm workers notice and exit
}

// Stats returns the running workers and the queued calls.
func (p *Pool) Stats() (workers, queued int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers, p.queue.Len()
}

// Close stops taking calls, fails the queued ones as lost, and stops the
// workers once their current call ends.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var dropped []Call
	for p.queue.Len() > 0 {
		dropped = append(dropped, heap.Pop(&p.queue).(*queued).call)
	}
	p.wake.Broadcast()
	p.mu.Unlock()
	for _, c := range dropped {
		c.Done(Result{Outcome: OutcomeLost, Error: "agent shutting down"})
	}
	p.wg.Wait()
}

// growLocked starts workers while more than BatchTarget calls wait per
// worker: queue depth decides the batch size.
func (p *Pool) growLocked() {
	for !p.closed && p.workers < p.cfg.MaxWorkers && (p.workers == 0 || p.queue.Len() > p.workers*p.cfg.BatchTarget) {
		if p.queue.Len() == 0 {
			return
		}
		p.startLocked(false)
	}
}

func (p *Pool) startLocked(warm bool) {
	p.workers++
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.run(warm)
	}()
}

// run is one worker's life: start the process, serve calls, exit when the
// queue is empty (or the batch is full) unless it is needed warm.
func (p *Pool) run(warm bool) {
	proc, err := p.start()
	if err != nil {
		p.log.Warn("worker did not start", "err", err)
		p.failQueued(err)
		return
	}
	defer func() {
		if proc != nil {
			proc.Close(2 * time.Second)
		}
		p.mu.Lock()
		p.workers--
		p.growLocked() // calls may have arrived while this worker exited
		p.mu.Unlock()
	}()
	for served := 0; ; served++ {
		c, ok := p.next(served)
		if !ok {
			return
		}
		if proc == nil { // the last call crashed the worker: replace it
			if proc, err = p.start(); err != nil {
				finish(c, Result{Outcome: OutcomeFailed, Error: err.Error()})
				return
			}
		}
		var out Output
		if c.Started != nil {
			out = c.Started()
		}
		res := p.call(proc, c, out)
		res.Warm = warm || served > 0
		if res.Outcome == OutcomeLost || res.Outcome == OutcomeTimeout {
			proc.Kill()
			proc = nil
		}
		finish(c, res)
	}
}

// start starts one worker process.
func (p *Pool) start() (*Process, error) {
	return start(p.cfg.Command, p.cfg.Env, p.cfg.Credential, p.cfg.Stderr)
}

// failQueued fails every queued call when no worker can start, and forgets
// the worker that tried.
func (p *Pool) failQueued(err error) {
	p.mu.Lock()
	p.workers--
	var failed []Call
	for p.queue.Len() > 0 {
		failed = append(failed, heap.Pop(&p.queue).(*queued).call)
	}
	p.mu.Unlock()
	for _, c := range failed {
		finish(c, Result{Outcome: OutcomeFailed, Error: err.Error()})
	}
}

func finish(c Call, r Result) {
	if c.Done != nil {
		c.Done(r)
	}
}

// call runs c on proc and writes its output to out.
func (p *Pool) call(proc *Process, c Call, out Output) Result {
	ctx := context.Background()
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	resp, err := proc.Call(ctx, Request{ID: c.ID, Args: c.Args, Traceparent: c.Traceparent}, out.Stderr)
	if out.Stdout != nil && resp.Output != "" {
		// A store that fails keeps less; the call's result is unchanged.
		_, _ = io.WriteString(out.Stdout, resp.Output)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Result{Outcome: OutcomeTimeout, Error: "call timed out after " + c.Timeout.String()}
	case err != nil:
		p.log.Warn("worker crashed; the call will be retried", "call", c.ID, "err", err)
		return Result{Outcome: OutcomeLost, Error: err.Error()}
	case !resp.OK:
		return Result{Outcome: OutcomeFailed, Output: resp.Output, Error: resp.Error}
	}
	return Result{Outcome: OutcomeSucceeded, Output: resp.Output}
}

// next waits for the most urgent call. A warm worker (or any worker while
// there are fewer than the warm target) waits idle for calls; others exit
// when the queue is empty or their batch is full.
func (p *Pool) next(served int) (Call, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.closed {
			return Call{}, false
		}
		keep := p.workers <= p.warm
		if p.queue.Len() > 0 && (keep || served < p.cfg.MaxBatch) {
			return heap.Pop(&p.queue).(*queued).call, true
		}
		if !keep {
			return Call{}, false
		}
		p.idle++
		p.wake.Wait()
		p.idle--
	}
}

// queued is a call in the priority queue.
type queued struct {
	call Call
	seq  uint64
}

// callQueue orders calls by class, then priority (higher first), then
// arrival.
type callQueue []*queued

func (q callQueue) Len() int { return len(q) }
func (q callQueue) Less(i, j int) bool {
	a, b := q[i], q[j]
	if a.call.Class != b.call.Class {
		return a.call.Class < b.call.Class
	}
	if a.call.Priority != b.call.Priority {
		return a.call.Priority > b.call.Priority
	}
	return a.seq < b.seq
}
func (q callQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *callQueue) Push(x any)   { *q = append(*q, x.(*queued)) }
func (q *callQueue) Pop() any {
	old := *q
	n := len(old)
	it := old[n-1]
	*q = old[:n-1]
	return it
}
