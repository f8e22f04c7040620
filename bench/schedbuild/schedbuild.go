// Package schedbuild builds Banyan's three binaries from this module the
// way `make build` does, for the benchmarks: banyand, the full binary
// (server, agent, `sched dev`); sched-client, the thin client
// (cmd/sched/thin.go), which also runs the client helper; and sched, the
// front (cmd/schedfront), side by side in one directory, where the front
// finds sched-client and sched-client finds banyand.
package schedbuild

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ThinTags are the build tags of the thin client (THIN_TAGS in the
// Makefile): schedthin leaves the daemons out, grpcnotrace keeps gRPC from
// linking golang.org/x/net/trace (and html/template) for a tracing mode
// the client never turns on.
const ThinTags = "schedthin,grpcnotrace"

// Build builds banyand, sched-client and the front into dir and returns
// the front's path (sched). go runs from the module's root (go env GOMOD),
// wherever the caller was started; its messages go to stderr.
func Build(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	sched := filepath.Join(dir, "sched")
	root := moduleRoot(ctx)
	for _, b := range []goBuild{
		{filepath.Join(dir, "banyand"), "./cmd/sched", nil, nil},
		{filepath.Join(dir, "sched-client"), "./cmd/sched", thinFlags, thinEnv},
		{sched, "./cmd/schedfront", []string{"-trimpath"}, thinEnv},
	} {
		if err := b.run(ctx, root, stderr); err != nil {
			return "", err
		}
	}
	settle()
	return sched, nil
}

// settle writes what the builds left in the page cache out to disk before
// the caller measures anything. A build leaves about 50 MB dirty (the
// binaries); left to the kernel's writeback, which starts them 30 s after
// they were written, they go out during the first scenario and slow its
// raft fsyncs. Measured with banyan-bench's placement scenario right after
// building both binaries, four interleaved pairs on a 2-cpu VM: 24,425,
// 27,034, 31,411 and 24,390 placements/s without it, 27,752, 28,672,
// 31,819 and 28,514 with it.
func settle() { syscall.Sync() }

// Probes are the CLI probes' names (bench/cliprobe/NAME), in the order
// the benchmarks run them.
var Probes = []string{"noop", "grpcgo", "h2frame", "wire"}

// BuildProbes builds the CLI probes into dir the way the thin sched is
// built (no cgo, its tags, -trimpath), so that a probe's start-up compares
// with sched's, and returns each one's path by name.
func BuildProbes(ctx context.Context, dir string, stderr io.Writer) (map[string]string, error) {
	paths := map[string]string{}
	root := moduleRoot(ctx)
	for _, name := range Probes {
		b := goBuild{filepath.Join(dir, "probe-"+name), "./bench/cliprobe/" + name, thinFlags, thinEnv}
		if err := b.run(ctx, root, stderr); err != nil {
			return nil, err
		}
		paths[name] = b.out
	}
	settle()
	return paths, nil
}

// The thin sched's build: its tags, no cgo, no paths of this machine.
var (
	thinFlags = []string{"-tags", ThinTags, "-trimpath"}
	thinEnv   = []string{"CGO_ENABLED=0"}
)

// goBuild is one `go build` of a package of this module.
type goBuild struct {
	out, pkg string
	flags    []string
	env      []string
}

// moduleRoot is the module's root directory (go env GOMOD), so that go
// builds from it wherever the caller was started; "" (the current
// directory) when go cannot say.
func moduleRoot(ctx context.Context) string {
	mod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(mod)) == "" {
		return ""
	}
	return filepath.Dir(strings.TrimSpace(string(mod)))
}

// run builds in root, the module's root (moduleRoot).
func (b goBuild) run(ctx context.Context, root string, stderr io.Writer) error {
	args := append(append([]string{"build"}, b.flags...), "-o", b.out, b.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Stderr, cmd.Env = root, stderr, append(os.Environ(), b.env...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
