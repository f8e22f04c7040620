package schedbuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestThinTagsEverywhere: the Makefile and the image's build script build
// the thin client with the same tags as the benchmarks and cmd/sched's
// tests (ThinTags), so a tag added in one place and not the others fails
// here.
func TestThinTagsEverywhere(t *testing.T) {
	for _, f := range []struct{ path, want string }{
		{filepath.Join("..", "..", "Makefile"), "THIN_TAGS := " + ThinTags + "\n"},
		{filepath.Join("..", "..", "deploy", "docker", "build.sh"), "-tags " + ThinTags + " "},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), f.want) {
			t.Errorf("%s does not build the thin client with %q (ThinTags)", f.path, ThinTags)
		}
	}
}

// TestBuildProbes builds every probe under bench/cliprobe (a directory
// with a main.go; Probes names them all) and runs them: noop exits 0, a
// client without an address exits 2 with its usage.
func TestBuildProbes(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "cliprobe"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("..", "cliprobe", e.Name(), "main.go")); e.IsDir() && err == nil {
			dirs = append(dirs, e.Name())
		}
	}
	want := slices.Clone(Probes)
	slices.Sort(want)
	if !slices.Equal(dirs, want) {
		t.Fatalf("bench/cliprobe holds %v, Probes names %v", dirs, Probes)
	}
	if testing.Short() {
		t.Skip("builds a binary per probe")
	}
	paths, err := BuildProbes(context.Background(), t.TempDir(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Probes {
		cmd := exec.Command(paths[name])
		out, err := cmd.CombinedOutput()
		want := 2
		if name == "noop" {
			want = 0
		}
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != want {
			t.Errorf("%s without arguments: %v, %q; want exit code %d", name, err, out, want)
		}
		if want == 2 && !strings.Contains(string(out), "usage: "+name+" ADDR") {
			t.Errorf("%s without arguments printed %q, want its usage", name, out)
		}
	}
}
