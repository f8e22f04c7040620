package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Submissions that arrive while earlier ones are being committed are merged
// into one raft entry (group commit on the leader). An ingest system submits
// one job per call from many clients at once; each call as an entry of its
// own pays raft's per-entry costs (encoding, replication, an FSM apply
// under the lock, the event ring) once per job. While an entry is being
// committed, the calls that arrive wait in a queue and leave together when
// it has, one entry per submitter, so a lone call is proposed at once and a
// crowd is proposed in a few entries: the batch grows with the load and the
// commit's round trip sets the pace. Only an entry of at least
// submitPipelineJobs jobs (a bulk call, or a crowd that large) may be
// proposed while others are in flight, at most submitInFlight of them:
// such an entry has its per-entry costs paid already, and raft pipelines
// it.
//
// With 64 clients submitting one job per call to a 3-server cluster, one
// small entry in flight made entries of about 26 jobs and acknowledged
// 22-27% more than four in flight (about 9 jobs each), with lower p50 and
// p99: fewer entries means fewer raft writes, fsyncs and FSM applies on
// every server. Bulk calls of 1,000 jobs, one entry each, lost a tenth of
// their rate with one in flight; pipelined, they do not (banyan-bench
// -only submission,placement, interleaved A/B runs).
//
// A merged entry is all or nothing in Apply (one bad job rejects the
// batch). Every call is validated before it is queued, so a rejection is a
// race (a pool removed meanwhile); the batcher then proposes each call of
// the failed entry on its own, so that only the call at fault fails.
const (
	submitInFlight = 4
	// submitPipelineJobs is the size from which an entry does not wait
	// for the entries in flight.
	submitPipelineJobs = 256
	// submitMaxJobs bounds the jobs of one merged entry.
	submitMaxJobs = 1024
	// submitQueue bounds the calls waiting for a slot; more block their
	// callers (backpressure) until the queue drains.
	submitQueue = 4096
)

// submitOutcome is what one call gets back: its own jobs of the entry's
// result, in the order it submitted them.
type submitOutcome struct {
	jobs     []*pb.Job
	existing []bool
	err      error
}

// submitCall is one SubmitJobs call waiting to be committed.
type submitCall struct {
	sub   *fsmpb.SubmitJobs
	size  int
	tasks int64              // arrays counted expanded
	done  chan submitOutcome // buffered: the batcher never blocks on it
}

// submitBatcher merges concurrent submissions into shared raft entries.
type submitBatcher struct {
	// propose commits one command: the error is what kept it from
	// committing, Result.Err is Apply's own decision (Server.propose).
	propose func(*fsmpb.Command) (*state.Result, error)
	// applied is told of every command that took effect (the leader's
	// afterApply).
	applied  func(*state.Result)
	maxBytes int // of one merged entry's jobs
	in       chan *submitCall
	stopped  chan struct{} // closed when run has returned
	// waiting counts the calls of the batch that waits for the entries
	// in flight (taken off in, not yet proposed).
	waiting atomic.Int32
}

func newSubmitBatcher(propose func(*fsmpb.Command) (*state.Result, error), applied func(*state.Result), maxBytes int) *submitBatcher {
	return &submitBatcher{propose: propose, applied: applied, maxBytes: maxBytes, in: make(chan *submitCall, submitQueue),
		stopped: make(chan struct{})}
}

// submit queues one call's jobs and waits for their commit. A cancelled
// ctx stops the wait, not the commit: jobs already queued may still be
// submitted.
func (b *submitBatcher) submit(ctx context.Context, sub *fsmpb.SubmitJobs) ([]*pb.Job, []bool, error) {
	c := &submitCall{sub: sub, size: sub.SizeVT(), tasks: taskarray.JobTasks(sub.Jobs), done: make(chan submitOutcome, 1)}
	select {
	case b.in <- c:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-b.stopped:
		return nil, nil, errBatcherStopped
	}
	select {
	case o := <-c.done:
		return o.jobs, o.existing, o.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-b.stopped:
		// Answered by run on its way out, unless it had drained the
		// queue before this call arrived.
		select {
		case o := <-c.done:
			return o.jobs, o.existing, o.err
		default:
			return nil, nil, errBatcherStopped
		}
	}
}

// run proposes batches until ctx ends; it owns the commits it starts and
// waits for them before it returns. Calls still queued then get
// errBatcherStopped.
func (b *submitBatcher) run(ctx context.Context) {
	slots := make(chan struct{}, submitInFlight)
	freed := make(chan struct{}, 1) // a commit ended: a waiting batch may go
	var held *submitCall            // a call that did not fit in the last batch
	defer close(b.stopped)
	defer func() {
		for range cap(slots) { // wait for the commits in flight
			slots <- struct{}{}
		}
		if held != nil {
			held.done <- submitOutcome{err: errBatcherStopped}
		}
		for {
			select {
			case c := <-b.in:
				c.done <- submitOutcome{err: errBatcherStopped}
			default:
				return
			}
		}
	}()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		first := held
		held = nil
		if first == nil {
			select {
			case first = <-b.in:
			case <-ctx.Done():
				<-slots
				return
			}
		}
		batch := []*submitCall{first}
		jobs, size, tasks := len(first.sub.Jobs), first.size, first.tasks
		full := false
		add := func(c *submitCall) {
			// An entry stays within what one call may make, so that
			// merging never turns valid calls into a rejected entry.
			if jobs+len(c.sub.Jobs) > submitMaxJobs || size+c.size > b.maxBytes || tasks+c.tasks > limits.SubmitTasks {
				held, full = c, true
				return
			}
			batch = append(batch, c)
			jobs, size, tasks = jobs+len(c.sub.Jobs), size+c.size, tasks+c.tasks
		}
		// gather takes what is queued now, without waiting.
		gather := func() {
			for !full && jobs < submitMaxJobs && size < b.maxBytes {
				select {
				case c := <-b.in:
					add(c)
				default:
					return
				}
			}
		}
		gather()
		// A small batch waits, growing, until the entries in flight have
		// committed (len(slots) counts this one too).
		b.waiting.Store(int32(len(batch)))
		for !full && jobs < submitPipelineJobs && len(slots) > 1 {
			select {
			case c := <-b.in:
				add(c)
				b.waiting.Store(int32(len(batch)))
			case <-freed:
			case <-ctx.Done():
				for _, c := range batch {
					c.done <- submitOutcome{err: errBatcherStopped}
				}
				<-slots
				return
			}
		}
		// The wait's select picks at random between a freed slot and a
		// queued call: take every call queued by now along.
		gather()
		b.waiting.Store(0)
		go func() {
			defer func() {
				<-slots
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
			// An entry records one submitter: one entry per submitter,
			// proposed together (raft appends them in one write).
			groups := bySubmitter(batch)
			if len(groups) == 1 {
				b.commit(groups[0])
				return
			}
			var wg sync.WaitGroup
			for _, g := range groups {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b.commit(g)
				}()
			}
			wg.Wait()
		}()
	}
}

// bySubmitter splits a batch by submitter, keeping each one's calls in
// their order.
func bySubmitter(batch []*submitCall) [][]*submitCall {
	var groups [][]*submitCall
next:
	for _, c := range batch {
		for i, g := range groups {
			if proto.Equal(g[0].sub.Submitter, c.sub.Submitter) {
				groups[i] = append(g, c)
				continue next
			}
		}
		groups = append(groups, []*submitCall{c})
	}
	return groups
}

// errBatcherStopped answers calls queued when the server stops.
var errBatcherStopped = status.Error(codes.Unavailable, "server is shutting down")

// commit proposes a batch as one entry and hands each call its share of
// the result. When Apply rejects a batch of several calls, each is proposed
// again on its own, so that only the call at fault fails; an entry that did
// not commit fails every call of it.
func (b *submitBatcher) commit(batch []*submitCall) {
	if len(batch) == 1 {
		batch[0].done <- b.commitOne(batch[0].sub)
		return
	}
	merged := &fsmpb.SubmitJobs{Submitter: batch[0].sub.Submitter}
	for _, c := range batch {
		merged.Jobs = append(merged.Jobs, c.sub.Jobs...)
		merged.TraceIds = append(merged.TraceIds, padded(c.sub.TraceIds, len(c.sub.Jobs))...)
		merged.TraceSpanIds = append(merged.TraceSpanIds, padded(c.sub.TraceSpanIds, len(c.sub.Jobs))...)
	}
	r, err := b.propose(submitCommand(merged))
	if err != nil {
		for _, c := range batch {
			c.done <- submitOutcome{err: statusOf(err)}
		}
		return
	}
	if r.Err != nil {
		for _, c := range batch {
			c.done <- b.commitOne(c.sub)
		}
		return
	}
	b.applied(r)
	if len(r.Jobs) != len(merged.Jobs) || len(r.Existing) != len(merged.Jobs) {
		err := statusOf(fmt.Errorf("a submit of %d jobs applied %d", len(merged.Jobs), len(r.Jobs)))
		for _, c := range batch {
			c.done <- submitOutcome{err: err}
		}
		return
	}
	at := 0
	for _, c := range batch {
		n := len(c.sub.Jobs)
		c.done <- submitOutcome{jobs: r.Jobs[at : at+n], existing: r.Existing[at : at+n]}
		at += n
	}
}

func (b *submitBatcher) commitOne(sub *fsmpb.SubmitJobs) submitOutcome {
	r, err := b.propose(submitCommand(sub))
	if err == nil {
		err = r.Err
	}
	if err != nil {
		return submitOutcome{err: statusOf(err)}
	}
	b.applied(r)
	return submitOutcome{jobs: r.Jobs, existing: r.Existing}
}

// padded is ids with "" added up to n entries: a merged entry's ids stay
// aligned with its jobs when one call carried fewer ids than jobs.
func padded(ids []string, n int) []string {
	if len(ids) >= n {
		return ids[:n]
	}
	out := make([]string, n)
	copy(out, ids)
	return out
}

// submitCommand is the raft entry of a submission. An entry holding an
// array (a task spec with a count) says so, in a field that a server older
// than counts does not know: it stops at the entry rather than apply each
// array as one task (rolling upgrades replace the leader last). One whose
// after lists name arrays says that in another field, for a server that
// expands counts but would refuse such a job.
func submitCommand(sub *fsmpb.SubmitJobs) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: sub}, TaskCounts: taskarray.InJobs(sub.Jobs),
		ArrayAfter: taskarray.ResolvesAfterInJobs(sub.Jobs)}
}
