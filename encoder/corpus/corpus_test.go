package corpus

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

func TestEntriesAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range append(Entries(), debianEntries()...) {
		if e.Name == "" || seen[e.Name] || strings.ContainsAny(e.Name, "/ ") {
			t.Errorf("bad or duplicate name %q", e.Name)
		}
		seen[e.Name] = true
		if e.Ext == "" || len(e.Traits) == 0 {
			t.Errorf("%s: no extension or traits", e.Name)
		}
		if e.Valid != (e.BadReason == "") {
			t.Errorf("%s: Valid=%v with BadReason %q", e.Name, e.Valid, e.BadReason)
		}
		if !e.Valid && !slices.Contains([]string{ReasonTruncated, ReasonCorrupt, ReasonNotMedia}, e.BadReason) {
			t.Errorf("%s: unknown BadReason %q", e.Name, e.BadReason)
		}
		if e.Valid && (e.Frames <= 0 || e.VideoCodec == "" || e.DisplayWidth <= 0 || e.DisplayHeight <= 0 || e.VideoDuration <= 0) {
			t.Errorf("%s: valid entry without frames, codec, display size or duration", e.Name)
		}
		if e.Valid && (e.VFR == (e.FrameRate != "")) {
			t.Errorf("%s: a constant-rate entry states FrameRate, a VFR one does not (VFR=%v FrameRate=%q)", e.Name, e.VFR, e.FrameRate)
		}
		if (e.AudioTracks == 0) != (e.AudioCodec == "") {
			t.Errorf("%s: AudioTracks=%d with AudioCodec %q", e.Name, e.AudioTracks, e.AudioCodec)
		}
		if e.Package == "" && e.File != "" {
			t.Errorf("%s: generated entry with File set in Entries", e.Name)
		}
	}
	if e := Entries(); len(e) > 0 {
		e[0].Name = "changed"
		if Entries()[0].Name == "changed" {
			t.Error("Entries shares its slice")
		}
	}
	if _, err := Build(context.Background(), t.TempDir(), "no-such-entry"); err == nil || !strings.Contains(err.Error(), "no-such-entry") {
		t.Errorf("Build with an unknown name: %v", err)
	}
}

func TestRecipeHash(t *testing.T) {
	es := Entries()
	a, b := es[0], es[1]
	if fileName(a, "v1") != fileName(a, "v1") {
		t.Fatal("hash not deterministic")
	}
	if fileName(a, "v1") == fileName(a, "v2") {
		t.Error("ffmpeg version does not change the file name")
	}
	if fileName(a, "v1") == fileName(b, "v1") {
		t.Error("two entries share a file name")
	}
	c := a
	c.recipe = slices.Clone(a.recipe)
	c.recipe[0].args = append(slices.Clone(c.recipe[0].args), "-an")
	if fileName(a, "v1") == fileName(c, "v1") {
		t.Error("a recipe change does not change the file name")
	}
	if !strings.HasPrefix(fileName(a, "v1"), a.Name+"-") || !strings.HasSuffix(fileName(a, "v1"), "."+a.Ext) {
		t.Errorf("file name %q", fileName(a, "v1"))
	}
}

// TestFixRejectsGarbage feeds the byte-level edits inputs that are not
// what they expect: each must return an error, never panic.
func TestFixRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	inputs := [][]byte{nil, []byte("RIFF"), []byte("RIFF\x04\x00\x00\x00AVI LIST\xff\xff\xff\xffhdrl"),
		[]byte("\x00\x00\x00\x08moov\x00\x00\x00\x10trak\x00\x00"), []byte("\x00\x00\x00\x01mdat")}
	for range 200 {
		b := make([]byte, rng.Intn(300))
		rng.Read(b)
		if len(b) > 16 && rng.Intn(2) == 0 {
			copy(b, "\x00\x00\x00\x40moov\x00\x00\x00\x38trak\x00\x00\x00\x30tkhd")
		}
		inputs = append(inputs, b)
	}
	ops := [][]string{{"avi-frames", "1"}, {"mp4-trim-edit"}, {"mp4-rotate", "90"}, {"truncate-mdat", "0.5"}, {"corrupt-mdat", "3", "800"}}
	f := filepath.Join(dir, "x")
	for i, in := range inputs {
		for _, op := range ops {
			if err := os.WriteFile(f, in, 0o644); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("input %d, %s: panic %v", i, op[0], r)
					}
				}()
				_ = runFix(op[0], append([]string{f}, op[1:]...))
			}()
		}
	}
	if err := runFix("nope", []string{f}); err == nil {
		t.Error("unknown operation accepted")
	}
	if err := runFix("mp4-rotate", []string{f}); err == nil {
		t.Error("missing argument accepted")
	}
}

// TestCorpus builds every entry into a temporary directory and checks that
// each file carries the traits its Entry states.
func TestCorpus(t *testing.T) {
	needFFmpeg(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	start := time.Now()
	es, err := Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d entries in %v", len(es), time.Since(start).Round(time.Millisecond))
	if len(es) != len(Entries()) {
		t.Fatalf("Build returned %d entries, want %d", len(es), len(Entries()))
	}

	// A second build reuses every file.
	stat := map[string]time.Time{}
	for _, e := range es {
		st, err := os.Stat(e.File)
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		stat[e.File] = st.ModTime()
	}
	again, err := Build(ctx, dir, es[0].Name, es[len(es)-1].Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range again {
		st, err := os.Stat(e.File)
		if err != nil || !st.ModTime().Equal(stat[e.File]) {
			t.Errorf("%s: rebuilt or lost on the second build (%v)", e.Name, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".build-*")); len(left) > 0 {
		t.Errorf("scratch folders left behind: %v", left)
	}

	// The group returns when its parallel subtests are done, before ctx
	// is cancelled.
	t.Run("entries", func(t *testing.T) {
		for _, e := range es {
			t.Run(e.Name, func(t *testing.T) {
				t.Parallel()
				if !filepath.IsAbs(e.File) {
					t.Errorf("File %q is not absolute", e.File)
				}
				if e.Valid {
					checkValid(ctx, t, e)
				} else {
					checkInvalid(ctx, t, e)
				}
			})
		}
	})
}

// TestDebianEntries checks the real files from Debian packages that are on
// this machine (installed, or unpacked under DebianRoot by make corpus).
func TestDebianEntries(t *testing.T) {
	needFFmpeg(t)
	root, err := DebianRoot()
	if err != nil {
		t.Fatal(err)
	}
	es := DebianEntries(root)
	if len(es) == 0 {
		t.Skipf("none of the packages %v is installed or unpacked under %s (make corpus fetches them)", Packages(), root)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Run("files", func(t *testing.T) {
		for _, e := range es {
			t.Run(e.Name, func(t *testing.T) {
				t.Parallel()
				if !slices.Contains(Packages(), e.Package) {
					t.Errorf("package %q not in Packages()", e.Package)
				}
				checkValid(ctx, t, e)
			})
		}
	})
}

const tol = 2 * time.Millisecond

func near(a, b, d time.Duration) bool { return a-b <= d && b-a <= d }

func checkValid(ctx context.Context, t *testing.T, e Entry) {
	m, err := measure(ctx, e.File)
	if err != nil {
		t.Fatal(err)
	}
	bad := false
	check := func(ok bool, what string, got, want any) {
		t.Helper()
		if !ok {
			bad = true
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	eq := func(what string, got, want any) { t.Helper(); check(got == want, what, got, want) }
	eq("format", m.Format, e.Format)
	eq("video codec", m.VideoCodec, e.VideoCodec)
	if e.Profile != "" {
		eq("profile", m.Profile, e.Profile)
	}
	eq("pix_fmt", m.PixFmt, e.PixFmt)
	eq("decoded frames", m.Frames, e.Frames)
	if e.Packets != 0 {
		eq("video packets", m.Packets, e.Packets)
	} else {
		eq("video packets (= frames)", m.Packets, e.Frames)
	}
	if e.HeaderFrames != 0 {
		eq("header frame count", m.HeaderFrames, e.HeaderFrames)
	} else {
		check(m.HeaderFrames == 0 || m.HeaderFrames == e.Frames, "header frame count", m.HeaderFrames, "0 or Frames")
	}
	eq("width", m.Width, e.Width)
	eq("height", m.Height, e.Height)
	eq("SAR", m.SAR, e.SAR)
	eq("display width", m.DisplayWidth, e.DisplayWidth)
	eq("display height", m.DisplayHeight, e.DisplayHeight)
	eq("rotation", m.Rotation, e.Rotation)
	eq("VFR", m.VFR, e.VFR)
	if e.FrameRate != "" {
		eq("frame rate", m.FrameRate, e.FrameRate)
	}
	check(near(m.MaxFrameGap, e.MaxFrameGap, tol), "max frame gap", m.MaxFrameGap, e.MaxFrameGap)
	eq("interlaced", m.Interlaced, e.Interlaced)
	eq("top field first", m.TopFieldFirst, e.TopFieldFirst)
	if e.Interlaced {
		want := "bb"
		if e.TopFieldFirst {
			want = "tt"
		}
		eq("field_order", m.fieldOrder, want)
	}
	eq("10-bit", m.TenBit, e.TenBit)
	hdr := m.colors == [3]string{"bt2020", "smpte2084", "bt2020nc"} && m.hdrSEI
	eq("HDR10 (BT.2020, PQ, bt2020nc, mastering display and CLL side data)", hdr, e.HDR10)
	check(near(m.VideoStart, e.VideoStart, tol), "video start", m.VideoStart, e.VideoStart)
	check(near(m.VideoDuration, e.VideoDuration, tol), "video duration", m.VideoDuration, e.VideoDuration)
	eq("audio tracks", m.AudioTracks, e.AudioTracks)
	eq("audio codec", m.AudioCodec, e.AudioCodec)
	eq("audio channels", m.AudioChannels, e.AudioChannels)
	eq("audio layout", m.AudioLayout, e.AudioLayout)
	check(near(m.AudioStart, e.AudioStart, tol), "audio start", m.AudioStart, e.AudioStart)
	check(near(m.AudioDuration, e.AudioDuration, tol), "audio duration", m.AudioDuration, e.AudioDuration)
	if e.Keyframes != nil {
		ok := len(m.keyframes) == len(e.Keyframes)
		for i := range e.Keyframes {
			ok = ok && near(m.keyframes[i], e.Keyframes[i], tol)
		}
		check(ok, "keyframes", m.keyframes, e.Keyframes)
	}
	check(m.decodeErr == "", "errors decoding from the start", m.decodeErr, "none")
	if bad {
		t.Logf("measured: %s", m.goLiteral())
	}

	if e.OpenGOP || e.ParamSetsChange {
		checkBitstream(ctx, t, e)
	}
	if e.Keyframes != nil {
		checkSeeks(ctx, t, e)
	}
}

// checkBitstream proves OpenGOP and ParamSetsChange from the NAL units.
func checkBitstream(ctx context.Context, t *testing.T, e Entry) {
	nals, err := traceNALs(ctx, e.File)
	if err != nil {
		t.Fatal(err)
	}
	hevc := e.VideoCodec == "hevc"
	if e.OpenGOP {
		keys := map[int][]int{} // key packet -> its NAL types
		leading := 0
		for _, n := range nals {
			if n.key && n.packet >= 0 {
				keys[n.packet] = append(keys[n.packet], n.typ)
			}
			if hevc && (n.typ == 8 || n.typ == 9) {
				leading++
			}
		}
		open := 0
		for _, types := range keys {
			if hevc && slices.Contains(types, 21) || !hevc && slices.Contains(types, 1) && !slices.Contains(types, 5) {
				open++
			}
		}
		if open == 0 {
			t.Errorf("no keyframe that is not IDR (key packets' NAL types: %v)", keys)
		}
		if hevc && leading == 0 {
			t.Error("no RASL leading pictures")
		}
		t.Logf("%d keyframes that are not IDR, %d RASL NAL units", open, leading)
	}
	if e.ParamSetsChange {
		sps, pps := 7, 8
		if hevc {
			sps, pps = 33, 34
		}
		distinct := map[int]map[string]bool{sps: {}, pps: {}}
		inband := 0
		for _, n := range nals {
			if n.typ == sps || n.typ == pps {
				distinct[n.typ][n.sig] = true
				if n.packet >= 0 {
					inband++
				}
			}
		}
		if len(distinct[sps]) < 2 && len(distinct[pps]) < 2 {
			t.Errorf("parameter sets do not change: %d distinct SPS, %d distinct PPS", len(distinct[sps]), len(distinct[pps]))
		}
		t.Logf("%d distinct SPS, %d distinct PPS, %d in-band", len(distinct[sps]), len(distinct[pps]), inband)
	}
}

// checkSeeks decodes from each keyframe after the first (a seek with -ss
// before -i, no accurate seek) and compares the pictures with those of a
// decode from the start: they must match, with no decoder error, except
// at BrokenSeeks, where the decoder must report errors or present
// different pictures or fewer frames.
func checkSeeks(ctx context.Context, t *testing.T, e Entry) {
	full, errs, err := frameHashes(ctx, nil, e.File)
	if err != nil {
		t.Fatal(err)
	}
	if errs != "" {
		t.Fatalf("decode from the start reported: %s", errs)
	}
	for _, k := range e.Keyframes[1:] {
		ss := strconv.FormatFloat(k.Seconds(), 'f', 6, 64)
		got, errs, err := frameHashes(ctx, []string{"-ss", ss, "-noaccurate_seek"}, e.File)
		if err != nil {
			t.Fatal(err)
		}
		differ, first := 0, int64(-1)
		for pts, h := range got {
			if full[pts] != h {
				differ++
			}
			if p, _ := strconv.ParseInt(pts, 10, 64); first < 0 || p < first {
				first = p
			}
		}
		after := 0
		for pts := range full {
			if p, _ := strconv.ParseInt(pts, 10, 64); p >= first {
				after++
			}
		}
		broken := errs != "" || differ > 0 || len(got) < after || len(got) == 0
		summary := fmt.Sprintf("seek to %v: %d frames (%d expected from there), %d differ, decoder errors: %.120q", k, len(got), after, differ, errs)
		if slices.Contains(e.BrokenSeeks, k) {
			if !broken {
				t.Errorf("broken seek decodes right: %s", summary)
			}
			t.Log(summary)
		} else if differ > 0 || len(got) < after || len(got) == 0 || errs != "" && !e.OpenGOP {
			// After a seek to an open-GOP keyframe the decoder drops the
			// leading pictures, and logs it for H.264 ("mmco: unref short
			// failure"); the frames from the keyframe on are right.
			t.Errorf("seek decodes wrong: %s", summary)
		}
		switch e.Name {
		case "h264-444-seek-garbage":
			if slices.Contains(e.BrokenSeeks, k) && (errs == "" || len(got) != after) {
				t.Errorf("want decoder errors on every frame presented: %s", summary)
			}
		case "h264-444-seek-silent":
			if slices.Contains(e.BrokenSeeks, k) && (errs != "" || len(got) != after || differ != len(got)) {
				t.Errorf("want every frame presented, all wrong, with no decoder error: %s", summary)
			}
		}
	}
}

func checkInvalid(ctx context.Context, t *testing.T, e Entry) {
	p, probeErr := runProbe(ctx, "-count_frames", "-show_streams", "-show_format", e.File)
	switch e.BadReason {
	case ReasonNotMedia:
		if probeErr == nil {
			t.Fatalf("ffprobe accepted it: %+v", p.Format)
		}
		b, err := os.ReadFile(e.File)
		if err != nil || !strings.HasPrefix(string(b), "<!DOCTYPE html>") {
			t.Errorf("not the text file (%v)", err)
		}
	case ReasonTruncated:
		if probeErr != nil {
			if !strings.Contains(probeErr.Error(), "moov atom not found") {
				t.Errorf("probe failed for another reason: %v", probeErr)
			}
			return
		}
		// The index is intact: it claims more frames than can be read.
		var claimed, read int
		for _, s := range p.Streams {
			if s.CodecType == "video" {
				claimed, read = atoi(s.NbFrames), atoi(s.NbReadFrames)
			}
		}
		errs, err := decodeErrors(ctx, []string{}, e.File)
		if err != nil {
			t.Fatal(err)
		}
		if read >= claimed || !strings.Contains(errs, "partial file") {
			t.Errorf("not truncated: %d of %d frames read, decoder: %.200q", read, claimed, errs)
		}
		t.Logf("%d of %d frames read", read, claimed)
	case ReasonCorrupt:
		if probeErr != nil {
			t.Fatalf("probe failed: %v", probeErr)
		}
		errs, err := decodeErrors(ctx, []string{}, e.File)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(errs, "[h264 @") {
			t.Errorf("no video decode error: %.300q", errs)
		}
	}
}
