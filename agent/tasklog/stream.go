package tasklog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Stream is one capped, rotated output file of an attempt. It is an
// io.Writer that never fails: after a write error it keeps nothing more,
// and Err says why.
type Stream struct {
	path string
	half int64 // the live file rotates when it holds this many bytes

	mu   sync.Mutex
	f    *os.File
	size int64 // bytes in the live file
	base int64 // where the live file starts in the stream
	err  error
}

func newStream(path string, max int64) (*Stream, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &Stream{path: path, half: max / 2, f: f}, nil
}

// Write appends p, rotating as the cap asks. It always reports success:
// a task never fails because its output could not be kept.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	if s.half > 0 && int64(len(p)) > 2*s.half {
		// Only the last bytes can be kept: account for the rest as written.
		skip := int64(len(p)) - 2*s.half
		s.skipLocked(skip)
		p = p[skip:]
	}
	for len(p) > 0 && s.err == nil {
		if s.size >= s.half {
			s.rotateLocked()
			continue
		}
		k := min(int64(len(p)), s.half-s.size)
		w, err := s.f.Write(p[:k])
		s.size += int64(w)
		if err != nil {
			s.err = fmt.Errorf("write %s: %w", s.path, err)
		}
		p = p[k:]
	}
	return n, nil
}

// skipLocked counts n bytes as written without keeping them: the live file
// and its predecessor are dropped, and the stream goes on at base+size+n.
func (s *Stream) skipLocked(n int64) {
	s.rotateLocked()
	s.rotateLocked()
	s.base += n
	s.writeBaseLocked()
}

// rotateLocked makes the live file the ".1" file and starts a new one.
func (s *Stream) rotateLocked() {
	if s.err != nil {
		return
	}
	if err := s.f.Close(); err != nil {
		s.err = fmt.Errorf("close %s: %w", s.path, err)
		return
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		s.err = fmt.Errorf("rotate %s: %w", s.path, err)
		return
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		s.err = fmt.Errorf("rotate %s: %w", s.path, err)
		return
	}
	s.f, s.base, s.size = f, s.base+s.size, 0
	s.writeBaseLocked()
}

func (s *Stream) writeBaseLocked() {
	if s.err != nil {
		return
	}
	if err := os.WriteFile(s.path+".base", []byte(strconv.FormatInt(s.base, 10)), 0o600); err != nil {
		s.err = fmt.Errorf("rotate %s: %w", s.path, err)
	}
}

// Err is the first write error, if any.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Stream) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		if err := s.f.Close(); err != nil && s.err == nil {
			s.err = fmt.Errorf("close %s: %w", s.path, err)
		}
		s.f = nil
	}
	return s.err
}

// files is a stream's kept bytes on disk: .1 holds [start, base), the
// live file [base, end).
type files struct{ start, base, end int64 }

func stat(path string) (files, error) {
	live, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return files{}, ErrNotFound
		}
		return files{}, err
	}
	var fs files
	if b, err := os.ReadFile(path + ".base"); err == nil {
		fs.base, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	fs.start, fs.end = fs.base, fs.base+live.Size()
	if old, err := os.Stat(path + ".1"); err == nil {
		fs.start = max(fs.base-old.Size(), 0)
	}
	return fs, nil
}

// chunk is Chunk with whether the read reached the end of the files.
type chunk struct {
	Chunk
	atEnd bool
}

// readFiles reads up to max bytes of the stream at path from offset on.
func readFiles(path string, offset int64, max int) (chunk, error) {
	fs, err := stat(path)
	if err != nil {
		return chunk{}, err
	}
	offset = min(maxInt64(offset, fs.start), fs.end)
	out := chunk{Chunk: Chunk{Offset: offset}}
	buf := make([]byte, 0, min(int64(max), fs.end-offset))
	if offset < fs.base {
		buf, err = readAt(path+".1", offset-fs.start, min(int64(max), fs.base-offset), buf)
		if err != nil {
			return chunk{}, err
		}
	}
	if rest := int64(max) - int64(len(buf)); rest > 0 {
		from := offset + int64(len(buf)) - fs.base
		buf, err = readAt(path, from, min(rest, fs.end-fs.base-from), buf)
		if err != nil {
			return chunk{}, err
		}
	}
	out.Data = buf
	out.atEnd = offset+int64(len(buf)) >= fs.end
	return out, nil
}

func maxInt64(a, b int64) int64 { return max(a, b) }

// readAt appends up to n bytes of the file at path from off to buf.
func readAt(path string, off, n int64, buf []byte) ([]byte, error) {
	if n <= 0 {
		return buf, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return buf, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	start := len(buf)
	buf = buf[:start+int(n)]
	got, err := f.ReadAt(buf[start:], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return buf[:start], fmt.Errorf("read %s: %w", path, err)
	}
	return buf[:start+got], nil
}
