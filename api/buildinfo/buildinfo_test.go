package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Go != runtime.Version() {
		t.Fatalf("Get() = %+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, i.Version+" (") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
	if got := (Info{Version: "v1.0.0", Commit: "abc", Go: "go1"}).String(); got != "v1.0.0 (commit abc, go1)" {
		t.Fatalf("String() = %q", got)
	}
}
