// Package corpus builds small media files that carry the traits of real
// camera, phone, edit-suite and screen-recorder sources (issue 9): open GOPs,
// parameter sets that change mid-stream, field-coded video, rotation and
// aspect metadata, edit lists, audio that starts or ends apart from the
// video, variable frame rates, mezzanine codecs, and broken files that must
// be refused.
//
// Every entry is a recipe: ffmpeg runs over lavfi sources (testsrc2,
// mandelbrot, sine, anoisesrc) with encoder, filter, metadata, concat and
// muxer options, plus a few byte-level edits done in Go where
// ffmpeg 5.1 cannot make the trait (an AVI header that claims one frame too
// many, a shortened MP4 edit list, a display matrix, truncation and
// corruption). Next to the recipe, an Entry states what the decoder presents
// for that file: the truth a correct encode must keep. corpus_test.go checks
// every stated trait against ffprobe and ffmpeg.
//
// Files are small (mostly 320x240 or less, a few seconds; the largest is
// 1279x719 for 15 frames) so that the whole corpus goes through the encoder
// in `make test`; building all of it takes about 10 s on two cores. Build caches each file
// under a name made from a hash of its recipe and of the ffmpeg version, so
// a file is made again only when its recipe (or ffmpeg) changes. Encoders
// run single-threaded and muxers bitexact, so a recipe makes the same bytes
// each time.
//
// DebianEntries lists real files shipped by Debian packages (Packages), when
// they are present on the machine.
package corpus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// FFmpeg and FFprobe name the programs the corpus runs; they are looked up
// on PATH unless set to a path.
var (
	FFmpeg  = "ffmpeg"
	FFprobe = "ffprobe"
)

// recipeVersion is part of every recipe's hash. Bump it when the Go code
// that carries out a recipe (the fix operations, the ffmpeg argument
// prefix) changes in a way that changes the files it makes.
const recipeVersion = "corpus/1"

// Bad-input reasons: an invalid Entry's BadReason is one of these, and a job
// given that file must fail with a reason containing it.
const (
	ReasonTruncated = "truncated"
	ReasonCorrupt   = "corrupt"
	ReasonNotMedia  = "not media"
)

// Entry is one source of the corpus and what a correct encode of it must
// keep. The fields after BadReason describe what ffprobe and the decoder
// present for the file (ffmpeg 5.1), not what its container claims; zero
// values mean "not stated" unless a field says otherwise.
type Entry struct {
	// Name is a short id, e.g. "h264-open-gop"; it is also the start of
	// the built file's name.
	Name string
	// File is the absolute path of the file once built (or found, for
	// DebianEntries); empty in Entries.
	File string
	// Ext is the file name extension, without the dot.
	Ext string
	// Traits says, in words, what the file carries.
	Traits []string
	// Package is the Debian package a real file comes from; empty for
	// generated entries.
	Package string

	// Valid is false for inputs that must fail their job with a reason
	// containing BadReason (ReasonTruncated, ReasonCorrupt or
	// ReasonNotMedia).
	Valid     bool
	BadReason string

	// Format is ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2".
	Format string
	// VideoCodec, Profile and PixFmt are ffprobe's codec_name, profile and
	// pix_fmt of the first video stream.
	VideoCodec string
	Profile    string
	PixFmt     string
	// Frames is the number of video frames the decoder presents when the
	// file is decoded from its start (edit lists applied, discarded packets
	// not counted), as ffprobe -count_frames reports it.
	Frames int
	// Packets is the number of video packets in the file when it differs
	// from Frames (edit-list discards); 0 otherwise.
	Packets int
	// HeaderFrames is the video frame count the container's header claims
	// (ffprobe nb_frames) when it differs from Frames; 0 otherwise.
	HeaderFrames int
	// Width and Height are the coded picture size (ffprobe width/height).
	Width, Height int
	// SAR is the sample aspect ratio, "1:1" for square pixels.
	SAR string
	// DisplayWidth and DisplayHeight are the upright display size: the
	// coded size scaled by SAR (width rounded to the nearest pixel), then
	// swapped when Rotation is ±90.
	DisplayWidth, DisplayHeight int
	// FrameRate is the nominal frame rate (ffprobe avg_frame_rate) for
	// constant-rate sources, e.g. "25/1"; empty for VFR ones.
	FrameRate string
	// VFR says the intervals between presented frames vary by more than
	// 2 ms (more than a millisecond time base rounds); MaxFrameGap is then
	// the longest interval between consecutive frames.
	VFR         bool
	MaxFrameGap time.Duration
	// Interlaced says the video is field-coded (the output must be
	// progressive); TopFieldFirst gives the field order.
	Interlaced    bool
	TopFieldFirst bool
	// TenBit says the samples have more than 8 bits.
	TenBit bool
	// HDR10 says BT.2020 primaries, PQ transfer, bt2020nc matrix, with
	// mastering-display and content-light-level metadata.
	HDR10 bool
	// Rotation is the display rotation in degrees as ffprobe reports it in
	// the display matrix side data (0, 90, -90, 180).
	Rotation int
	// OpenGOP says some keyframes are not IDR (H.264 I-frames with a
	// recovery point, HEVC CRA pictures with RASL leading pictures). After
	// a seek to such a keyframe ffmpeg drops the leading pictures (for
	// H.264 it logs "mmco: unref short failure" at error level); the
	// frames from the keyframe on are right.
	OpenGOP bool
	// ParamSetsChange says the SPS/PPS change in the middle of the stream.
	ParamSetsChange bool
	// Keyframes lists the presentation times of the video keyframes when
	// the entry is about where they are; nil otherwise.
	Keyframes []time.Duration
	// BrokenSeeks lists keyframe times from which decoding after a seek
	// (-ss before -i, no accurate seek) presents different pictures, or
	// decoder errors, where decoding from the file start is clean.
	BrokenSeeks []time.Duration

	// VideoStart is the timestamp of the first presented video frame (its
	// pts, else the decoder's best-effort timestamp) and VideoDuration the
	// span from it to the end of the last frame (that frame's timestamp
	// plus the interval before it; frames a decoder flushes without a
	// timestamp count one interval each).
	VideoStart, VideoDuration time.Duration
	// AudioTracks is the number of audio streams.
	AudioTracks int
	// AudioCodec, AudioChannels and AudioLayout are ffprobe's codec_name,
	// channels and channel_layout of the first audio stream. AudioStart is
	// the timestamp of its first decoded frame and AudioDuration the span
	// from it to the end of the last decoded frame. Like the video times,
	// these are what the decoder presents; a container's start_time and
	// duration can differ by up to an audio frame (AAC padding, MPEG-TS
	// estimates).
	AudioCodec    string
	AudioChannels int
	AudioLayout   string
	AudioStart    time.Duration
	AudioDuration time.Duration

	recipe []step
}

// AVOffsets returns how far the first audio track starts and ends after
// the video (negative: before). Both are 0 when the entry has no audio.
func (e Entry) AVOffsets() (start, end time.Duration) {
	if e.AudioTracks == 0 {
		return 0, 0
	}
	start = e.AudioStart - e.VideoStart
	end = (e.AudioStart + e.AudioDuration) - (e.VideoStart + e.VideoDuration)
	return start, end
}

// Entries returns the generated corpus: the recipes and their truths, with
// File empty. It does no I/O.
func Entries() []Entry { return entries() }

// Names returns the names of Entries, in order.
func Names() []string {
	var ns []string
	for _, e := range entries() {
		ns = append(ns, e.Name)
	}
	return ns
}

// CacheDir returns the directory where `make corpus` and the tests keep
// built files: $BANYAN_CORPUS_DIR when set, else banyan/corpus under the
// user's cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("BANYAN_CORPUS_DIR"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("corpus cache dir: %w", err)
	}
	return filepath.Join(d, "banyan", "corpus"), nil
}

// Build makes (or reuses) the files of the named entries in dir, all of
// them when names is empty, and returns those entries with File set, in
// the order of Entries. A file whose recipe hash matches is reused; a new
// one is made in a scratch folder inside dir and renamed into place, so
// concurrent builds into the same dir are safe. Entries are built in
// parallel, up to the number of CPUs.
func Build(ctx context.Context, dir string, names ...string) ([]Entry, error) {
	sel, err := selectEntries(names)
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("corpus dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("corpus dir: %w", err)
	}
	ver, err := ffmpegVersion(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(sel))
	errs := make([]error, len(sel))
	sem := make(chan struct{}, max(1, runtime.NumCPU()))
	var wg sync.WaitGroup
	for i, e := range sel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("corpus %s: %w", e.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			e.File = filepath.Join(dir, fileName(e, ver))
			errs[i] = buildOne(ctx, dir, e)
			out[i] = e
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func selectEntries(names []string) ([]Entry, error) {
	all := entries()
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var sel []Entry
	for _, e := range all {
		if want[e.Name] {
			sel = append(sel, e)
			delete(want, e.Name)
		}
	}
	if len(want) > 0 {
		var unknown []string
		for n := range want {
			unknown = append(unknown, n)
		}
		return nil, fmt.Errorf("corpus: unknown entries %s", strings.Join(unknown, ", "))
	}
	return sel, nil
}

// recipeHash returns the hash that names e's file: of the recipe, the
// package's recipe version and the given ffmpeg version line.
func recipeHash(e Entry, ffmpegVer string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", recipeVersion, ffmpegVer, e.Name, e.Ext)
	for _, s := range e.recipe {
		fmt.Fprintf(h, "%s %q\n", s.op, s.args)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func fileName(e Entry, ffmpegVer string) string {
	return e.Name + "-" + recipeHash(e, ffmpegVer) + "." + e.Ext
}

var (
	verMu   sync.Mutex
	verLine string
)

// ffmpegVersion returns the first line of `ffmpeg -version`, cached once
// it has been read.
func ffmpegVersion(ctx context.Context) (string, error) {
	verMu.Lock()
	defer verMu.Unlock()
	if verLine != "" {
		return verLine, nil
	}
	out, err := exec.CommandContext(ctx, FFmpeg, "-hide_banner", "-version").Output()
	if err != nil {
		return "", fmt.Errorf("corpus: %s -version: %w", FFmpeg, err)
	}
	verLine, _, _ = strings.Cut(string(out), "\n")
	return verLine, nil
}

// buildOne makes e.File unless it exists.
func buildOne(ctx context.Context, dir string, e Entry) error {
	if st, err := os.Stat(e.File); err == nil && st.Mode().IsRegular() {
		return nil
	}
	scratch, err := os.MkdirTemp(dir, ".build-"+e.Name+"-")
	if err != nil {
		return fmt.Errorf("corpus %s: %w", e.Name, err)
	}
	defer os.RemoveAll(scratch)
	out := filepath.Join(scratch, "out."+e.Ext)
	for i, s := range e.recipe {
		if err := s.run(ctx, scratch, out); err != nil {
			return fmt.Errorf("corpus %s: step %d (%s): %w", e.Name, i+1, s.op, err)
		}
	}
	if _, err := os.Stat(out); err != nil {
		return fmt.Errorf("corpus %s: recipe made no file: %w", e.Name, err)
	}
	if err := os.Rename(out, e.File); err != nil {
		return fmt.Errorf("corpus %s: %w", e.Name, err)
	}
	removeStale(dir, e)
	return nil
}

// removeStale deletes files of older recipes of e from dir.
func removeStale(dir string, e Entry) {
	old, _ := filepath.Glob(filepath.Join(dir, e.Name+"-????????????."+e.Ext))
	for _, f := range old {
		if f != e.File {
			os.Remove(f)
		}
	}
}

// step is one operation of a recipe: an ffmpeg run, or a Go edit of a
// file. In args, "{out}" stands for the file being built and "{t:NAME}"
// for a scratch file NAME.
type step struct {
	op   string
	args []string
}

// ff is an ffmpeg run whose last argument is the output; the common prefix
// (-hide_banner -nostdin -v error -y) and "-threads 1 -fflags +bitexact"
// before the output are added.
func ff(args ...string) step { return step{op: "ffmpeg", args: args} }

// fix is a Go edit of a file (see fix.go).
func fix(op string, args ...string) step { return step{op: op, args: args} }

func expand(a, scratch, out string) string {
	a = strings.ReplaceAll(a, "{out}", out)
	for {
		i := strings.Index(a, "{t:")
		if i < 0 {
			return a
		}
		j := strings.Index(a[i:], "}")
		if j < 0 {
			return a
		}
		a = a[:i] + filepath.Join(scratch, a[i+3:i+j]) + a[i+j+1:]
	}
}

func (s step) run(ctx context.Context, scratch, out string) error {
	args := make([]string, len(s.args))
	for i, a := range s.args {
		args[i] = expand(a, scratch, out)
	}
	if s.op != "ffmpeg" {
		return runFix(s.op, args)
	}
	if len(args) == 0 {
		return errors.New("ffmpeg step without arguments")
	}
	// The last argument is the output: make its muxer bitexact (no random
	// Matroska UIDs, no encoder version tags) and its encoders single
	// threaded (x264 with frame threads under load was seen to differ), so
	// that a recipe makes the same bytes each time. Build runs entries in
	// parallel instead.
	full := append([]string{"-hide_banner", "-nostdin", "-v", "error", "-y"}, args[:len(args)-1]...)
	full = append(full, "-threads", "1", "-fflags", "+bitexact", args[len(args)-1])
	cmd := exec.CommandContext(ctx, FFmpeg, full...)
	cmd.Dir = scratch
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s (after %v): %w: %s", FFmpeg, time.Since(start).Round(time.Millisecond), err, tail(stderr.String(), 400))
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
