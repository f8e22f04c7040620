// Package limits holds Banyan's byte budgets in one place: the largest gRPC
// message a server, agent or client sends or accepts, and the bounds below
// it on what a message may carry (task results, output tails, function
// output, task and job specs, attempt history).
//
// There are two kinds of bound. The message size is configured
// (--max-message-size, the same on servers, agents and clients) and a Budget
// derives from it what only the sender needs to know: output tails, error
// text and how many bytes a batch of tasks or events may fill. The bounds
// the replicated state checks when it applies a command (a task spec, a
// job, a result, attempt history) are constants, so that every server
// decides the same way whatever its flags say; each is at most half of
// MinMessageSize, so any accepted configuration carries them with room to
// spare.
//
// Every bound and its default:
//
//	message size         16 MiB   --max-message-size (servers, agents), at least 16 MiB
//	batch of tasks/events 8 MiB   half the message
//	stdout, stderr tail  64 KiB   each, 1/256 of the message, at most 256 KiB (truncated, marked)
//	function output      64 KiB   as a tail (truncated, marked)
//	error text            4 KiB   (truncated, marked)
//	task result           4 MiB   $BANYAN_RESULT; over it the task fails
//	task spec             1 MiB   command + args + env + workdir, fallbacks included
//	job spec              8 MiB   per job per submission
//	tasks                 1,000,000 per submission (arrays counted expanded)
//	attempt history      16       records per task: the first and the latest 15
//
// The package is pure: no I/O, no clock, no goroutines.
package limits

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message sizes.
const (
	// DefaultMessageSize is the largest gRPC message by default.
	DefaultMessageSize = 16 << 20
	// MinMessageSize is the smallest configurable message size: the state's
	// bounds below must fit in one message with room to spare. It is also
	// the default: a message size can only be raised.
	MinMessageSize = 16 << 20
	// MaxMessageSize is the largest configurable message size.
	MaxMessageSize = 1 << 30
)

// Bounds the replicated state enforces when it applies a command. They do
// not depend on configuration, so apply stays deterministic.
const (
	// TaskSpecBytes bounds one task spec's command, args, env (names and
	// values) and workdir together, its fallbacks included.
	TaskSpecBytes = 1 << 20
	// JobSpecBytes bounds one job spec (all its tasks, encoded, after the
	// server filled in names and default asks) per submission: a job of
	// 200,000 bare tasks fits.
	JobSpecBytes = 8 << 20
	// SubmitTasks bounds the tasks one SubmitJobs call, and so one raft
	// entry, may make, arrays (TaskSpec.count) counted expanded: a call of
	// a few hundred bytes may hold arrays of a million tasks each, and
	// every server builds them all when it applies the entry.
	SubmitTasks = 1_000_000
	// ResultBytes bounds what a task may write to $BANYAN_RESULT, so also a
	// fan-out (a job expansion) a result may add at once: about 6,000 encode
	// tasks of a chunked title. A larger result fails its task with a
	// reason naming the size and the bound.
	ResultBytes = 4 << 20
	// AttemptHistory is how many attempt records a task keeps: the first and
	// the latest AttemptHistory-1. Attempt numbers keep counting, so the
	// number of records dropped is the latest number minus the records kept.
	AttemptHistory = 16
	// ErrorBytes bounds the error text of one attempt.
	ErrorBytes = 4 << 10
	// MaxTailBytes bounds an attempt's stdout and stderr tails, each, in
	// the state, whatever the message size (Budget.TailBytes is at most
	// this).
	MaxTailBytes = 256 << 10
)

// Budget holds the message size in force and derives the sender-side
// bounds from it. The zero Budget means DefaultMessageSize.
type Budget struct {
	// MessageSize is the largest gRPC message in bytes (0: the default).
	MessageSize int
}

// Default is the budget with DefaultMessageSize.
var Default = Budget{MessageSize: DefaultMessageSize}

// Check returns an error naming the problem when the message size is
// outside [MinMessageSize, MaxMessageSize]. Zero is valid (the default).
func (b Budget) Check() error {
	if b.MessageSize == 0 {
		return nil
	}
	if b.MessageSize < MinMessageSize || b.MessageSize > MaxMessageSize {
		return fmt.Errorf("max message size %s outside [%s, %s]", FormatBytes(int64(b.MessageSize)),
			FormatBytes(MinMessageSize), FormatBytes(MaxMessageSize))
	}
	return nil
}

// Message returns the largest message in bytes.
func (b Budget) Message() int {
	if b.MessageSize == 0 {
		return DefaultMessageSize
	}
	return b.MessageSize
}

// BatchBytes is how many bytes of tasks or events one message may carry:
// half the message, leaving the envelope ample room.
func (b Budget) BatchBytes() int { return b.Message() / 2 }

// TailBytes bounds the kept tail of a task's stdout and of its stderr
// (each): 1/256 of the message, 64 KiB by default, at most MaxTailBytes.
func (b Budget) TailBytes() int { return min(b.Message()/256, MaxTailBytes) }

// FunctionOutputBytes bounds what a function call returns as output: the
// same as an output tail.
func (b Budget) FunctionOutputBytes() int { return b.TailBytes() }

// ParseSize parses a byte size such as "16MiB", "16Mi", "8388608" or "1GiB".
func ParseSize(s string) (int, error) {
	v := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		m      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}} {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = num, u.m
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number of bytes, KiB, MiB or GiB", s)
	}
	if n > MaxMessageSize/mult {
		return 0, fmt.Errorf("size %q: larger than %s", s, FormatBytes(MaxMessageSize))
	}
	return n * mult, nil
}

// FormatBytes writes a byte count for people: "16MiB", "1.5KiB", "300B".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// TruncateTail keeps the last bytes of s within max bytes, whole UTF-8
// characters only, behind a marker saying how many bytes were cut:
// "[... 123 bytes cut]\n". A string within max is returned as is.
func TruncateTail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	// The marker's length depends on the count it names: grow the cut
	// until the count and the kept bytes agree. cut only grows, so this ends.
	for cut := len(s) - max; ; {
		marker := fmt.Sprintf("[... %d bytes cut]\n", cut)
		if len(marker) > max {
			return marker[:max]
		}
		start := len(s) - (max - len(marker))
		for start < len(s) && !utf8.RuneStart(s[start]) {
			start++
		}
		if start == cut {
			return marker + s[start:]
		}
		cut = start
	}
}

// TruncateHead keeps the first bytes of s within max bytes, whole UTF-8
// characters only, followed by a marker saying how many bytes were cut.
func TruncateHead(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for keep := max; keep >= 0; keep-- {
		if keep < len(s) && !utf8.RuneStart(s[keep]) {
			continue
		}
		marker := fmt.Sprintf(" [... %d bytes cut]", len(s)-keep)
		if keep+len(marker) <= max {
			return s[:keep] + marker
		}
	}
	return ""
}

// Split cuts items into consecutive groups, each at most budget bytes by
// size, in order. An item larger than budget on its own goes alone in its
// group: the caller bounds items so that this never exceeds a message.
func Split[T any](items []T, size func(T) int, budget int) [][]T {
	var out [][]T
	start, used := 0, 0
	for i, it := range items {
		n := size(it)
		if i > start && used+n > budget {
			out = append(out, items[start:i])
			start, used = i, 0
		}
		used += n
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out
}
