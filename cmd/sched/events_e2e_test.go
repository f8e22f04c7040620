package main_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventLine is one line of `sched events -o json`.
type eventLine struct {
	Cursor  string `json:"cursor"`
	Next    string `json:"next"`
	Index   uint64 `json:"index"`
	Topic   string `json:"topic"`
	Kind    string `json:"kind"`
	JobID   string `json:"job_id"`
	TaskID  string `json:"task_id"`
	AgentID string `json:"agent_id"`
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	Outcome string `json:"outcome"`
}

func parseEventLines(t *testing.T, out string) []eventLine {
	t.Helper()
	var evs []eventLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev eventLine
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// historyOf lists a job's and its tasks' states, from event lines.
func historyOf(evs []eventLine, job string) (jobStates []string, taskStates map[string][]string) {
	taskStates = map[string][]string{}
	for _, ev := range evs {
		switch {
		case ev.Topic == "job" && ev.JobID == job && ev.Kind != "promoted":
			jobStates = append(jobStates, strings.TrimPrefix(ev.State, "JOB_STATE_"))
		case ev.Topic == "task" && ev.JobID == job && ev.Kind != "replaced":
			taskStates[ev.TaskID] = append(taskStates[ev.TaskID], strings.TrimPrefix(ev.State, "TASK_STATE_"))
		}
	}
	return jobStates, taskStates
}

// A finished job's whole history comes back from --from 0, in order,
// ending with a caught_up line; --follow=false ends there.
func TestEventsReplayJobHistory(t *testing.T) {
	d := startDev(t, freeAddr(t), t.TempDir(), 1)
	id := submit(t, d, "../../examples/hello.yaml")
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	out, stderr, err := d.run("events", "--from", "0", "--follow=false", "-o", "json", "--topic", "job,task")
	if err != nil {
		t.Fatalf("events: %v: %s", err, stderr)
	}
	evs := parseEventLines(t, out)
	if last := evs[len(evs)-1]; last.Kind != "caught_up" || last.Cursor != "" {
		t.Fatalf("last line %+v, want a caught_up mark", last)
	}
	jobStates, taskStates := historyOf(evs, id)
	if got := strings.Join(jobStates, " "); got != "QUEUED RUNNING SUCCEEDED" {
		t.Errorf("job states %s", got)
	}
	if len(taskStates) != 3 {
		t.Fatalf("tasks %v", taskStates)
	}
	for task, states := range taskStates {
		if got := strings.Join(states, " "); got != "WAITING QUEUED ASSIGNED RUNNING SUCCEEDED" {
			t.Errorf("task %s states %s", task, got)
		}
	}
	for _, ev := range evs {
		if ev.Topic == "agent" {
			t.Errorf("--topic job,task printed %+v", ev)
		}
	}
}

// syncLines collects a child's output lines.
type syncLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *syncLines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.mu.Lock()
		s.lines = append(s.lines, sc.Text())
		s.mu.Unlock()
	}
}

func (s *syncLines) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// A follower survives its server's kill -9 and restart: it reconnects,
// resumes after the last event it printed, and its lines (caught_up marks
// aside) are exactly a fresh replay's: nothing lost, nothing twice.
func TestEventsFollowAcrossRestart(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	d := startDev(t, addr, dir, 1)
	first := submit(t, d, "../../examples/hello.yaml")
	if _, stderr, err := d.run("job", "watch", first); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	follow := exec.Command(schedBin, "--addr", addr, "events", "--from", "0", "-o", "json")
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	follow.Stderr = &stderr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = follow.Process.Kill(); _ = follow.Wait() })
	lines := &syncLines{}
	go lines.read(stdout)
	waitLines := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond(lines.text()) {
			if time.Now().After(deadline) {
				t.Fatalf("follower never printed %s:\n%s\nstderr: %s", what, lines.text(), stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLines("the first job's end", func(s string) bool { return strings.Contains(s, `"caught_up"`) })

	d.kill()
	d2 := startDev(t, addr, dir, 1)
	second := submit(t, d2, "../../examples/hello.yaml")
	if _, stderr, err := d2.run("job", "watch", second); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	ended := fmt.Sprintf(`"job_id":"%s","pool":"default","name":"hello","state":"JOB_STATE_SUCCEEDED"`, second)
	waitLines("the second job's end", func(s string) bool { return strings.Contains(s, ended) })
	if !strings.Contains(stderr.String(), "resuming at") {
		t.Errorf("follower did not say it resumed: %s", stderr.String())
	}

	out, errOut, err := d2.run("events", "--from", "0", "--follow=false", "-o", "json")
	if err != nil {
		t.Fatalf("events: %v: %s", err, errOut)
	}
	var got, want []string
	for _, ev := range parseEventLines(t, lines.text()) {
		if ev.Topic != "stream" {
			got = append(got, ev.Cursor)
		}
	}
	for _, ev := range parseEventLines(t, out) {
		if ev.Topic != "stream" {
			want = append(want, ev.Cursor)
		}
	}
	// The follower may have seen events after the second job ended
	// (agent heartbeats do not make events; a late agent event may).
	if len(got) < len(want) || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
		t.Fatalf("follower printed:\n%v\na fresh replay:\n%v", got, want)
	}
	seen := map[string]bool{}
	for _, c := range got {
		if seen[c] {
			t.Fatalf("event %s printed twice", c)
		}
		seen[c] = true
	}
}
