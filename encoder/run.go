package encoder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// FFmpeg and FFprobe name the programs the step functions run; they are
// looked up on PATH unless set to a path.
var (
	FFmpeg  = "ffmpeg"
	FFprobe = "ffprobe"
)

// ErrBadInput marks failures caused by the input media itself (corrupt,
// truncated, unsupported) rather than by the machine; retrying will not help.
var ErrBadInput = errors.New("bad input media")

// ErrVerifyFailed marks outputs that were checked against the source and
// found wrong: the same inputs would give the same outputs again.
var ErrVerifyFailed = errors.New("verification failed")

// ToolError is a failed ffmpeg/ffprobe run. Reason holds the last lines the
// tool wrote to stderr, which is usually its own explanation.
type ToolError struct {
	Tool   string
	Reason string
	Err    error
}

// Error implements error.
func (e *ToolError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%s: %v", e.Tool, e.Err)
	}
	return fmt.Sprintf("%s: %s (%v)", e.Tool, e.Reason, e.Err)
}

// Unwrap returns the underlying process error.
func (e *ToolError) Unwrap() error { return e.Err }

// tailLines returns the last n non-empty lines of b joined with "; ".
func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append([]string{l}, keep...)
		}
	}
	return strings.Join(keep, "; ")
}

// runTool runs one program with an argument list and returns its stdout and
// stderr. A failure is a *ToolError carrying the stderr tail.
func runTool(ctx context.Context, tool string, args []string) (stdout, stderr []byte, err error) {
	return runToolIn(ctx, "", tool, args)
}

// runToolIn is runTool in working directory dir ("" for the current one).
func runToolIn(ctx context.Context, dir, tool string, args []string) (stdout, stderr []byte, err error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout = &o
	cmd.Stderr = &e
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return o.Bytes(), e.Bytes(), fmt.Errorf("%s: %w", tool, ctx.Err())
		}
		return o.Bytes(), e.Bytes(), &ToolError{Tool: tool, Reason: tailLines(e.Bytes(), 4), Err: err}
	}
	return o.Bytes(), e.Bytes(), nil
}

// fileArg turns a path into an ffmpeg/ffprobe URL that cannot be read as an
// option or as another protocol ("-x", "concat:..", "http://..").
func fileArg(p string) string { return "file:" + p }

// validPath rejects paths that cannot be passed safely.
func validPath(what, p string) error {
	if p == "" {
		return fmt.Errorf("%s: empty path", what)
	}
	if strings.ContainsAny(p, "\x00\n\r") {
		return fmt.Errorf("%s: path %q has control characters", what, p)
	}
	return nil
}

func strictJSON(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
