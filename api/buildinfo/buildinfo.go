// Package buildinfo says which build of Banyan is running: the version
// servers write into snapshots and backups, agents report, and `sched
// version` prints.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Version, when set at link time (-ldflags "-X
// github.com/banyan-sched/banyan/api/buildinfo.Version=v1.2.3"), names the
// release; otherwise the version is read from the module and VCS data Go
// embeds in the binary.
var Version = ""

// Info is what one build is.
type Info struct {
	// Version is the release, or "devel" for a build from a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from ("" if unknown),
	// with "+dirty" when the tree had uncommitted changes.
	Commit string `json:"commit,omitempty"`
	// Go is the Go version that built it.
	Go string `json:"go"`
}

var (
	once sync.Once
	info Info
)

// Get returns this binary's build information.
func Get() Info {
	once.Do(func() {
		info = Info{Version: Version, Go: runtime.Version()}
		bi, ok := debug.ReadBuildInfo()
		if info.Version == "" {
			info.Version = "devel"
			if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				info.Version = bi.Main.Version
			}
		}
		if !ok {
			return
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
				if len(info.Commit) > 12 {
					info.Commit = info.Commit[:12]
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && info.Commit != "" {
			info.Commit += "+dirty"
		}
	})
	return info
}

// String renders the build on one line: "devel (commit 1a2b3c4d5e6f, go1.26.8)".
func (i Info) String() string {
	s := i.Version + " ("
	if i.Commit != "" {
		s += "commit " + i.Commit + ", "
	}
	return s + i.Go + ")"
}
