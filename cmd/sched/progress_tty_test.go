package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// waitExit waits for cmd (started, its Wait running in done) up to limit
// and returns its exit code; it fails the test if cmd does not end.
func waitExit(t *testing.T, cmd *exec.Cmd, done <-chan error, limit time.Duration, out fmt.Stringer) int {
	t.Helper()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return 0
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not end within %s:\n%s", cmd, limit, out)
		return -1
	}
}

// startCmd starts cmd and returns a channel with the result of its Wait.
func startCmd(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done
}

// waitJobTotal waits until job id exists and has more than min tasks
// (the plan step fanned it out), and is not over yet; it returns its total.
func waitJobTotal(t *testing.T, addr, id string, min int, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		out, _, err := runSched(addr, "job", "show", id, "-o", "json")
		var j jobJSON
		if err == nil && json.Unmarshal([]byte(out), &j) == nil {
			switch {
			case j.State == "succeeded" || j.State == "failed" || j.State == "cancelled":
				t.Fatalf("job %s ended (%s) before the server could be killed", id, j.State)
			case j.Counts.Total > min:
				return j.Counts.Total
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not reach more than %d tasks within %s: %v %s", id, min, limit, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEncodeFollowsARestart: `sched encode` keeps following its job while
// the server is killed with SIGKILL in the middle of the encode and started
// again on the same data dir, and exits 0 with the output written; with no
// server coming back it exits 3 after --give-up-after.
func TestEncodeFollowsARestart(t *testing.T) {
	work := t.TempDir()
	clip := filepath.Join(work, "clip.mp4")
	makeClipFor(t, clip, 2)
	addr, data := freeAddr(t), filepath.Join(work, "data")
	d := startDevWith(t, addr, data, 2, nil, "--storage-root", work)
	out := filepath.Join(work, "out")
	encode := exec.Command(schedBin, "--addr", addr, "encode", clip, "--ladder", "test", "--out", out, "--chunk", "1s")
	var log syncBuffer
	encode.Stdout, encode.Stderr = &log, &log
	done := startCmd(t, encode)
	total := waitJobTotal(t, addr, "job-1", 1, 30*time.Second)
	d.kill() // mid-encode: the plan has fanned out, the chunks run
	t.Logf("killed the server with job-1 at %d tasks", total)
	// Down for longer than one call's retries last (retryConfig: five
	// attempts, about 3 s): only following the job again gets through.
	time.Sleep(5 * time.Second)
	d2 := startDevWith(t, addr, data, 2, nil, "--storage-root", work)
	if code := waitExit(t, encode, done, 120*time.Second, &log); code != 0 {
		t.Fatalf("encode across a restart exited %d, want 0:\n%s\n%s", code, log.String(), d2.log.String())
	}
	for _, want := range []string{"job-1): succeeded", "verification PASSED"} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("encode output lacks %q:\n%s", want, log.String())
		}
	}
	for _, f := range []string{"hls/master.m3u8", "verify.json"} {
		if _, err := os.Stat(filepath.Join(out, "clip", f)); err != nil {
			t.Fatalf("encode output: %v", err)
		}
	}

	// The server goes away for good: exit 3 after --give-up-after.
	lost := exec.Command(schedBin, "--addr", addr, "encode", clip, "--ladder", "test", "--out",
		filepath.Join(work, "out2"), "--chunk", "1s", "--give-up-after", "2s")
	var lostLog syncBuffer
	lost.Stdout, lost.Stderr = &lostLog, &lostLog
	lostDone := startCmd(t, lost)
	waitJobTotal(t, addr, "job-2", 0, 30*time.Second)
	d2.kill()
	if code := waitExit(t, lost, lostDone, 30*time.Second, &lostLog); code != 3 {
		t.Fatalf("encode with its server gone exited %d, want 3:\n%s", code, lostLog.String())
	}
	if !strings.Contains(lostLog.String(), "lost track") {
		t.Fatalf("encode with its server gone does not say it lost track:\n%s", lostLog.String())
	}
	if code := exitCodeOf(exec.Command(schedBin, "--addr", addr, "encode", clip, "--out", out, "--give-up-after", "0s")); code != 2 {
		t.Fatalf("encode --give-up-after 0s exited %d, want 2", code)
	}
}

// exitCodeOf runs cmd and returns its exit code.
func exitCodeOf(cmd *exec.Cmd) int {
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// barCount matches the count the progress bar shows: "(3/7)".
var barCount = regexp.MustCompile(`\((\d+)/(\d+)\)`)

// TestProgressTotalGrowsOnATerminal runs `sched job watch` under a
// pseudo-terminal (the bar is drawn on terminals only) on a job whose first
// task fans it out into more tasks: the bar starts at a total of 1, shows
// a larger total once the job has grown, and its last total is the job's
// number of tasks.
func TestProgressTotalGrowsOnATerminal(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	d := startDev(t, addr, filepath.Join(dir, "data"), 2)
	const added = 6
	var specs []string
	for i := 1; i <= added; i++ {
		specs = append(specs, fmt.Sprintf(`{"name": "w%d", "command": ["sleep", "0.3"], "resources": {"cpuMillis": "100"}}`, i))
	}
	expansion := filepath.Join(dir, "expansion.json")
	if err := os.WriteFile(expansion, []byte(`{"tasks": [`+strings.Join(specs, ",")+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	job := filepath.Join(dir, "fan.yaml")
	spec := "name: fan\ntasks:\n  - name: split\n" +
		"    command: [sh, -c, 'sleep 1.5 && cat \"$0\" > \"$BANYAN_RESULT\"', " + strconv.Quote(expansion) + "]\n"
	if err := os.WriteFile(job, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, job)

	watch := exec.Command(schedBin, "--addr", addr, "job", "watch", id)
	tty, err := pty.StartWithSize(watch, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen syncBuffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&screen, tty) // ends with EIO once the watch exits
	}()
	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	if code := waitExit(t, watch, done, 60*time.Second, &screen); code != 0 {
		t.Fatalf("job watch exited %d:\n%q", code, screen.String())
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
		t.Fatalf("the terminal's output did not end:\n%q", screen.String())
	}

	j := showJob(t, d, id)
	if j.State != "succeeded" || j.Counts.Total != 1+added {
		t.Fatalf("job %s: %s with %d tasks, want succeeded with %d", id, j.State, j.Counts.Total, 1+added)
	}
	var totals []int
	for _, m := range barCount.FindAllStringSubmatch(screen.String(), -1) {
		n, _ := strconv.Atoi(m[2])
		if len(totals) == 0 || totals[len(totals)-1] != n {
			totals = append(totals, n)
		}
	}
	if len(totals) < 2 || totals[0] != 1 || totals[len(totals)-1] != j.Counts.Total {
		t.Fatalf("bar totals %v: want 1 first, then growing to %d:\n%q", totals, j.Counts.Total, screen.String())
	}
	for i := 1; i < len(totals); i++ {
		if totals[i] < totals[i-1] {
			t.Fatalf("bar totals %v shrank:\n%q", totals, screen.String())
		}
	}
	if !strings.Contains(screen.String(), id+" succeeded") {
		t.Fatalf("watch did not report the end:\n%q", screen.String())
	}
}
