package encoder

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestLongTitlePlan probes and plans a two-hour 1080p title with audio
// (a 10 s clip stream-copied 720 times, so the test stays quick): every
// frame is found once, chunks cover the title within their bounds, and the
// probe and plan run in bounded memory (logged with their time; the
// closing figures come from this log).
func TestLongTitlePlan(t *testing.T) {
	needFFmpeg(t)
	if testing.Short() {
		t.Skip("long title: skipped with -short")
	}
	clip := gen(t, "clip.mp4", "-f", "lavfi", "-i", "color=c=gray:size=1920x1080:rate=30:duration=10",
		"-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "10",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-bf", "0", "-c:a", "aac", "-b:a", "32k")
	dir := t.TempDir()
	list := filepath.Join(dir, "list.ffconcat")
	var sb strings.Builder
	sb.WriteString("ffconcat version 1.0\n")
	for range 720 {
		sb.WriteString("file '" + clip + "'\n")
	}
	if err := os.WriteFile(list, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	long := gen(t, "long.mp4", "-f", "concat", "-safe", "0", "-i", list, "-c", "copy")
	ctx := context.Background()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	src, err := Probe(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	probeTime := time.Since(t0)
	rends, _ := FitLadder(src, DefaultLadder())
	l := *DefaultLadder()
	l.Renditions = rends
	chunks, err := PlanChunks(src, ChunkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := BuildGraph(GraphOptions{Source: long, OutDir: dir, Src: src, Chunks: chunks, Ladder: &l, ProbeFile: SourcePath(dir)})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := json.Marshal(Plan{Tasks: tasks})
	if err != nil {
		t.Fatal(err)
	}
	planTime := time.Since(t0)
	runtime.ReadMemStats(&after)
	if src.FrameCount != 216000 || (src.Duration-2*time.Hour).Abs() > 34*time.Millisecond {
		t.Fatalf("probe: %d frames, %v", src.FrameCount, src.Duration)
	}
	if len(src.Keyframes) != 3600 || len(src.CleanKeys) != 3600 {
		t.Errorf("%d keyframes, %d clean; want 3600", len(src.Keyframes), len(src.CleanKeys))
	}
	covered := 0
	for _, c := range chunks {
		if d := ChunkDuration(src, c); d < DefaultChunkMin || d > DefaultChunkMax {
			t.Errorf("chunk %d lasts %v", c.Index, d)
		}
		covered += c.Frames
	}
	if covered != src.FrameCount {
		t.Errorf("chunks cover %d frames of %d", covered, src.FrameCount)
	}
	if (src.AudioDuration - 2*time.Hour).Abs() > 50*time.Millisecond {
		t.Errorf("audio lasts %v", src.AudioDuration)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("2 h 1080p title: probe %v, probe+plan %v; %d chunks, %d tasks, plan %d KiB; heap %d MiB after (grew %d MiB), %d MiB allocated in all",
		probeTime.Round(time.Millisecond), planTime.Round(time.Millisecond), len(chunks), len(tasks), len(plan)>>10,
		after.HeapAlloc>>20, grown>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	if grown > 256<<20 {
		t.Errorf("heap grew by %d MiB while probing and planning", grown>>20)
	}
}
