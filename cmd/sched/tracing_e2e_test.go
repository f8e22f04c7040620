package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/scheduler/tracing/jobtrace"
)

// `sched job show` prints the job's trace id (and -o json has it), and the
// task ran with TRACEPARENT naming its run span in that trace.
func TestJobShowPrintsTraceID(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)
	file := filepath.Join(t.TempDir(), "traced.yaml")
	if err := os.WriteFile(file, []byte(`name: traced
tasks:
  - name: tp
    command: [sh, -c, 'echo "$TRACEPARENT"']
    resources: {cpu: 10m}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, file)
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	var j struct {
		jobJSON
		TraceID string `json:"trace_id"`
	}
	showJobAs(t, d, id, &j)
	if !jobtrace.ValidTraceID(j.TraceID) {
		t.Fatalf("job show -o json: trace_id %q", j.TraceID)
	}
	tk := j.Tasks[0]
	if got, want := strings.TrimSpace(tk.Attempts[0].Stdout), jobtrace.RunTraceparent(j.TraceID, tk.ID, 1); got != want {
		t.Fatalf("task saw TRACEPARENT %q, want %q", got, want)
	}
	out, stderr, err := d.run("job", "show", id)
	if err != nil {
		t.Fatalf("job show: %v: %s", err, stderr)
	}
	if !strings.Contains(out, "  trace: "+j.TraceID+"\n") {
		t.Fatalf("job show does not print the trace id %s:\n%s", j.TraceID, out)
	}
}
