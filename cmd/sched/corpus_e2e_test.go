package main_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/encoder/corpus"
)

// TestCorpusThroughTheFarm sends the media corpus (encoder/corpus: camera,
// phone, edit-suite, broadcast and screen-recorder traits, and real files
// from Debian packages where present) through sched dev with two agents and
// the default ladder, as a user would: bad inputs first (each must fail its
// job within 10 s of submission with a permanent class and its reason, and
// leave the agents healthy), then every valid title, each checked frame by
// frame (checkFarmOutput) against the source and a whole-file encode.
func TestCorpusThroughTheFarm(t *testing.T) {
	entries, err := corpus.BuildCached(context.Background())
	if err != nil {
		t.Fatalf("build corpus: %v", err)
	}
	dir, err := corpus.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	roots := []string{"--storage-root", work, "--storage-root", dir}
	for _, e := range entries {
		if e.Package != "" {
			roots = append(roots, "--storage-root", filepath.Dir(e.File))
		}
	}
	d := startDevWith(t, freeAddr(t), filepath.Join(work, "data"), 2, nil, roots...)
	out := filepath.Join(work, "out")

	var bad, good []corpus.Entry
	for _, e := range entries {
		if e.Valid {
			good = append(good, e)
		} else {
			bad = append(bad, e)
		}
	}
	args := []string{"encode", "--out", filepath.Join(out, "bad"), "--chunk", "2s"}
	for _, e := range bad {
		args = append(args, e.File)
	}
	stdout, _, err := d.run(args...)
	if err == nil {
		t.Fatalf("bad inputs were encoded:\n%s", stdout)
	}
	for i, e := range bad {
		j := showCorpusJob(t, d, "job-"+strconv.Itoa(i+1))
		took := time.Duration(j.FinishedMs-j.SubmittedMs) * time.Millisecond
		class := j.permanentClass()
		t.Logf("%s: %s in %v (%s): %s", e.Name, j.State, took, class, j.Reason)
		if !strings.HasSuffix(strings.ToLower(j.State), "failed") || class == "" || took > 10*time.Second || j.Reason == "" {
			t.Errorf("%s (%s): state %s after %v, class %q, reason %q; want failed within 10s with a permanent class",
				e.Name, e.BadReason, j.State, took, class, j.Reason)
		}
	}

	// Short sources are cut every 2 s so that they are cut at all; longer
	// ones (real recordings) with the default 10 s chunks.
	short := map[bool][]corpus.Entry{}
	for _, e := range good {
		isShort := e.VideoDuration <= 10*time.Second
		short[isShort] = append(short[isShort], e)
	}
	chunkOf := map[string]time.Duration{}
	for _, s := range []bool{true, false} {
		chunk := 10 * time.Second
		if s {
			chunk = 2 * time.Second
		}
		if len(short[s]) == 0 {
			continue
		}
		args = []string{"encode", "--out", filepath.Join(out, "good"), "--chunk", chunk.String()}
		for _, e := range short[s] {
			args = append(args, e.File)
			chunkOf[e.Name] = chunk
		}
		start := time.Now()
		stdout, stderr, err := d.run(args...)
		t.Logf("%d titles encoded in %v with %v chunks", len(short[s]), time.Since(start).Round(time.Millisecond), chunk)
		if err != nil {
			t.Fatalf("encode the corpus: %v\n%s\n%s", err, stdout, stderr)
		}
		if n := strings.Count(stdout, "verification PASSED"); n != len(short[s]) {
			t.Fatalf("%d of %d titles verified:\n%s", n, len(short[s]), stdout)
		}
		if s && !strings.Contains(stdout, "kept at the source's size") {
			t.Errorf("the summary does not say what the ladder did to small sources:\n%s", stdout)
		}
	}
	for _, e := range good {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			name := strings.TrimSuffix(filepath.Base(e.File), filepath.Ext(e.File))
			checkFarmOutput(t, e.File, filepath.Join(out, "good", name), "default", chunkOf[e.Name])
		})
	}
}

// corpusJob is the part of `sched job show -o json` this test reads.
type corpusJob struct {
	State       string `json:"state"`
	Reason      string `json:"reason"`
	SubmittedMs int64  `json:"submitted_unix_ms"`
	FinishedMs  int64  `json:"finished_unix_ms"`
	Tasks       []struct {
		Name     string `json:"name"`
		Attempts []struct {
			Class string `json:"failure_class"`
		} `json:"attempts"`
	} `json:"tasks"`
}

// permanentClass returns the first failure class of a permanent kind any
// attempt of the job ended with ("" if none).
func (j corpusJob) permanentClass() string {
	for _, t := range j.Tasks {
		for _, a := range t.Attempts {
			switch a.Class {
			case "bad_input", "decode_error", "verification_failed":
				return a.Class
			}
		}
	}
	return ""
}

func showCorpusJob(t *testing.T, d *devProc, id string) corpusJob {
	t.Helper()
	var j corpusJob
	showJobAs(t, d, id, &j)
	return j
}
