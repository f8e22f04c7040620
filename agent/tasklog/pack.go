package tasklog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Small attempts: function calls served by workers are many and short
// (micro-batching runs thousands a second), and making a directory and two
// files for each costs more than the call; the same holds for most process
// tasks of a farm, which write little (the agent keeps every attempt's
// output this way; a pack is named for the calls it first held). A
// Buffered attempt keeps its
// output in memory while it runs; when it ends, output of at most the
// buffer's limit is appended as one record to its job's pack file,
//
//	ROOT/JOB/~calls   records: a JSON header line, then stdout, then stderr
//
// and read from there. An attempt that writes more than the limit becomes
// an ordinary one (its own files, capped and rotated) and keeps writing
// there. Readers see no difference: Read finds an attempt in memory, in its
// files or in its job's pack, in that order. The pack is removed with its
// job. "~" never starts an escaped id, so the pack cannot collide with a
// task's directory.
//
// Concurrency: a Buffered has its own lock for its bytes; the store's
// packMu guards the pack index and the appends, and is never held while
// the store's lock is taken.

// PackName is the name of a job's pack file (it holds the small output
// of every kind of attempt; the name stays so that agents find the packs
// they wrote before).
const PackName = "~calls"

// DefaultBufferedLimit is the most output a Buffered keeps in memory
// before it becomes an ordinary attempt.
const DefaultBufferedLimit = 64 << 10

// packHeader starts one record of a pack.
type packHeader struct {
	Task    string `json:"task"`
	Attempt int32  `json:"attempt"`
	Stdout  int64  `json:"stdout"`
	Stderr  int64  `json:"stderr"`
}

// packed is where an attempt's output is in its job's pack.
type packed struct {
	off            int64 // of its stdout; its stderr follows
	stdout, stderr int64
}

// Buffered is the output of one running attempt, kept in memory until it
// ends or outgrows its limit. Write through Stdout and Stderr, then Close.
type Buffered struct {
	s     *Store
	key   Key
	limit int

	mu       sync.Mutex
	out, err []byte
	files    *Attempt // set once the output outgrew the limit
	failed   error    // making the files failed: later bytes are dropped
	closed   bool     // its output is in its pack (or files) now
}

// CreateBuffered starts keeping an attempt's output in memory; limit
// bounds what is kept there (DefaultBufferedLimit when 0; never more than
// the store's cap, so a pack record is within it too). Nothing is written
// to disk until it ends or outgrows limit.
func (s *Store) CreateBuffered(k Key, limit int) *Buffered {
	if limit <= 0 {
		limit = DefaultBufferedLimit
	}
	limit = int(min(int64(limit), s.cfg.MaxBytes))
	b := &Buffered{s: s, key: k, limit: limit}
	s.mu.Lock()
	s.buffered[k] = b
	s.mu.Unlock()
	return b
}

// Stdout is the writer of the attempt's standard output.
func (b *Buffered) Stdout() io.Writer { return bufferedStream{b, false} }

// Stderr is the writer of the attempt's standard error.
func (b *Buffered) Stderr() io.Writer { return bufferedStream{b, true} }

type bufferedStream struct {
	b      *Buffered
	stderr bool
}

// Write keeps p; like a Stream, it always reports success.
func (w bufferedStream) Write(p []byte) (int, error) {
	b := w.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.files == nil && b.failed == nil && len(b.out)+len(b.err)+len(p) > b.limit {
		b.spillLocked()
	}
	switch {
	case b.files != nil && w.stderr:
		return b.files.Stderr.Write(p)
	case b.files != nil:
		return b.files.Stdout.Write(p)
	case b.failed != nil:
	case w.stderr:
		b.err = append(b.err, p...)
	default:
		b.out = append(b.out, p...)
	}
	return len(p), nil
}

// spillLocked makes the attempt an ordinary one and moves what it kept
// there.
func (b *Buffered) spillLocked() {
	a, err := b.s.Create(b.key)
	if err != nil {
		b.failed = err
		b.out, b.err = nil, nil
		return
	}
	_, _ = a.Stdout.Write(b.out)
	_, _ = a.Stderr.Write(b.err)
	b.files, b.out, b.err = a, nil, nil
}

// read reads the attempt's stream while it is in memory; ok is false once
// it has files.
func (b *Buffered) read(stream string, offset int64, max int) (c Chunk, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.files != nil || b.closed {
		return Chunk{}, false
	}
	data := b.out
	if stream == Stderr {
		data = b.err
	}
	return sliceChunk(data, offset, max), true
}

// sliceChunk is the chunk of data from offset on, at most max bytes.
func sliceChunk(data []byte, offset int64, max int) Chunk {
	offset = min(max64(offset, 0), int64(len(data)))
	end := min(offset+int64(max), int64(len(data)))
	return Chunk{Data: append([]byte(nil), data[offset:end]...), Offset: offset}
}

func max64(a, b int64) int64 { return max(a, b) }

// Close ends the attempt's output: kept in memory, it is appended to its
// job's pack; with files, they are closed. It returns the first error met.
func (b *Buffered) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	switch {
	case b.files != nil:
		err = b.files.Close()
	case b.failed != nil:
		err = fmt.Errorf("task log of %s: %w", b.key, b.failed)
	default:
		err = b.s.appendPack(b.key, b.out, b.err)
	}
	b.closed = true
	b.s.mu.Lock()
	if b.s.buffered[b.key] == b {
		delete(b.s.buffered, b.key)
	}
	b.s.mu.Unlock()
	b.out, b.err = nil, nil
	return err
}

// packPath is the pack file of a job.
func (s *Store) packPath(job string) string {
	return filepath.Join(s.cfg.Root, escape(job), PackName)
}

// appendPack appends one attempt's output to its job's pack.
func (s *Store) appendPack(k Key, stdout, stderr []byte) error {
	head, err := json.Marshal(packHeader{Task: k.Task, Attempt: k.Attempt, Stdout: int64(len(stdout)), Stderr: int64(len(stderr))})
	if err != nil {
		return fmt.Errorf("task log of %s: %w", k, err)
	}
	rec := make([]byte, 0, len(head)+1+len(stdout)+len(stderr))
	rec = append(append(append(append(rec, head...), '\n'), stdout...), stderr...)
	s.packMu.Lock()
	defer s.packMu.Unlock()
	path := s.packPath(k.Job)
	if err := mkdirs(s.cfg.Root, filepath.Dir(path)); err != nil {
		return fmt.Errorf("task log of %s: %w", k, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("task log of %s: %w", k, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("task log of %s: %w", k, err)
	}
	if _, err := f.Write(rec); err != nil {
		return fmt.Errorf("task log of %s: %w", k, err)
	}
	idx := s.packIndexLocked(k.Job, path)
	idx[k] = packed{off: info.Size() + int64(len(head)) + 1, stdout: int64(len(stdout)), stderr: int64(len(stderr))}
	return nil
}

// packIndexLocked returns the index of a job's pack, reading the pack the
// first time (after a restart, the index is rebuilt from the file).
func (s *Store) packIndexLocked(job, path string) map[Key]packed {
	if idx, ok := s.packs[job]; ok {
		return idx
	}
	idx := map[Key]packed{}
	s.packs[job] = idx
	f, err := os.Open(path)
	if err != nil {
		return idx
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return idx // the end, or a record cut short: ignore it
		}
		var h packHeader
		if json.Unmarshal(line, &h) != nil || h.Stdout < 0 || h.Stderr < 0 {
			return idx
		}
		off += int64(len(line))
		if _, err := r.Discard(int(h.Stdout + h.Stderr)); err != nil {
			return idx
		}
		idx[Key{Job: job, Task: h.Task, Attempt: h.Attempt}] = packed{off: off, stdout: h.Stdout, stderr: h.Stderr}
		off += h.Stdout + h.Stderr
	}
}

// readPack reads an ended attempt's stream from its job's pack.
func (s *Store) readPack(k Key, stream string, offset int64, max int) (Chunk, error) {
	s.packMu.Lock()
	path := s.packPath(k.Job)
	p, ok := s.packIndexLocked(k.Job, path)[k]
	s.packMu.Unlock()
	if !ok {
		return Chunk{}, ErrNotFound
	}
	off, n := p.off, p.stdout
	if stream == Stderr {
		off, n = p.off+p.stdout, p.stderr
	}
	offset = min(max64(offset, 0), n)
	buf, err := readAt(path, off+offset, min(int64(max), n-offset), make([]byte, 0, min(int64(max), n-offset)))
	if errors.Is(err, os.ErrNotExist) {
		return Chunk{}, ErrNotFound // removed meanwhile
	}
	if err != nil {
		return Chunk{}, err
	}
	return Chunk{Data: buf, Offset: offset, Done: offset+int64(len(buf)) >= n}, nil
}

// forgetPack drops a removed job's pack index.
func (s *Store) forgetPack(job string) {
	s.packMu.Lock()
	delete(s.packs, job)
	s.packMu.Unlock()
}
