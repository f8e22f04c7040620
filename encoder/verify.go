package encoder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// VerifyJob checks assembled renditions (and their HLS index) against the
// source.
type VerifyJob struct {
	Source     string
	Renditions []IndexedRendition
	Master     string  // master playlist; "" skips the HLS checks
	MinPSNR    float64 // default 30 dB
}

// DefaultMinPSNR is the PSNR (dB, vs the source scaled to the rendition)
// below which Verify reports a problem.
const DefaultMinPSNR = 30

// RenditionReport is what Verify found for one rendition.
type RenditionReport struct {
	Name           string        `json:"name"`
	Frames         int           `json:"frames"`
	SourceFrames   int           `json:"source_frames"`
	Duration       time.Duration `json:"duration_ns"`
	SourceDuration time.Duration `json:"source_duration_ns"`
	PSNR           float64       `json:"psnr"`
	SSIM           float64       `json:"ssim"`
	OK             bool          `json:"ok"`
	Problems       []string      `json:"problems,omitempty"`
}

// Report is Verify's result; OK when every rendition is.
type Report struct {
	OK         bool              `json:"ok"`
	Renditions []RenditionReport `json:"renditions"`
}

// Verify checks every rendition: it decodes without errors; frame count
// equals the source's; first pts is 0, every frame's time from the start
// equals the source's (within 1 µs), so intervals match for CFR and VFR;
// the last pts is within 1 ms of the source's; audio (when the source has
// it) is present and its duration is within one audio frame plus one video
// frame of the video's; PSNR against the source is at least MinPSNR; and,
// with a master playlist, the rendition's playlist exists, its segment
// durations add up to the stream's duration (within one video frame) and
// ffmpeg reads the same number of frames back through it. Problems are
// reported, not returned as errors; an error means Verify could not run.
func Verify(ctx context.Context, j VerifyJob) (*Report, error) {
	src, err := Probe(ctx, j.Source)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	minPSNR := j.MinPSNR
	if minPSNR == 0 {
		minPSNR = DefaultMinPSNR
	}
	var variants []PlaylistVariant
	if j.Master != "" {
		if variants, err = ReadMaster(j.Master); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	rep := &Report{OK: true}
	for _, r := range j.Renditions {
		rr := RenditionReport{Name: r.Name, SourceFrames: src.FrameCount, SourceDuration: src.Duration}
		problem := func(f string, a ...any) { rr.Problems = append(rr.Problems, fmt.Sprintf(f, a...)) }
		out, err := Probe(ctx, r.Path)
		if err != nil {
			problem("probe: %v", err)
		} else {
			rr.Frames, rr.Duration = out.FrameCount, out.Duration
			for _, p := range CheckTimestamps(src, out) {
				problem("%s", p)
			}
			if msg, err := DecodeErrors(ctx, r.Path); err != nil {
				problem("decode: %v", err)
			} else if msg != "" {
				problem("decode errors: %s", msg)
			}
			if src.HasAudio {
				for _, p := range CheckAudio(src, out) {
					problem("%s", p)
				}
			}
			q, err := Compare(ctx, r.Path, j.Source, ReferenceFilter(src, outputRendition(out)))
			if err != nil {
				problem("quality: %v", err)
			} else {
				rr.PSNR, rr.SSIM = q.PSNR, q.SSIM
				if q.PSNR < minPSNR {
					problem("PSNR %.2f dB below %.2f", q.PSNR, minPSNR)
				}
			}
			if j.Master != "" {
				checkHLS(ctx, j.Master, variants, r.Name, out, src, problem)
			}
		}
		rr.OK = len(rr.Problems) == 0
		rep.OK = rep.OK && rr.OK
		rep.Renditions = append(rep.Renditions, rr)
	}
	if len(j.Renditions) == 0 {
		rep.OK = false
	}
	return rep, nil
}

// outputRendition describes an encoded output as the rendition that made
// it (size, codec, bit depth), for ReferenceFilter.
func outputRendition(out *Source) Rendition {
	r := Rendition{Width: out.Width, Height: out.Height, Codec: out.Codec}
	if out.BitDepth > 8 {
		r.BitDepth = 10
	}
	return r
}

// ExpectedAudio is how long an output's audio track lasts when it keeps
// src's audio/video relation: it starts with the first video frame
// (earlier audio trimmed, later audio delayed by silence) and ends where
// the source's audio ends, measured from the first video frame.
func ExpectedAudio(src *Source) time.Duration {
	return max(src.AudioEnd()-src.VideoStart(), 0)
}

// AudioTolerance is one audio frame (1024 samples) of out plus one video
// frame of src.
func AudioTolerance(src, out *Source) time.Duration {
	return time.Duration(float64(time.Second)*1024/float64(max(out.AudioSampleRate, 1))) + lastInterval(src)
}

// CheckAudio checks out's audio against src's audio/video relation (see
// ExpectedAudio), within AudioTolerance. It returns the problems found.
func CheckAudio(src, out *Source) []string {
	if !out.HasAudio {
		return []string{"audio missing"}
	}
	var p []string
	tol := AudioTolerance(src, out)
	want := ExpectedAudio(src)
	if d := (out.AudioDuration - want).Abs(); d > tol {
		p = append(p, fmt.Sprintf("audio lasts %v, want %v (the source's audio ends %v after its first video frame; its video lasts %v): off by %v (> %v)",
			out.AudioDuration, want, want, src.Duration, d, tol))
	}
	if d := (out.AudioStart - out.VideoStart()).Abs(); d > tol {
		p = append(p, fmt.Sprintf("audio starts %v from the video, want 0 (> %v)", out.AudioStart-out.VideoStart(), tol))
	}
	if out.AudioChannels != src.AudioChannels {
		p = append(p, fmt.Sprintf("audio has %d channels, source %d", out.AudioChannels, src.AudioChannels))
	}
	return p
}

func lastInterval(s *Source) time.Duration {
	n := len(s.FramePTS)
	return s.TicksToDuration(s.EndPTS - s.FramePTS[n-1])
}

func checkHLS(ctx context.Context, master string, variants []PlaylistVariant, name string, out, src *Source, problem func(string, ...any)) {
	var uri string
	for _, v := range variants {
		if strings.HasPrefix(v.URI, name+"/") {
			uri = v.URI
		}
	}
	if uri == "" {
		problem("hls: no variant for %s in master", name)
		return
	}
	pl := filepath.Join(filepath.Dir(master), filepath.FromSlash(uri))
	sum, n, err := PlaylistDuration(pl)
	if err != nil {
		problem("hls: %v", err)
		return
	}
	dur := out.Duration.Seconds()
	if d := math.Abs(sum - dur); d > lastInterval(src).Seconds()+0.001 || n == 0 {
		problem("hls: %d segments add up to %.6fs, stream is %.6fs", n, sum, dur)
	}
	frames, err := CountPackets(ctx, pl)
	if err != nil {
		problem("hls: read back: %v", err)
	} else if frames != src.FrameCount {
		problem("hls: read back %d frames, source has %d", frames, src.FrameCount)
	}
}

// CheckTimestamps compares an output's video timestamps with the source's:
// same frame count, first pts 0, every frame at the same time from the start
// (within 1 µs) and the last pts within 1 ms. It returns the problems found.
func CheckTimestamps(src, out *Source) []string {
	var p []string
	if out.FrameCount != src.FrameCount {
		p = append(p, fmt.Sprintf("%d frames, source has %d", out.FrameCount, src.FrameCount))
	}
	if out.FramePTS[0] != 0 {
		p = append(p, fmt.Sprintf("first pts %d, want 0", out.FramePTS[0]))
	}
	n := min(len(out.FramePTS), len(src.FramePTS))
	bad := 0
	for i := 0; i < n; i++ {
		a := out.TicksToDuration(out.FramePTS[i] - out.FramePTS[0])
		b := src.TicksToDuration(src.FramePTS[i] - src.FramePTS[0])
		if (a - b).Abs() > time.Microsecond {
			if bad == 0 {
				p = append(p, fmt.Sprintf("frame %d at %v, source at %v", i, a, b))
			}
			bad++
		}
	}
	if bad > 1 {
		p = append(p, fmt.Sprintf("%d frames off the source's timestamps", bad))
	}
	la := out.TicksToDuration(out.FramePTS[len(out.FramePTS)-1] - out.FramePTS[0])
	lb := src.TicksToDuration(src.FramePTS[len(src.FramePTS)-1] - src.FramePTS[0])
	if (la - lb).Abs() > time.Millisecond {
		p = append(p, fmt.Sprintf("last pts at %v, source at %v", la, lb))
	}
	return p
}

// DecodeErrors decodes path fully (ffmpeg -v error -f null) and returns the
// errors ffmpeg printed ("" when clean).
func DecodeErrors(ctx context.Context, path string) (string, error) {
	_, stderr, err := runTool(ctx, FFmpeg, []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error",
		"-i", fileArg(path), "-f", "null", "-"})
	if err != nil {
		return "", err
	}
	return tailLines(stderr, 4), nil
}

// Quality is a comparison of a distorted video with a reference.
type Quality struct {
	PSNR      float64   // average over frames, dB
	SSIM      float64   // average ("All")
	FramePSNR []float64 // per frame, in order; +Inf frames capped at 100
}

var (
	psnrRE = lazyRegexp(`PSNR .*average:([0-9.]+|inf)`)
	ssimRE = lazyRegexp(`SSIM .*All:([0-9.]+)`)
	statRE = lazyRegexp(`psnr_avg:([0-9.]+|inf)`)
)

// Compare measures PSNR and SSIM of dist against ref passed through
// refFilter (ReferenceFilter: the encode's deinterlacing, scaling and
// tone-mapping), pairing frames by timestamp from each stream's start.
func Compare(ctx context.Context, dist, ref, refFilter string) (*Quality, error) {
	if refFilter == "" || strings.ContainsAny(refFilter, "[];\x00\n") {
		return nil, fmt.Errorf("compare: bad reference filter %q", refFilter)
	}
	ad, err := filepath.Abs(dist)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	ar, err := filepath.Abs(ref)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	dir, err := os.MkdirTemp("", "banyan-psnr-")
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	defer os.RemoveAll(dir)
	graph := "[0:v]setpts=PTS-STARTPTS,format=yuv420p,split[d1][d2];" +
		"[1:v]setpts=PTS-STARTPTS," + refFilter + ",format=yuv420p,split[r1][r2];" +
		"[d1][r1]psnr=stats_file=psnr.log[o1];[d2][r2]ssim[o2]"
	// Runs in dir so the stats file name needs no escaping.
	_, stderr, err := runToolIn(ctx, dir, FFmpeg, []string{"-hide_banner", "-nostdin", "-nostats", "-v", "info",
		"-i", fileArg(ad), "-i", fileArg(ar), "-filter_complex", graph,
		"-map", "[o1]", "-f", "null", "-", "-map", "[o2]", "-f", "null", "-"})
	if err != nil {
		return nil, fmt.Errorf("compare %s: %w", dist, err)
	}
	q := &Quality{}
	m := psnrRE().FindSubmatch(stderr)
	s := ssimRE().FindSubmatch(stderr)
	if m == nil || s == nil {
		return nil, fmt.Errorf("compare %s: no PSNR/SSIM in ffmpeg output: %s", dist, tailLines(stderr, 3))
	}
	q.PSNR = parseDB(string(m[1]))
	q.SSIM, _ = strconv.ParseFloat(string(s[1]), 64)
	stats, err := os.ReadFile(filepath.Join(dir, "psnr.log"))
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	for _, l := range strings.Split(string(stats), "\n") {
		if mm := statRE().FindStringSubmatch(l); mm != nil {
			q.FramePSNR = append(q.FramePSNR, parseDB(mm[1]))
		}
	}
	if len(q.FramePSNR) == 0 {
		return nil, errors.New("compare: empty PSNR stats")
	}
	return q, nil
}

func parseDB(s string) float64 {
	if s == "inf" {
		return 100
	}
	f, _ := strconv.ParseFloat(s, 64)
	return math.Min(f, 100)
}
