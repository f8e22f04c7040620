package encoder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, p := range []string{FFmpeg, FFprobe} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
}

// gen makes a test clip with ffmpeg from lavfi arguments.
func gen(t *testing.T, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	a := append([]string{"-hide_banner", "-nostdin", "-v", "error", "-y"}, args...)
	a = append(a, out)
	if b, err := exec.Command(FFmpeg, a...).CombinedOutput(); err != nil {
		t.Fatalf("generate %s: %v: %s", name, err, b)
	}
	return out
}

type pipeResult struct {
	src       *Source
	chunks    []Chunk
	assembled map[string]string
	dir       string
}

// runPipeline runs plan, encode (2 in parallel), audio and assemble for
// every rendition, checking chunk frame counts on the way.
func runPipeline(t *testing.T, path string, opt ChunkOptions, rends []Rendition) pipeResult {
	t.Helper()
	ctx := context.Background()
	src, err := Probe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.FrameBytes) != src.FrameCount || slices.Contains(src.FrameBytes, 0) {
		t.Fatalf("probe: %d frame sizes for %d frames (zeros: %v)", len(src.FrameBytes), src.FrameCount, slices.Contains(src.FrameBytes, 0))
	}
	chunks, err := PlanChunks(src, opt)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, c := range chunks {
		sum += c.Frames
	}
	if sum != src.FrameCount || len(chunks) < 2 {
		t.Fatalf("plan: %d chunks with %d frames, source has %d", len(chunks), sum, src.FrameCount)
	}
	dir := t.TempDir()
	res := pipeResult{src: src, chunks: chunks, assembled: map[string]string{}, dir: dir}
	audio := filepath.Join(dir, "audio.m4a")
	if err := EncodeAudio(ctx, AudioJob{Source: path, Out: audio}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rends {
		files := make([]string, len(chunks))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		errs := make([]error, len(chunks))
		for i, c := range chunks {
			files[i] = filepath.Join(dir, r.Name, "chunks", fmt.Sprintf("%05d.%s", i, ChunkExt))
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				// Every other chunk re-probes, as the CLI does.
				var s *Source
				if i%2 == 0 {
					s = src
				}
				errs[i] = EncodeChunk(ctx, ChunkJob{Source: path, Chunk: c, Src: s, Rendition: r, Threads: 1, Out: files[i]})
			}()
		}
		wg.Wait()
		for i, c := range chunks {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			np, err := CountPackets(ctx, files[i])
			if err != nil {
				t.Fatal(err)
			}
			nf, err := CountFrames(ctx, files[i])
			if err != nil {
				t.Fatal(err)
			}
			if np != c.Frames || nf != c.Frames {
				t.Fatalf("%s chunk %d: %d packets, %d frames, planned %d", r.Name, i, np, nf, c.Frames)
			}
		}
		out := filepath.Join(dir, r.Name, r.Name+".mp4")
		if err := Assemble(ctx, AssembleJob{Chunks: files, Audio: audio, Src: src, Out: out}); err != nil {
			t.Fatal(err)
		}
		res.assembled[r.Name] = out
	}
	return res
}

// checkAssembled checks the assembled rendition frame by frame against the
// source and a whole-file encode (CheckConformance), and that its frame
// intervals are the source's exactly.
func checkAssembled(t *testing.T, path string, res pipeResult, r Rendition) {
	t.Helper()
	ctx := context.Background()
	out := res.assembled[r.Name]
	o, err := Probe(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < min(o.FrameCount, res.src.FrameCount); i++ {
		a := o.TicksToDuration(o.FramePTS[i] - o.FramePTS[i-1])
		b := res.src.TicksToDuration(res.src.FramePTS[i] - res.src.FramePTS[i-1])
		if (a - b).Abs() > time.Microsecond {
			t.Fatalf("interval %d: %v vs source %v", i, a, b)
		}
	}
	lim := DefaultConformLimits
	lim.ColdStarts = ColdStarts(res.src, res.chunks, r)
	c, err := CheckConformance(ctx, path, res.src, r, out, res.dir, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: chunked PSNR %.3f, whole %.3f; worst frame %d %.2f dB worse", r.Name, c.ChunkedPSNR, c.Whole, c.WorstFrame, c.WorstFrameLoss)
	for _, p := range c.Problems {
		t.Errorf("%s: %s", r.Name, p)
	}
}

var testRend = Rendition{Name: "240p", Width: 320, Height: 240, Codec: "h264", CRF: 23, Preset: "veryfast"}

// TestPipelineCFRFarKeyframes: CFR with audio, B-frames and a single
// keyframe (keyint larger than the clip), so every cut is between keyframes;
// two renditions, then Index and Verify.
func TestPipelineCFRFarKeyframes(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "cfr.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=6",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=6:sample_rate=48000",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-bf", "3", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest")
	small := Rendition{Name: "120p", Width: 160, Height: 120, Codec: "h264", CRF: 23, Preset: "veryfast"}
	res := runPipeline(t, path, ChunkOptions{Target: 2 * time.Second, Min: time.Second, Max: 3 * time.Second}, []Rendition{testRend, small})
	if len(res.src.Keyframes) != 1 {
		t.Fatalf("want 1 keyframe in source, got %v", res.src.Keyframes)
	}
	checkAssembled(t, path, res, testRend)
	ctx := context.Background()
	hls := filepath.Join(res.dir, "hls")
	irs := []IndexedRendition{
		{Name: "240p", Path: res.assembled["240p"], Width: 320, Height: 240},
		{Name: "120p", Path: res.assembled["120p"], Width: 160, Height: 120},
	}
	if err := Index(ctx, IndexJob{Renditions: irs, OutDir: hls, SegmentSeconds: 2}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, VerifyJob{Source: path, Renditions: irs, Master: filepath.Join(hls, MasterPlaylist)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Renditions {
		t.Logf("verify %s: frames %d/%d psnr %.2f ssim %.4f ok=%v %v", r.Name, r.Frames, r.SourceFrames, r.PSNR, r.SSIM, r.OK, r.Problems)
	}
	if !rep.OK {
		t.Fatal("verify not OK")
	}
	for _, r := range irs {
		sum, n, err := PlaylistDuration(filepath.Join(hls, r.Name, "index.m3u8"))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(sum-res.src.Duration.Seconds()) > 0.034 || n < 2 {
			t.Errorf("%s: %d segments, %.6fs vs %v", r.Name, n, sum, res.src.Duration)
		}
	}
}

// TestPipelineVFR: two parts of different frame rates (30 and 24 fps)
// concatenated, time base 1/1000000.
func TestPipelineVFR(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "vfr.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2.5",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=2.5",
		"-f", "lavfi", "-i", "sine=frequency=300:duration=5:sample_rate=44100",
		"-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-map", "2:a",
		"-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac")
	res := runPipeline(t, path, ChunkOptions{Target: 1500 * time.Millisecond, Min: time.Second, Max: 2500 * time.Millisecond}, []Rendition{testRend})
	if !res.src.VFR {
		t.Fatal("source not detected as VFR")
	}
	checkAssembled(t, path, res, testRend)
}

// TestPipelineOpenGOPHEVC: an x265 source with open GOPs and B-frames; the
// chunks are cut at its CRA keyframes, whose leading pictures belong to the
// previous chunk. Output is HEVC too.
func TestPipelineOpenGOPHEVC(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "open.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=5",
		"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "open-gop=1:keyint=25:min-keyint=25:bframes=4:scenecut=0:log-level=error",
		"-pix_fmt", "yuv420p")
	r := Rendition{Name: "hevc", Width: 320, Height: 240, Codec: "hevc", CRF: 26, Preset: "ultrafast"}
	res := runPipeline(t, path, ChunkOptions{Target: 2 * time.Second, Min: time.Second, Max: 3 * time.Second}, []Rendition{r})
	if len(res.src.Keyframes) < 4 {
		t.Fatalf("want CRA keyframes, got %v", res.src.Keyframes)
	}
	for _, c := range res.chunks[1:] {
		isKey := false
		for _, k := range res.src.Keyframes {
			isKey = isKey || k == c.StartFrame
		}
		if !isKey {
			t.Errorf("chunk %d starts at non-keyframe %d", c.Index, c.StartFrame)
		}
	}
	checkAssembled(t, path, res, r)
}

func TestCorruptInput(t *testing.T) {
	needFFmpeg(t)
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mp4")
	if err := os.WriteFile(garbage, []byte("this is not a video file at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Probe(ctx, garbage)
	var te *ToolError
	if !errors.Is(err, ErrBadInput) || !errors.As(err, &te) || te.Reason == "" {
		t.Fatalf("garbage: want ErrBadInput with ffprobe's reason, got %v", err)
	}
	t.Logf("garbage: %v", err)
	err = EncodeChunk(ctx, ChunkJob{Source: garbage, Chunk: Chunk{Frames: 10}, Rendition: testRend, Out: filepath.Join(dir, "c.nut")})
	if !errors.Is(err, ErrBadInput) || !errors.As(err, &te) || te.Reason == "" {
		t.Fatalf("encode chunk of garbage: got %v", err)
	}

	good := gen(t, "good.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.mp4")
	if err := os.WriteFile(trunc, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Probe(ctx, trunc)
	if !errors.Is(err, ErrBadInput) {
		t.Fatalf("truncated: want ErrBadInput, got %v", err)
	}
	t.Logf("truncated: %v", err)
	// moov first, media data cut: the container promises more frames.
	fs := gen(t, "faststart.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart")
	if data, err = os.ReadFile(fs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trunc, data[:len(data)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Probe(ctx, trunc)
	if !errors.Is(err, ErrBadInput) {
		t.Fatalf("truncated faststart: want ErrBadInput, got %v", err)
	}
	t.Logf("truncated faststart: %v", err)
	err = EncodeChunk(ctx, ChunkJob{Source: trunc, Chunk: Chunk{Frames: 10}, Rendition: testRend, Out: filepath.Join(dir, "c.nut")})
	if !errors.Is(err, ErrBadInput) {
		t.Fatalf("encode chunk of truncated: got %v", err)
	}
	_, err = Probe(ctx, filepath.Join(dir, "missing.mp4"))
	if !errors.Is(err, ErrBadInput) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: got %v", err)
	}
}

// TestCPUBackendsEncode runs every CPU backend's real command line through
// a two-chunk encode and assembly (x265 and SVT-AV1 parameter strings are
// checked by the encoders themselves).
func TestCPUBackendsEncode(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "short.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=2",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-pix_fmt", "yuv420p")
	for _, r := range []Rendition{
		{Name: "x265", Width: 160, Height: 120, Codec: "hevc", CRF: 30, Preset: "ultrafast", MaxRate: "500k"},
		{Name: "svt", Width: 160, Height: 120, Codec: "av1", CRF: 40, Preset: "12"},
	} {
		res := runPipeline(t, path, ChunkOptions{Target: time.Second, Min: 500 * time.Millisecond, Max: 1500 * time.Millisecond}, []Rendition{r})
		o, err := Probe(context.Background(), res.assembled[r.Name])
		if err != nil {
			t.Fatal(err)
		}
		if p := CheckTimestamps(res.src, o); len(p) > 0 || o.Codec != r.Codec {
			t.Errorf("%s: %v codec %s", r.Name, p, o.Codec)
		}
	}
}

func TestPlanEncode(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "p.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	p, _, err := PlanEncode(context.Background(), path, "test", t.TempDir(), ChunkOptions{Target: time.Second, Min: 500 * time.Millisecond, Max: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// 3 chunks x 2 renditions + 2 asm + index + verify; no audio.
	if len(p.Tasks) != 10 {
		t.Errorf("got %d tasks", len(p.Tasks))
	}
}

// TestPipelineNonIDRKeyframes: an H.264 High 4:4:4 source with B-frames
// whose keyframes after the first are intra-refresh recovery points, not
// IDR pictures (issue 9, point 1: a seek there decodes garbage or nothing).
// The chunks that start there must notice and redo themselves from a clean
// start, so the title conforms frame by frame.
func TestPipelineNonIDRKeyframes(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "ir.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=20:duration=6",
		"-c:v", "libx264", "-preset", "fast", "-pix_fmt", "yuv444p", "-bf", "3", "-refs", "4",
		"-x264-params", "intra-refresh=1:keyint=40")
	src, err := Probe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Keyframes) < 3 || len(src.CleanKeys) != 1 {
		t.Fatalf("want several keyframes of which only the first is clean: keys %v clean %v", src.Keyframes, src.CleanKeys)
	}
	res := runPipeline(t, path, ChunkOptions{Target: 2 * time.Second, Min: time.Second, Max: 3 * time.Second}, []Rendition{testRend})
	checkAssembled(t, path, res, testRend)
}

// TestPipelineAudioAfterVideo: audio that starts half a second after the
// video and lasts longer than it is delayed by silence, so each sample plays
// against the same picture, and verify's audio check passes.
func TestPipelineAudioAfterVideo(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "late.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
		"-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=frequency=500:duration=4:sample_rate=48000",
		"-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac")
	res := runPipeline(t, path, ChunkOptions{Target: 2 * time.Second, Min: time.Second, Max: 3 * time.Second}, []Rendition{testRend})
	if d := res.src.AudioStart - res.src.VideoStart(); d < 400*time.Millisecond {
		t.Fatalf("source audio starts %v after the video, want about 0.5s", d)
	}
	if want := ExpectedAudio(res.src); (want - 4500*time.Millisecond).Abs() > 50*time.Millisecond {
		t.Errorf("expected output audio %v, want about 4.5s", want)
	}
	checkAssembled(t, path, res, testRend)
}

// TestAudioArgsRelation: audio before the first video frame is trimmed,
// audio after it is delayed by exactly the gap in samples.
func TestAudioArgsRelation(t *testing.T) {
	base := Source{FramePTS: []int64{0}, TimeBase: Rational{1, 1000}, HasAudio: true, AudioSampleRate: 48000, AudioChannels: 2}
	late := base
	late.AudioStart = 250 * time.Millisecond
	early := base
	early.FramePTS = []int64{100}
	early.AudioStart = 0
	for _, tc := range []struct {
		name string
		src  Source
		want string
	}{
		{"late audio is delayed", late, "adelay=delays=12000S:all=1"},
		{"early audio is trimmed", early, "atrim=start=0.100000"},
		{"aligned audio is untouched", base, ""},
	} {
		a, err := AudioArgs(&tc.src, AudioJob{Source: "in.mp4", Out: "out.m4a"})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(a, " ")
		if tc.want == "" && strings.Contains(got, "-af") || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: %s", tc.name, got)
		}
	}
	surround := base
	surround.AudioChannels = 6
	a, _ := AudioArgs(&surround, AudioJob{Source: "in.mp4", Out: "out.m4a"})
	if !strings.Contains(strings.Join(a, " "), "-b:a "+SurroundAudioBitrate) {
		t.Errorf("5.1 audio: %v", a)
	}
}

// TestDamagedFrameFailsWithDecodeError: a source whose container and
// packets are intact but one frame's slice data is damaged probes fine; the
// chunk holding that frame reports decoder errors even from the file's
// start and fails with ErrDecode (not retried), while the other chunks
// encode.
func TestDamagedFrameFailsWithDecodeError(t *testing.T) {
	needFFmpeg(t)
	path := gen(t, "ok.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p")
	ctx := context.Background()
	src, err := Probe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// Damage the largest non-key frame's slice data in the second half.
	all, _, err := scanPackets(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	victim := -1
	for i, p := range all {
		if !p.key && i > len(all)/2 && (victim < 0 || p.size > all[victim].size) {
			victim = i
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, all[victim].size/2)
	for i := range junk {
		junk[i] = byte(i*131 + 7)
	}
	if _, err := f.WriteAt(junk, all[victim].pos+int64(all[victim].size)/3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	damaged, err := Probe(ctx, path)
	if err != nil {
		t.Fatalf("the damage shows only when decoding, but probe failed: %v", err)
	}
	if damaged.FrameCount != src.FrameCount {
		t.Fatalf("probe: %d frames, want %d", damaged.FrameCount, src.FrameCount)
	}
	chunks, err := PlanChunks(damaged, ChunkOptions{Target: time.Second, Min: 500 * time.Millisecond, Max: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, c := range chunks {
		err := EncodeChunk(ctx, ChunkJob{Source: path, Src: damaged, Chunk: c, Rendition: testRend, Out: filepath.Join(t.TempDir(), "c.nut")})
		switch {
		case err == nil:
		case errors.Is(err, ErrDecode):
			bad++
			t.Logf("chunk %d: %v", c.Index, err)
		default:
			t.Fatalf("chunk %d: %v", c.Index, err)
		}
	}
	if bad != 1 {
		t.Errorf("%d chunks failed with ErrDecode, want the one holding the damaged frame", bad)
	}
}
