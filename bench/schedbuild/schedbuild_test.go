package schedbuild

import (
	"os"
	"path/filepath"
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
