package encoder

import (
	"regexp"
	"sync"
)

// lazyRegexp compiles expr the first time it is used, not when the package
// is initialised: every process of the sched binary links this package,
// and most (the CLI's client commands) never match a line of ffmpeg output.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
