package jobfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/api/taskarray"
)

// addSeedFiles adds every file under dirs as a seed.
func addSeedFiles(f *testing.F, dirs ...string) {
	f.Helper()
	n := 0
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			f.Fatalf("seeds: %v", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				f.Fatalf("seeds: %v", err)
			}
			f.Add(data)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files in %v", dirs)
	}
}

// FuzzParse feeds arbitrary documents to the job file parser: it must
// return specs or a one-line error, never both, never panic, and every spec
// it returns must be complete (tasks that run something, with an ask).
func FuzzParse(f *testing.F) {
	addSeedFiles(f, examplesDir, filepath.Join(examplesDir, "bad"), "testdata", filepath.Join("testdata", "bad"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := Parse(data)
		if err != nil {
			if specs != nil {
				t.Fatalf("both specs and an error: %v", err)
			}
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one non-empty line: %q", msg)
			}
			return
		}
		if len(specs) == 0 {
			t.Fatal("no specs and no error")
		}
		for _, j := range specs {
			if len(j.Tasks) == 0 {
				t.Fatalf("job %q without tasks", j.Name)
			}
			if j.MaxWaitMs < 0 {
				t.Fatalf("job %q: negative max_wait", j.Name)
			}
			for _, ts := range j.Tasks {
				for fb := ts; fb != nil; fb = fb.Fallback {
					if fb.Function == "" && (len(fb.Command) == 0 || strings.TrimSpace(fb.Command[0]) == "") {
						t.Fatalf("task %q runs nothing", fb.Name)
					}
					v := fb.Resources.Vector()
					if n := v.Negative(); n != "" || v.IsZero() {
						t.Fatalf("task %q: ask %v (negative %q or zero)", fb.Name, v, n)
					}
					if fb.TimeoutMs < 0 || fb.FallbackAfterMs < 0 {
						t.Fatalf("task %q: negative duration", fb.Name)
					}
				}
			}
		}
	})
}

// TestExpansionIsBounded: count and YAML aliases let a few bytes stand for
// millions of tasks; a file that expands past MaxTasks or MaxExpandedBytes
// is refused before anything is built.
func TestExpansionIsBounded(t *testing.T) {
	aliases := "jobs:\n  - &j {name: a, tasks: [{name: t, count: 1000000, command: [x]}]}\n" +
		strings.Repeat("  - *j\n", 50)
	big := "tasks:\n  - name: t\n    count: 100000\n    command: [x, " + strings.Repeat("y", 4096) + "]\n"
	for name, c := range map[string]struct{ doc, want string }{
		"aliases":     {aliases, "more than 1000000 tasks"},
		"big command": {big, "MiB of commands"},
	} {
		if _, err := Parse([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	ok := "tasks:\n  - name: t\n    count: 1000\n    command: [x]\n"
	if specs, err := Parse([]byte(ok)); err != nil || taskarray.Tasks(specs[0].Tasks) != 1000 {
		t.Fatalf("1000 tasks: %v", err)
	}
}
