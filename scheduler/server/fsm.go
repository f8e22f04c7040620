package server

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// FSM adapts state.State to raft.FSM. Apply runs on raft's single FSM
// goroutine; readers take the read lock through Read.
type FSM struct {
	defaults state.Defaults

	mu         sync.RWMutex
	st         *state.State
	changed    chan struct{} // closed and replaced after every apply
	restoreErr error         // why the last Restore failed, for the start error
}

// NewFSM returns an FSM holding the initial state.
func NewFSM(d state.Defaults) *FSM {
	return &FSM{defaults: d, st: state.New(d), changed: make(chan struct{})}
}

var _ raft.FSM = (*FSM)(nil)

// Apply decodes one log entry and applies it; it returns a *state.Result.
// Apply is deterministic: the entry carries its own time.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd := &fsmpb.Command{}
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		return &state.Result{Err: fmt.Errorf("decode log entry %d: %w", l.Index, err)}
	}
	f.mu.Lock()
	r := f.st.Apply(cmd)
	ch := f.changed
	f.changed = make(chan struct{})
	f.mu.Unlock()
	close(ch)
	return r
}

// Snapshot serializes the state under the read lock and hands raft the bytes.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	var buf bytes.Buffer
	f.mu.RLock()
	err := f.st.WriteSnapshot(&buf)
	f.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	return &fsmSnapshot{data: buf.Bytes()}, nil
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
	f.mu.Lock()
	f.restoreErr = nil
	f.st = st
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

type fsmSnapshot struct{ data []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
