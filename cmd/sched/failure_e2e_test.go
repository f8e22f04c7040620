package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestE2EFailureClasses drives `sched dev` and the CLI: a task that exits 65
// (bad input) fails its job at once, with the class in the job's reason
// and in `sched job show`; a task that exits 66 (decode error) hands over
// to its fallback, and `sched job show` and `sched job list` count it as
// replaced and done, not failed.
func TestE2EFailureClasses(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	d := startDev(t, addr, dir, 1)
	files := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := submit(t, d, write("bad.yaml", `name: bad
tasks:
  - name: probe
    command: [sh, -c, "echo 'not a media file' >&2; exit 65"]
    retry: {max_attempts: 3, backoff: 50ms}
`))
	if _, stderr, err := d.run("job", "watch", bad); err == nil ||
		!strings.Contains(stderr, "task probe failed (bad_input) after 1 attempt: exit status 65: not a media file") {
		t.Fatalf("watch bad input: err %v, stderr %q", err, stderr)
	}
	out, stderr, err := d.run("job", "show", bad)
	if err != nil {
		t.Fatalf("job show: %v: %s", err, stderr)
	}
	if !regexp.MustCompile(`(?m)^probe +failed +1 .* failed +bad_input +65 `).MatchString(out) ||
		len(regexp.MustCompile(`(?m)^probe `).FindAllString(out, -1)) != 1 {
		t.Fatalf("job show of the bad input: want one attempt of class bad_input:\n%s", out)
	}

	fb := submit(t, d, write("fallback.yaml", `name: fallback
tasks:
  - name: enc
    command: [sh, -c, "echo 'decode errors' >&2; exit 66"]
    retry: {max_attempts: 3, backoff: 50ms}
    fallback:
      name: enc-cpu
      command: ["true"]
  - name: join
    command: ["true"]
    after: [enc]
`))
	if _, stderr, err := d.run("job", "watch", fb); err != nil {
		t.Fatalf("watch fallback job: %v: %s", err, stderr)
	}
	out, stderr, err = d.run("job", "show", fb)
	if err != nil {
		t.Fatalf("job show: %v: %s", err, stderr)
	}
	if !strings.Contains(out, "2 succeeded, 1 replaced by fallback, 0 failed, 0 cancelled") ||
		!regexp.MustCompile(`(?m)^enc +replaced +1 .* failed +decode_error +66 +.*replaced by enc-cpu$`).MatchString(out) {
		t.Fatalf("job show of the fallback job:\n%s", out)
	}
	out, stderr, err = d.run("job", "list")
	if err != nil {
		t.Fatalf("job list: %v: %s", err, stderr)
	}
	if !regexp.MustCompile(`(?m)^` + fb + ` +fallback +default +\S+ +0 +succeeded +3 +3 `).MatchString(out) {
		t.Fatalf("job list: want the fallback job with 3 of 3 tasks done:\n%s", out)
	}
}
