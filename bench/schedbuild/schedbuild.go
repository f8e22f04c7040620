// Package schedbuild builds Banyan's two binaries from this module the way
// `make build` does, for the benchmarks: banyand, the full binary (server,
// agent, `sched dev`), and sched, the thin client (cmd/sched/thin.go),
// side by side in one directory, where the thin sched finds banyand and
// execs it for the daemon commands.
package schedbuild

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ThinTags are the build tags of the thin client (THIN_TAGS in the
// Makefile): schedthin leaves the daemons out, grpcnotrace keeps gRPC from
// linking golang.org/x/net/trace (and html/template) for a tracing mode
// the client never turns on.
const ThinTags = "schedthin,grpcnotrace"

// Build builds banyand and the thin sched into dir and returns sched's
// path. go runs from the module's root (go env GOMOD), wherever the caller
// was started; its messages go to stderr.
func Build(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	root := ""
	if mod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output(); err == nil && strings.TrimSpace(string(mod)) != "" {
		root = filepath.Dir(strings.TrimSpace(string(mod)))
	}
	sched := filepath.Join(dir, "sched")
	for _, b := range []struct {
		out  string
		args []string
		env  []string
	}{
		{filepath.Join(dir, "banyand"), nil, nil},
		{sched, []string{"-tags", ThinTags, "-trimpath"}, []string{"CGO_ENABLED=0"}},
	} {
		args := append(append([]string{"build"}, b.args...), "-o", b.out, "./cmd/sched")
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Stderr, cmd.Env = root, stderr, append(os.Environ(), b.env...)
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
	}
	return sched, nil
}
