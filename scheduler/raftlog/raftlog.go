// Package raftlog routes hclog lines (hashicorp/raft's own log) through a
// log/slog logger, so that raft's lines share the process's handler,
// format (text or JSON) and level with every other line.
//
// New returns an hclog.Logger backed by a *slog.Logger. A line passes when
// both its hclog level (at least the adapter's minimum) and the slog
// handler let it through. A line carries the attribute "logger" (the
// hclog name) and its hclog key/values in a group named after the root
// logger ("raft": {"term": 2, ...}), so that they never collide with the
// slog logger's own attributes (raft's "node" is not the server's "node").
// Values that are fmt.Stringers or errors are logged as their strings. Loggers are safe for concurrent use; SetLevel
// changes the minimum of the logger it is called on and of every logger
// derived from it.
package raftlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level hclog's Trace lines get: below Debug.
const LevelTrace = slog.LevelDebug - 4

// Logger is an hclog.Logger that writes through a slog.Logger.
type Logger struct {
	sl    *slog.Logger
	group string // the root name: hclog args go in this group
	name  string
	min   *atomic.Int32 // hclog.Level, shared with derived loggers
	args  []any
	attrs []any // args as given to slog (hclog.Format rendered)
}

var _ hclog.Logger = (*Logger)(nil)

// New returns a logger named name (logged as the attribute "logger") that
// writes to sl and drops lines below min (hclog.NoLevel means Info;
// hclog.Off drops everything).
func New(sl *slog.Logger, name string, min hclog.Level) *Logger {
	if min == hclog.NoLevel {
		min = hclog.Info
	}
	m := &atomic.Int32{}
	m.Store(int32(min))
	group := name
	if group == "" {
		group = "hclog"
	}
	return &Logger{sl: sl, group: group, name: name, min: m}
}

// SlogLevel maps an hclog level to a slog level.
func SlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (l *Logger) enabled(level hclog.Level) bool {
	min := hclog.Level(l.min.Load())
	if min == hclog.Off || level == hclog.Off || level < min {
		return false
	}
	return l.sl.Enabled(context.Background(), SlogLevel(level))
}

// Log writes one line at level with hclog-style key/value args.
func (l *Logger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if !l.enabled(level) {
		return
	}
	kv := make([]any, 0, len(l.attrs)+len(args)+1)
	kv = append(kv, l.attrs...)
	kv = append(kv, convertArgs(args)...)
	attrs := make([]any, 0, 2)
	if l.name != "" {
		attrs = append(attrs, slog.String("logger", l.name))
	}
	if len(kv) > 0 {
		attrs = append(attrs, slog.Group(l.group, kv...))
	}
	l.sl.Log(context.Background(), SlogLevel(level), msg, attrs...)
}

// convertArgs turns hclog args into slog args: hclog.Format values are
// rendered, a lone trailing value gets hclog's key for it.
func convertArgs(args []any) []any {
	if len(args) == 0 {
		return nil
	}
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		if i == len(args)-1 {
			out = append(out, hclog.MissingKey, render(args[i]))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		out = append(out, key, render(args[i+1]))
		i++
	}
	return out
}

func render(v any) any {
	switch x := v.(type) {
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		f, _ := x[0].(string)
		return fmt.Sprintf(f, x[1:]...)
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	}
	return v
}

// Trace logs at trace level.
func (l *Logger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug logs at debug level.
func (l *Logger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info logs at info level.
func (l *Logger) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn logs at warn level.
func (l *Logger) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error logs at error level.
func (l *Logger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace reports whether trace lines are written.
func (l *Logger) IsTrace() bool { return l.enabled(hclog.Trace) }

// IsDebug reports whether debug lines are written.
func (l *Logger) IsDebug() bool { return l.enabled(hclog.Debug) }

// IsInfo reports whether info lines are written.
func (l *Logger) IsInfo() bool { return l.enabled(hclog.Info) }

// IsWarn reports whether warn lines are written.
func (l *Logger) IsWarn() bool { return l.enabled(hclog.Warn) }

// IsError reports whether error lines are written.
func (l *Logger) IsError() bool { return l.enabled(hclog.Error) }

// ImpliedArgs returns the args every line of this logger carries.
func (l *Logger) ImpliedArgs() []any { return append([]any(nil), l.args...) }

// With returns a logger whose lines carry args too.
func (l *Logger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), args...)
	c.attrs = convertArgs(c.args)
	return &c
}

// Name returns the logger's name.
func (l *Logger) Name() string { return l.name }

// Named returns a logger whose name is this one's with ".name" appended.
func (l *Logger) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

// ResetNamed returns a logger named name.
func (l *Logger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel changes the minimum level of this logger and those derived from it.
func (l *Logger) SetLevel(level hclog.Level) { l.min.Store(int32(level)) }

// GetLevel returns the minimum level.
func (l *Logger) GetLevel() hclog.Level { return hclog.Level(l.min.Load()) }

// StandardLogger returns a standard library logger writing through this one.
func (l *Logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer whose lines become log lines. A line
// starting with "[LEVEL]" (as raft's transport writes) is logged at that
// level; others at info, or at opts.ForceLevel when set.
func (l *Logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdWriter{l: l}
	if opts != nil {
		w.force = opts.ForceLevel
	}
	return w
}

type stdWriter struct {
	l     *Logger
	force hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level, msg := splitLevel(strings.TrimSpace(string(line)))
		if w.force != hclog.NoLevel {
			level = w.force
		}
		w.l.Log(level, msg)
	}
	return len(p), nil
}

// splitLevel reads a leading "[LEVEL]" off a standard logger's line.
func splitLevel(s string) (hclog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  hclog.Level
	}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn},
		{"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, s
}
