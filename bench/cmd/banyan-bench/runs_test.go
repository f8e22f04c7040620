package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{nil, 0},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestAggregateJudgesTheMedians(t *testing.T) {
	sc := scenario{name: "x", keys: []string{"rate"}, met: func(m map[string]float64) bool { return m["rate"] >= 100 }}
	runs := []Result{
		{Metrics: map[string]float64{"rate": 90}, Target: "t", Setup: &Setup{Servers: 3}},
		{Metrics: map[string]float64{"rate": 120}, Target: "t"},
		{Metrics: map[string]float64{"rate": 110}, Target: "t"},
	}
	r := aggregate(sc, runs)
	if r.Metrics["rate"] != 110 || r.Min["rate"] != 90 || r.Max["rate"] != 120 {
		t.Fatalf("median/min/max = %v/%v/%v, want 110/90/120", r.Metrics["rate"], r.Min["rate"], r.Max["rate"])
	}
	if len(r.Values["rate"]) != 3 || len(r.Runs) != 3 {
		t.Fatalf("kept %d values and %d runs, want 3 and 3", len(r.Values["rate"]), len(r.Runs))
	}
	if r.Met == nil || !*r.Met {
		t.Fatalf("met = %v, want true (median 110 >= 100)", r.Met)
	}
	if r.Setup == nil || r.Setup.Servers != 3 {
		t.Fatalf("setup = %+v, want the first run's", r.Setup)
	}
	if !strings.Contains(r.Summary, "median of 3 runs: rate 110 [90..120]") {
		t.Fatalf("summary %q", r.Summary)
	}
}

func TestAggregateAFailedRunFailsTheTarget(t *testing.T) {
	sc := scenario{name: "x", keys: []string{"rate"}, met: func(m map[string]float64) bool { return m["rate"] >= 100 }}
	r := aggregate(sc, []Result{
		{Metrics: map[string]float64{"rate": 200}, Target: "t"},
		{Err: "boom"},
		{Metrics: map[string]float64{"rate": 300}, Target: "t"},
	})
	if r.Err != "run 2: boom" {
		t.Fatalf("err = %q", r.Err)
	}
	if r.Met == nil || *r.Met {
		t.Fatalf("met = %v, want false with a failed run", r.Met)
	}
	if r.Metrics["rate"] != 250 {
		t.Fatalf("median of the successful runs = %v, want 250", r.Metrics["rate"])
	}
}

func TestAggregateWithoutJudgeNeedsEveryRun(t *testing.T) {
	sc := scenario{name: "x"}
	r := aggregate(sc, []Result{
		{Metrics: map[string]float64{"a": 1}, Target: "t", Met: met(true)},
		{Metrics: map[string]float64{"a": 2}, Target: "t", Met: met(false)},
	})
	if r.Met == nil || *r.Met {
		t.Fatalf("met = %v, want false: one run missed", r.Met)
	}
}

func TestRateBetweenSamples(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s []fleetSample
	for i := 0; i <= 20; i++ { // 100 assignments per 50 ms sample: 2,000/s
		s = append(s, fleetSample{at: t0.Add(time.Duration(i) * 50 * time.Millisecond), assigned: int64(100 * i)})
	}
	got := rateBetween(s, t0.Add(100*time.Millisecond), t0.Add(time.Second), func(f fleetSample) int64 { return f.assigned })
	if got < 1999 || got > 2001 {
		t.Fatalf("rate = %v, want 2000", got)
	}
	if p := sampleAt(s, t0.Add(-time.Second)); p == nil || !p.at.Equal(t0) {
		t.Fatalf("sample before the series = %+v, want the first", p)
	}
	if p := sampleAt(s, t0.Add(74*time.Millisecond)); p.assigned != 100 {
		t.Fatalf("sample at 74 ms = %+v, want the one at 50 ms", p)
	}
	if rateBetween(nil, t0, t0.Add(time.Second), func(f fleetSample) int64 { return f.assigned }) != 0 {
		t.Fatal("rate of no samples should be 0")
	}
}

func TestAckLogBefore(t *testing.T) {
	var l ackLog
	l.add(10)
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	l.add(5)
	if got := l.before(mid); got != 10 {
		t.Fatalf("before(mid) = %d, want 10", got)
	}
	if got := l.before(time.Now()); got != 15 {
		t.Fatalf("before(now) = %d, want 15", got)
	}
	if got := l.before(mid.Add(-time.Hour)); got != 0 {
		t.Fatalf("before(an hour ago) = %d, want 0", got)
	}
}

func TestFleetReportParsing(t *testing.T) {
	r := &remoteFleet{assigned: map[string]time.Time{}, rttOn: true}
	ready := make(chan struct{})
	r.read(strings.NewReader("READY\nS 1000000000 5 4 3 2 1 7 0 0\nA lat-1 2000000000\nA lat-1 3000000000\nR 1500\nS bad\n"), ready)
	select {
	case <-ready:
	default:
		t.Fatal("READY not seen")
	}
	last := r.last()
	if last.assigned != 5 || last.finished != 4 || last.acked != 3 || last.connected != 2 || last.running != 1 || last.heartbeats != 7 {
		t.Fatalf("sample = %+v", last)
	}
	if at, ok := r.assignedAt("lat-1"); !ok || at.UnixNano() != 2_000_000_000 {
		t.Fatalf("lat-1 at %v %v, want the first report", at, ok)
	}
	if rtts := r.measureRTT(false); len(rtts) != 1 || rtts[0] != 1500*time.Microsecond {
		t.Fatalf("rtts = %v", rtts)
	}
}

func TestFleetOptsArgsParse(t *testing.T) {
	a := fleetOpts{servers: []string{"a:1", "b:2"}, n: 3, cpuMillis: 4000, memBytes: 1 << 30, duration: 20 * time.Millisecond,
		reportPrefix: "lat-", rtt: true}.args()
	if a[0] != "simagents" {
		t.Fatalf("args %v", a)
	}
	want := "-n 3 -servers a:1,b:2 -cpu 4000 -mem 1073741824 -duration 20ms -per-conn 1 -report-prefix lat- -rtt"
	if got := strings.Join(a[1:], " "); got != want {
		t.Fatalf("args %q, want %q", got, want)
	}
	if code := simagentsMain([]string{"-n", "0", "-servers", "x"}); code != 2 {
		t.Fatalf("simagents with -n 0 exited %d, want 2", code)
	}
}

func TestFSType(t *testing.T) {
	got := fsType(os.TempDir())
	if got == "" || strings.HasPrefix(got, "unknown") {
		t.Fatalf("fsType(temp dir) = %q", got)
	}
	if got := fsType("/no/such/dir"); !strings.HasPrefix(got, "unknown") {
		t.Fatalf("fsType of a missing dir = %q, want unknown", got)
	}
}

// TestMountSource: the mount that holds a path is the longest mount point
// above it, the last one mounted there winning; escaped spaces in mount
// points are read as spaces.
func TestMountSource(t *testing.T) {
	const mountinfo = `26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
27 26 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw
40 26 0:33 / /tmp rw,nosuid - tmpfs tmpfs rw
41 26 259:1 / /srv/banyan\040data rw - xfs /dev/nvme0n1p1 rw
42 41 259:2 / /srv/banyan\040data/raft rw - ext4 /dev/nvme1n1 rw
43 40 259:3 / /tmp rw - ext4 /dev/sdb1 rw
bad line
`
	for path, want := range map[string]string{
		"/":                             "/dev/vda",
		"/var/lib/banyan":               "/dev/vda",
		"/tmp":                          "/dev/sdb1",
		"/tmp/banyan-bench-1/s1":        "/dev/sdb1",
		"/tmpfoo":                       "/dev/vda",
		"/srv/banyan data/x":            "/dev/nvme0n1p1",
		"/srv/banyan data/raft/raft.db": "/dev/nvme1n1",
		"/dev/null":                     "devtmpfs",
	} {
		if got := mountSource(mountinfo, path); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if got := mountSource("", "/"); got != "" {
		t.Errorf("no mounts: %q", got)
	}
}

// A -keep run replaces the scenarios it ran and keeps the others' recorded
// results, each with its own commit, in the scenarios' order.
func TestKeptResults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latest.json")
	if got, err := keptResults(path, []Result{{Name: "submission"}}); err != nil || len(got) != 1 {
		t.Fatalf("no file yet: %v, %v", got, err)
	}
	old := `{"scenarios": [{"name": "placement", "commit": "aaa", "metrics": {"placed_per_s": 1}},
		{"name": "submission", "commit": "aaa", "metrics": {"acks_per_s": 1}},
		{"name": "true", "commit": "aaa", "metrics": {"tasks_per_s": 1}}]}`
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := keptResults(path, []Result{{Name: "submission", Commit: "bbb", Metrics: map[string]float64{"acks_per_s": 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got {
		names = append(names, fmt.Sprintf("%s@%v=%v", r.Name, r.Commit, r.Metrics))
	}
	want := "placement@aaa=map[placed_per_s:1] submission@bbb=map[acks_per_s:2] true@aaa=map[tasks_per_s:1]"
	if strings.Join(names, " ") != want {
		t.Fatalf("got %s, want %s", strings.Join(names, " "), want)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keptResults(path, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a damaged file: got %v, want an error naming it", err)
	}
}

// Writing the results keeps the peers' ratios that make bench-peers put in
// the same file.
func TestWriteResultsKeepsPeers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "latest.json")
	if err := os.WriteFile(path, []byte(`{"peers": {"submit_per_s": 0.4}, "placements_per_s": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options{out: dir, dataRoot: dir, runs: 3}
	if err := writeResults(o, "quick", []Result{{Name: "submission", Metrics: map[string]float64{"acks_per_s": 5000}}}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"submit_per_s": 0.4`) || !strings.Contains(string(data), `"submissions_per_s": 5000`) {
		t.Fatalf("latest.json lost the peers' ratios or the new figure:\n%s", data)
	}
}
