package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
)

// FSM adapts state.State to raft.FSM. Apply runs on raft's single FSM
// goroutine; readers take the read lock through Read. The changes each
// entry makes go to the event log (Events), tagged with its raft index.
type FSM struct {
	defaults state.Defaults
	events   *events.Log // appended to on the FSM goroutine only
	// snapshotIndex returns the index of the snapshot a Restore reads (an
	// upper bound; 0 if unknown), for the event log's horizon.
	snapshotIndex func() uint64

	mu         sync.RWMutex
	st         *state.State
	changed    chan struct{} // closed and replaced after every apply
	restoreErr error         // why the last Restore failed, for the start error

	// halt is set (once) when an entry cannot be applied; from then on
	// nothing is applied, and halted is closed.
	halt   error
	halted chan struct{}
}

// NewFSM returns an FSM holding the initial state.
func NewFSM(d state.Defaults) *FSM {
	f := &FSM{defaults: d, st: state.New(d), changed: make(chan struct{}), halted: make(chan struct{})}
	f.setEvents(events.New(events.Options{}))
	return f
}

// setEvents makes l the log of the changes this FSM applies (before it
// applies any). The state keeps only the changes l can hold.
func (f *FSM) setEvents(l *events.Log) {
	f.events = l
	f.recordChanges(f.st)
}

// recordChanges turns st's change records on, as many as the events log
// holds.
func (f *FSM) recordChanges(st *state.State) {
	st.RecordChanges(true)
	st.KeepChanges(f.events.Capacity())
}

// Events is the log of the changes this FSM applied.
func (f *FSM) Events() *events.Log { return f.events }

// ErrHalted wraps the reason an FSM stopped applying.
var ErrHalted = errors.New("state machine halted")

// Halted is closed when the FSM met an entry it cannot apply (one that
// does not decode, or a command this version does not know); Halt says
// why. The FSM applies nothing after it: applying past a lost entry would
// renumber every later job and let this replica diverge from its peers.
func (f *FSM) Halted() <-chan struct{} { return f.halted }

// Halt returns why the FSM halted (nil while it has not).
func (f *FSM) Halt() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.halt
}

// stopLocked halts the FSM for err (under f.mu).
func (f *FSM) stopLocked(err error) {
	if f.halt == nil {
		f.halt = fmt.Errorf("%w: %w", ErrHalted, err)
		close(f.halted)
	}
}

var _ raft.FSM = (*FSM)(nil)

// Apply decodes one log entry and applies it; it returns a *state.Result.
// Apply is deterministic: the entry carries its own time.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	if f.halt != nil {
		f.mu.Unlock()
		return &state.Result{Err: f.halt}
	}
	cmd := &fsmpb.Command{}
	if err := wirecodec.Unmarshal(l.Data, cmd); err != nil { // the generated decoder (fsmpb/fsm_vtproto.pb.go), depth-checked
		f.stopLocked(fmt.Errorf("raft log entry %d (term %d) cannot be decoded: %w", l.Index, l.Term, err))
		f.mu.Unlock()
		return &state.Result{Err: f.halt}
	}
	if cmd.Cmd == nil || len(cmd.ProtoReflect().GetUnknown()) > 0 {
		f.stopLocked(fmt.Errorf("raft log entry %d (term %d) holds a command this version does not know "+
			"(written by a newer version?): %w", l.Index, l.Term, state.ErrUnknownCommand))
		f.mu.Unlock()
		return &state.Result{Err: f.halt}
	}
	r := f.st.Apply(cmd)
	if errors.Is(r.Err, state.ErrUnknownCommand) {
		f.stopLocked(fmt.Errorf("raft log entry %d (term %d): %w", l.Index, l.Term, r.Err))
	}
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	f.events.Append(l.Index, r.Changes)
	close(ch)
	return r
}

// Snapshot takes a copy-on-write view of the state under the lock and
// hands it to raft; Persist writes it outside the lock while Apply goes on
// (raft calls Persist on another goroutine, and Release after it). The
// time the lock is held grows with pools, costs and ACL records and by a
// pointer per agent, not with jobs or tasks: BenchmarkSnapshotHold.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	v, err := f.st.Snapshot()
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	return &fsmSnapshot{f: f, view: v}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := state.ReadSnapshot(rc, f.defaults)
	if err != nil {
		err = fmt.Errorf("restore snapshot: %w", err)
		f.mu.Lock()
		f.restoreErr = err
		f.mu.Unlock()
		return err
	}
	f.recordChanges(st)
	f.mu.Lock()
	f.restoreErr = nil
	f.st = st
	var snapIndex uint64
	if f.snapshotIndex != nil {
		snapIndex = f.snapshotIndex()
	}
	f.events.Reset(snapIndex) // the entries the snapshot covers are not replayed
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	close(ch)
	return nil
}

// RestoreErr returns why the last snapshot restore failed, or nil.
func (f *FSM) RestoreErr() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.restoreErr
}

// Read runs fn with the state under the read lock. fn must not keep
// references to the state's records past its return.
func (f *FSM) Read(fn func(*state.State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Changed returns a channel closed at the next apply.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// fsmSnapshot is a view of the state that raft persists.
type fsmSnapshot struct {
	f    *FSM
	view *state.SnapshotView
}

// Persist streams the view to the sink. It takes no lock: the view's
// records are frozen while it is held.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.view.Persist(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

// bytes writes the view into memory and releases it (for a copy that must
// know its size before it is sent).
func (s *fsmSnapshot) bytes() ([]byte, error) {
	defer s.Release()
	var buf bytes.Buffer
	if err := s.view.Persist(&buf); err != nil {
		return nil, fmt.Errorf("write snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// Release lets Apply change the view's records in place again.
func (s *fsmSnapshot) Release() {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.view.Release()
}
