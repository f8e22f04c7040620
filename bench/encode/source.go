package encode

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Content kinds of the generated source.
const (
	ContentMix      = "mix"      // testsrc2, mandelbrot, life, noisy testsrc2: chunk cost varies
	ContentTestsrc2 = "testsrc2" // testsrc2 throughout
)

// generateSource writes a w x h clip of d at fps with a sine tone (AAC) and
// a fixed keyframe interval of gop frames (H.264, CRF 18) into out.
func generateSource(ctx context.Context, ffmpeg, out, content string, w, h, fps int, d time.Duration, gop int) error {
	frames := int(d.Seconds()*float64(fps) + 0.5)
	if frames < 1 {
		return fmt.Errorf("source: duration %v is less than a frame", d)
	}
	size := "s=" + strconv.Itoa(w) + "x" + strconv.Itoa(h) + ":r=" + strconv.Itoa(fps)
	var segs []string
	switch content {
	case ContentTestsrc2:
		segs = []string{"testsrc2=" + size}
	case ContentMix:
		segs = []string{
			"testsrc2=" + size,
			"mandelbrot=" + size,
			"life=" + size + ":mold=10:ratio=0.1:life_color=#00ff00:death_color=#aa0000",
			"testsrc2=" + size + ",noise=alls=25:allf=t",
		}
	default:
		return fmt.Errorf("source: unknown content %q (want %s or %s)", content, ContentMix, ContentTestsrc2)
	}
	if len(segs) > frames {
		segs = segs[:1]
	}
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"}
	for _, s := range segs {
		a = append(a, "-f", "lavfi", "-i", s)
	}
	a = append(a, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration="+strconv.FormatFloat(float64(frames)/float64(fps), 'f', 6, 64))
	var g strings.Builder
	left := frames
	for i := range segs {
		n := left / (len(segs) - i)
		left -= n
		fmt.Fprintf(&g, "[%d:v]trim=end_frame=%d,setpts=PTS-STARTPTS,format=yuv420p,setsar=1[s%d];", i, n, i)
	}
	for i := range segs {
		fmt.Fprintf(&g, "[s%d]", i)
	}
	fmt.Fprintf(&g, "concat=n=%d:v=1:a=0[v]", len(segs))
	gs := strconv.Itoa(gop)
	a = append(a, "-filter_complex", g.String(), "-map", "[v]", "-map", strconv.Itoa(len(segs))+":a",
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", gs, "-keyint_min", gs, "-sc_threshold", "0",
		"-x264-params", "open-gop=0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
		"-movflags", "+faststart", "-f", "mp4", "file:"+out)
	if b, err := exec.CommandContext(ctx, ffmpeg, a...).CombinedOutput(); err != nil {
		return fmt.Errorf("generate source: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}
