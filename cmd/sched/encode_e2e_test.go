package main_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/encoder"
)

// makeClip writes a small test clip with audio, 4 seconds long.
func makeClip(t *testing.T, path string) {
	t.Helper()
	makeClipFor(t, path, 4)
}

// makeClipFor writes a test clip with audio, seconds long (320x240, 25 fps,
// a keyframe every second).
func makeClipFor(t *testing.T, path string, seconds int) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg is required (make test installs it): %v", err)
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", path).CombinedOutput()
	if err != nil {
		t.Fatalf("make clip: %v\n%s", err, out)
	}
}

// TestEncodeThroughTheFarm encodes a clip through sched dev: the plan step
// fans out chunk encodes, one chunk fails its first attempt (a failpoint)
// and is retried alone, and the verified HLS output appears. A corrupt input
// then fails its job with ffprobe's reason and leaves the agents healthy,
// and an output outside the storage roots is refused.
func TestEncodeThroughTheFarm(t *testing.T) {
	work := t.TempDir()
	clip := filepath.Join(work, "clip.mp4")
	makeClip(t, clip)
	d := startDevWith(t, freeAddr(t), filepath.Join(work, "data"), 2, nil,
		"--storage-root", work, "--task-env", "BANYAN_FAILPOINT_CHUNK=1")
	out := filepath.Join(work, "out")
	stdout, stderr, err := d.run("encode", clip, "--ladder", "test", "--out", out, "--chunk", "1s")
	if err != nil {
		t.Fatalf("encode: %v\n%s\n%s\n%s", err, stdout, stderr, d.log.String())
	}
	for _, want := range []string{"succeeded", "verification PASSED", "STAGE"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("encode output lacks %q:\n%s", want, stdout)
		}
	}
	var rep struct {
		OK         bool `json:"ok"`
		Renditions []struct {
			Frames       int `json:"frames"`
			SourceFrames int `json:"source_frames"`
		} `json:"renditions"`
	}
	data, err := os.ReadFile(filepath.Join(out, "clip", "verify.json"))
	if err != nil || json.Unmarshal(data, &rep) != nil || !rep.OK || len(rep.Renditions) != 2 {
		t.Fatalf("verify.json: %v %s", err, data)
	}
	for _, r := range rep.Renditions {
		if r.Frames != 100 || r.SourceFrames != 100 {
			t.Fatalf("frames %d of %d", r.Frames, r.SourceFrames)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "clip", "hls", "master.m3u8")); err != nil {
		t.Fatal(err)
	}
	checkFarmOutput(t, clip, filepath.Join(out, "clip"), "test", time.Second)
	j := showJob(t, d, "job-1")
	retried := 0
	for _, task := range j.Tasks {
		if strings.HasPrefix(task.Name, "enc-") {
			switch {
			case strings.HasSuffix(task.Name, "-1"):
				if len(task.Attempts) != 2 || task.Attempts[0].Outcome != "failed" {
					t.Fatalf("chunk 1 task %s attempts %+v", task.ID, task.Attempts)
				}
				retried++
			case len(task.Attempts) != 1:
				t.Fatalf("task %s ran %d times; only the failed chunk should retry", task.ID, len(task.Attempts))
			}
		}
	}
	if retried != 2 { // chunk 1 of each of the two renditions
		t.Fatalf("%d chunk-1 tasks retried, want 2", retried)
	}

	bad := filepath.Join(work, "corrupt.mp4")
	if err := os.WriteFile(bad, []byte("this is not a video file"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = d.run("encode", bad, "--ladder", "test", "--out", out)
	if err == nil || !strings.Contains(stdout, "Invalid data found") && !strings.Contains(stdout, "moov atom") {
		t.Fatalf("corrupt input: err %v, output:\n%s", err, stdout)
	}
	// A studio delivery: a manifest of titles submitted as one batch.
	manifest := filepath.Join(work, "ingest.yaml")
	if err := os.WriteFile(manifest, []byte("ladder: test\nout: "+filepath.Join(work, "delivery")+
		"\ntitles:\n  - input: "+clip+"\n    name: ep101\n  - input: "+clip+"\n    name: ep102\n    priority: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if stdout, _, err := d.run("encode", "--manifest", manifest); err != nil ||
		strings.Count(stdout, "verification PASSED") != 2 {
		t.Fatalf("agents not healthy after a corrupt input, or manifest failed: %v\n%s", err, stdout)
	}
	stdout, _, err = d.run("encode", clip, "--ladder", "test", "--out", t.TempDir())
	if err == nil || !strings.Contains(stdout, "outside the storage roots") {
		t.Fatalf("output outside the roots: err %v, output:\n%s", err, stdout)
	}
}

// checkFarmOutput checks every rendition the farm made of source against
// the source and against a plain whole-file encode with the same settings
// (encoder.CheckConformance: frame count, timestamps, duration, clean
// decode, audio relation, PSNR within 0.25 dB with no frame more than 6 dB
// worse), and HLS segments adding up to the stream.
func checkFarmOutput(t *testing.T, source, outDir, ladderName string, chunk time.Duration) {
	t.Helper()
	ctx := context.Background()
	src, err := encoder.Probe(ctx, source)
	if err != nil {
		t.Fatalf("probe the source: %v", err)
	}
	ladder, err := encoder.LoadLadder(ladderName)
	if err != nil {
		t.Fatalf("ladder %s: %v", ladderName, err)
	}
	rends, _ := encoder.FitLadder(src, ladder)
	// The chunks the plan step made (sched encoder plan --chunk).
	chunks, err := encoder.PlanChunks(src, encoder.ChunkOptions{Target: chunk, Min: chunk * 2 / 5, Max: chunk * 2})
	if err != nil {
		t.Fatal(err)
	}

	videoFrame := src.TicksToDuration(src.EndPTS - src.FramePTS[src.FrameCount-1])
	for _, r := range rends {
		path := encoder.RenditionPath(outDir, r.Name)
		lim := encoder.DefaultConformLimits
		lim.ColdStarts = encoder.ColdStarts(src, chunks, r)
		c, err := encoder.CheckConformance(ctx, source, src, r, path, t.TempDir(), lim)
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		for _, p := range c.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
		sum, n, err := encoder.PlaylistDuration(filepath.Join(outDir, "hls", r.Name, "index.m3u8"))
		if err != nil {
			t.Fatalf("%s: playlist: %v", r.Name, err)
		}
		if math.Abs(sum-src.Duration.Seconds()) > videoFrame.Seconds() || n < 1 {
			t.Errorf("%s: %d HLS segments of %.6f s, stream %v", r.Name, n, sum, src.Duration)
		}
	}
}
