// Package tasklog keeps the full stdout and stderr of each task attempt an
// agent runs, in files under one directory per attempt:
//
//	ROOT/JOB/TASK/ATTEMPT/stdout      the live file
//	ROOT/JOB/TASK/ATTEMPT/stdout.1    the bytes before it, after a rotation
//	ROOT/JOB/TASK/ATTEMPT/stdout.base where the live file starts in the stream
//
// and the same for stderr. Each stream is capped: once its live file holds
// half the cap it becomes the ".1" file (replacing the older one) and a new
// live file starts, so the newest bytes are kept, at most the cap. Offsets
// are counted over the whole stream, so a reader that follows a running
// attempt across rotations knows how many bytes it missed.
//
// Small attempts (function calls) are kept in memory while they run and
// then in one pack file per job instead (pack.go).
//
// Files are 0600 and directories 0700: task output may be private. A write
// that fails (disk full) never fails the task: the stream stops keeping
// bytes and remembers the error.
//
// Concurrency: a Store is safe for concurrent use. Its lock guards the set
// of live attempts; each stream has its own lock, held while it writes or
// is read, never while the store's lock is taken.
package tasklog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for zero Config fields.
const (
	// DefaultMaxBytes caps each stream of an attempt.
	DefaultMaxBytes = 64 << 20
	// DefaultMaxAge is how long output is kept when the leader never says
	// its job is gone (a backstop).
	DefaultMaxAge = 7 * 24 * time.Hour
)

// Stream names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// ErrNotFound is returned when the store keeps no output of an attempt.
var ErrNotFound = errors.New("no output kept")

// Key names one attempt of a task.
type Key struct {
	Job, Task string
	Attempt   int32
}

// String writes the key as TASK#ATTEMPT.
func (k Key) String() string { return fmt.Sprintf("%s#%d", k.Task, k.Attempt) }

// Config configures a Store.
type Config struct {
	// Root is the directory that holds every attempt's files; it is made
	// 0700 if missing.
	Root string
	// MaxBytes caps each stream (stdout, stderr) of an attempt; the newest
	// bytes are kept (DefaultMaxBytes when 0).
	MaxBytes int64
	// Now is the clock for age-based removal (default time.Now).
	Now func() time.Time
}

// Store keeps task output on disk. Make one with Open.
type Store struct {
	cfg      Config
	mu       sync.Mutex
	live     map[Key]*Attempt  // attempts being written
	buffered map[Key]*Buffered // small attempts being written (pack.go)

	packMu sync.Mutex
	packs  map[string]map[Key]packed // job -> where its pack holds each attempt; guarded by packMu
}

// Open prepares the root directory and returns a store.
func Open(cfg Config) (*Store, error) {
	if cfg.Root == "" {
		return nil, errors.New("task log store: no root directory")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxBytes < 2 {
		return nil, fmt.Errorf("task log store: cap of %d bytes is too small", cfg.MaxBytes)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("task log store: %w", err)
	}
	if err := os.Chmod(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("task log store: %w", err)
	}
	return &Store{cfg: cfg, live: map[Key]*Attempt{}, buffered: map[Key]*Buffered{}, packs: map[string]map[Key]packed{}}, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.cfg.Root }

// Dir is where an attempt's files are.
func (s *Store) Dir(k Key) string {
	return filepath.Join(s.cfg.Root, escape(k.Job), escape(k.Task), strconv.Itoa(int(k.Attempt)))
}

// Where names where an attempt's output is on disk: its directory, or its
// job's pack when it is kept there (pack.go).
func (s *Store) Where(k Key) string {
	dir := s.Dir(k)
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	s.packMu.Lock()
	path := s.packPath(k.Job)
	_, ok := s.packIndexLocked(k.Job, path)[k]
	s.packMu.Unlock()
	if ok {
		return path
	}
	return dir
}

// escape makes an id one safe path element: bytes other than letters,
// digits, '-', '_' and '.' become %XX, and so does a leading '.'.
func escape(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		safe := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0
		if safe {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "%"
	}
	return b.String()
}

// unescape reverses escape; a malformed name is returned as is.
func unescape(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '%' && i+2 < len(name) {
			if v, err := strconv.ParseUint(name[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(name[i])
	}
	return b.String()
}

// Attempt is the output of one running attempt: write to Stdout and
// Stderr, then Close.
type Attempt struct {
	s              *Store
	key            Key
	Stdout, Stderr *Stream
}

// Create starts keeping an attempt's output; a second run of the same
// attempt starts over.
func (s *Store) Create(k Key) (*Attempt, error) {
	dir := s.Dir(k)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("task log of %s: %w", k, err)
	}
	if err := mkdirs(s.cfg.Root, dir); err != nil {
		return nil, fmt.Errorf("task log of %s: %w", k, err)
	}
	a := &Attempt{s: s, key: k}
	var err error
	if a.Stdout, err = newStream(filepath.Join(dir, Stdout), s.cfg.MaxBytes); err != nil {
		return nil, fmt.Errorf("task log of %s: %w", k, err)
	}
	if a.Stderr, err = newStream(filepath.Join(dir, Stderr), s.cfg.MaxBytes); err != nil {
		a.Stdout.close()
		return nil, fmt.Errorf("task log of %s: %w", k, err)
	}
	s.mu.Lock()
	s.live[k] = a
	s.mu.Unlock()
	return a, nil
}

// mkdirs makes dir and its parents below root, each 0700.
func mkdirs(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	p := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// Close ends the attempt's output: its files stay, readers see its end.
// It returns the first write error either stream met.
func (a *Attempt) Close() error {
	a.s.mu.Lock()
	if a.s.live[a.key] == a {
		delete(a.s.live, a.key)
	}
	a.s.mu.Unlock()
	return errors.Join(a.Stdout.close(), a.Stderr.close())
}

// Chunk is what a read returns.
type Chunk struct {
	// Data starts at Offset in the whole stream; Offset is past the
	// requested offset when rotation dropped the bytes between them.
	Data   []byte
	Offset int64
	// Done is set when the attempt no longer writes and Data reaches the
	// end of the stream.
	Done bool
}

// Read returns up to max bytes of an attempt's stream (Stdout or Stderr)
// from offset on. It returns ErrNotFound when nothing of the attempt is
// kept.
func (s *Store) Read(k Key, stream string, offset int64, max int) (Chunk, error) {
	if stream != Stdout && stream != Stderr {
		return Chunk{}, fmt.Errorf("task log: unknown stream %q", stream)
	}
	s.mu.Lock()
	a, b := s.live[k], s.buffered[k]
	s.mu.Unlock()
	if b != nil {
		if c, ok := b.read(stream, offset, max); ok {
			return c, nil
		}
		s.mu.Lock()
		a = s.live[k] // it has files now
		s.mu.Unlock()
	}
	if a != nil {
		st := a.Stdout
		if stream == Stderr {
			st = a.Stderr
		}
		st.mu.Lock()
		c, err := readFiles(st.path, offset, max)
		st.mu.Unlock()
		if err == nil || !errors.Is(err, ErrNotFound) {
			return c.Chunk, err
		}
		// Closed and removed meanwhile: fall through.
	}
	c, err := readFiles(filepath.Join(s.Dir(k), stream), offset, max)
	if errors.Is(err, ErrNotFound) {
		return s.readPack(k, stream, offset, max)
	}
	if err != nil {
		return Chunk{}, err
	}
	s.mu.Lock()
	stillLive := s.live[k] != nil
	s.mu.Unlock()
	c.Done = !stillLive && c.atEnd
	return c.Chunk, nil
}

// Jobs names the jobs the store keeps output of.
func (s *Store) Jobs() ([]string, error) {
	ents, err := os.ReadDir(s.cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("task logs: %w", err)
	}
	var jobs []string
	for _, e := range ents {
		if e.IsDir() {
			jobs = append(jobs, unescape(e.Name()))
		}
	}
	return jobs, nil
}

// RemoveJobs removes the output of the named jobs, except attempts still
// being written.
func (s *Store) RemoveJobs(jobs []string) error {
	var errs []error
	for _, j := range jobs {
		if s.jobLive(j) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.cfg.Root, escape(j))); err != nil {
			errs = append(errs, err)
		}
		s.forgetPack(j)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove task logs: %w", err)
	}
	return nil
}

// RemoveOlderThan removes the output of jobs none of whose files changed
// within age, and returns the jobs removed.
func (s *Store) RemoveOlderThan(age time.Duration) ([]string, error) {
	jobs, err := s.Jobs()
	if err != nil {
		return nil, err
	}
	cutoff := s.cfg.Now().Add(-age)
	var old []string
	for _, j := range jobs {
		if !s.jobLive(j) && newest(filepath.Join(s.cfg.Root, escape(j))).Before(cutoff) {
			old = append(old, j)
		}
	}
	return old, s.RemoveJobs(old)
}

// newest is the latest modification time of anything under dir.
func newest(dir string) time.Time {
	var t time.Time
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().After(t) {
			t = info.ModTime()
		}
		return nil
	})
	return t
}

func (s *Store) jobLive(job string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.live {
		if k.Job == job {
			return true
		}
	}
	for k := range s.buffered {
		if k.Job == job {
			return true
		}
	}
	return false
}
