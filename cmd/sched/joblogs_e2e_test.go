package main_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeJob writes a job file and returns its path.
func writeJob(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitLogsJob(t *testing.T, d *devProc, id string, ok func(jobJSON) bool, what string) jobJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := showJob(t, d, id)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %s not reached: %+v", id, what, j)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestJobLogs: `sched job logs` prints an attempt's full stdout and
// stderr from the agent's files, follows a running task with -f until it
// ends, and names the tasks when a job has several.
func TestJobLogs(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)

	big := submit(t, d, writeJob(t, `name: big
tasks:
  - name: noisy
    command: [sh, -c, "seq 1 30000 >&2; echo ok"]
`))
	waitLogsJob(t, d, big, func(j jobJSON) bool { return j.State == "succeeded" }, "succeeded")
	out, stderr, err := d.run("job", "logs", big, "--stderr")
	if err != nil {
		t.Fatalf("job logs --stderr: %v: %s", err, stderr)
	}
	var want strings.Builder
	for i := 1; i <= 30000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if out != want.String() {
		t.Fatalf("stderr: %d bytes, want the %d written", len(out), want.Len())
	}
	if out, stderr, err := d.run("job", "logs", big, "noisy", "--attempt", "1"); err != nil || out != "ok\n" {
		t.Fatalf("stdout = %q, %v: %s", out, err, stderr)
	}

	two := submit(t, d, writeJob(t, `name: two
tasks:
  - {name: a, command: [echo, a]}
  - {name: b, command: [echo, b]}
`))
	waitLogsJob(t, d, two, func(j jobJSON) bool { return j.State == "succeeded" }, "succeeded")
	if _, stderr, err := d.run("job", "logs", two); err == nil || !strings.Contains(stderr, "has 2 tasks; name one:") {
		t.Fatalf("no task named: %v: %s", err, stderr)
	}
	if out, _, err := d.run("job", "logs", two, "b"); err != nil || out != "b\n" {
		t.Fatalf("task b: %q, %v", out, err)
	}

	tick := submit(t, d, writeJob(t, `name: tick
tasks:
  - name: tick
    command: [sh, -c, "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.4; done"]
`))
	waitLogsJob(t, d, tick, func(j jobJSON) bool {
		return len(j.Tasks) == 1 && len(j.Tasks[0].Attempts) > 0 && j.Tasks[0].Attempts[0].StartedMs > 0
	}, "started")
	cmd := exec.Command(schedBin, "--addr", d.addr, "job", "logs", tick, "-f")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(pipe)
	var lines []string
	runningAtFirst := ""
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) == 1 {
			runningAtFirst = showJob(t, d, tick).State
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	if strings.Join(lines, ",") != "tick 1,tick 2,tick 3,tick 4,tick 5,tick 6" {
		t.Fatalf("followed lines: %q", lines)
	}
	if runningAtFirst != "running" {
		t.Fatalf("the first line came when the job was %s: want lines as they come", runningAtFirst)
	}
	if j := showJob(t, d, tick); j.State != "succeeded" {
		t.Fatalf("logs -f ended with the job %s", j.State)
	}
}
