package encoder

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFitLadder: rungs are fitted to the source's display size (SAR,
// rotation), never upscale, and stay even.
func TestFitLadder(t *testing.T) {
	def := DefaultLadder()
	cases := []struct {
		name     string
		src      Source
		want     []string // name WxH of each kept rendition
		noteWord string   // a word one of the notes must contain
	}{
		{"1080p source keeps every rung", Source{Width: 1920, Height: 1080}, []string{"1080p 1920x1080", "720p 1280x720", "480p 854x480"}, ""},
		{"720p source drops 1080p", Source{Width: 1280, Height: 720}, []string{"720p 1280x720", "480p 854x480"}, "1080p dropped"},
		{"screen capture 480x352 keeps only 480p-sized", Source{Width: 480, Height: 352}, []string{"480p 480x352"}, "1080p dropped"},
		{"odd size rounds to even", Source{Width: 1279, Height: 719}, []string{"720p 1280x720", "480p 854x480"}, "1080p dropped"},
		{"portrait phone clip stored landscape", Source{Width: 1920, Height: 1080, Rotation: 90}, []string{"1080p 1080x1920", "720p 720x1280", "480p 480x854"}, ""},
		{"anamorphic 720x480 16:9", Source{Width: 720, Height: 480, SAR: Rational{32, 27}}, []string{"480p 854x480"}, ""},
		{"4:3 source pillarboxed box", Source{Width: 1440, Height: 1080}, []string{"1080p 1440x1080", "720p 960x720", "480p 640x480"}, "1440x1080"},
		{"tiny source keeps the smallest rung at its size", Source{Width: 320, Height: 240}, []string{"480p 320x240"}, "kept at the source's size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, notes := FitLadder(&tc.src, def)
			var got []string
			for _, r := range rs {
				got = append(got, r.Name+" "+strconv.Itoa(r.Width)+"x"+strconv.Itoa(r.Height))
				if err := ValidateRendition(r); err != nil {
					t.Errorf("fitted rendition invalid: %v", err)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v (notes %v)", got, tc.want, notes)
			}
			if tc.noteWord != "" && !strings.Contains(strings.Join(notes, "\n"), tc.noteWord) {
				t.Errorf("notes %q lack %q", notes, tc.noteWord)
			}
		})
	}
}

// TestFitLadderHDR: HEVC/AV1 rungs of an HDR10 source stay 10-bit with its
// metadata; H.264 rungs are tone-mapped.
func TestFitLadderHDR(t *testing.T) {
	src := &Source{Width: 1920, Height: 1080, BitDepth: 10, ColorTransfer: "smpte2084", ColorPrimaries: "bt2020", ColorSpace: "bt2020nc",
		MasterDisplay: "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)", MaxCLL: "1000,400"}
	l := &Ladder{Name: "mix", Policy: PolicyCPUOnly, Renditions: []Rendition{
		{Name: "hevc", Width: 1280, Height: 720, Codec: "hevc", CRF: 28},
		{Name: "avc", Width: 1280, Height: 720, Codec: "h264", CRF: 23},
	}}
	rs, notes := FitLadder(src, l)
	if len(rs) != 2 {
		t.Fatalf("got %v", rs)
	}
	h, a := rs[0], rs[1]
	if h.BitDepth != 10 || h.HDR == nil || h.HDR.Transfer != "smpte2084" || h.HDR.MaxCLL != "1000,400" || h.HDR.MasterDisplay != src.MasterDisplay {
		t.Errorf("hevc rung %+v %+v", h, h.HDR)
	}
	if a.BitDepth == 10 || a.HDR != nil || !strings.Contains(VideoFilter(src, a), "tonemap") || strings.Contains(VideoFilter(src, h), "tonemap") {
		t.Errorf("h264 rung %+v filter %s", a, VideoFilter(src, a))
	}
	if err := ValidateRendition(h); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(mustBackend(t, "hevc").Args(h, 1), " ")
	for _, w := range []string{"yuv420p10le", "hdr10=1", "master-display=G(13250", "max-cll=1000,400", "transfer=smpte2084"} {
		if !strings.Contains(args, w) {
			t.Errorf("x265 args lack %q: %s", w, args)
		}
	}
	if !strings.Contains(strings.Join(notes, "\n"), "tone-mapped") {
		t.Errorf("notes %v", notes)
	}
	if got := strings.Join(colorArgs(src, a), " "); got != "-color_primaries bt709 -color_trc bt709 -colorspace bt709" {
		t.Errorf("tone-mapped colour tags %q", got)
	}
}

func mustBackend(t *testing.T, codec string) Backend {
	t.Helper()
	b, err := BackendFor(codec, false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestValidateRenditionDepthHDR rejects impossible depth/HDR combinations.
func TestValidateRenditionDepthHDR(t *testing.T) {
	base := Rendition{Name: "r", Width: 640, Height: 360, Codec: "hevc", CRF: 28}
	bad := []Rendition{
		func() Rendition { r := base; r.BitDepth = 12; return r }(),
		func() Rendition { r := base; r.Codec = "h264"; r.BitDepth = 10; return r }(),
		func() Rendition { r := base; r.HDR = &HDR{Transfer: "smpte2084"}; return r }(),
		func() Rendition { r := base; r.BitDepth = 10; r.HDR = &HDR{Transfer: "linear"}; return r }(),
		func() Rendition {
			r := base
			r.BitDepth = 10
			r.HDR = &HDR{Transfer: "smpte2084", MasterDisplay: "G(1,2):evil=1"}
			return r
		}(),
	}
	for i, r := range bad {
		if err := ValidateRendition(r); err == nil {
			t.Errorf("case %d: %+v accepted", i, r)
		}
	}
}

// TestMasterDisplay formats ffprobe's side data in x265's syntax.
func TestMasterDisplay(t *testing.T) {
	sd := map[string]any{"red_x": "34000/50000", "red_y": "16000/50000", "green_x": "13250/50000", "green_y": "34500/50000",
		"blue_x": "7500/50000", "blue_y": "3000/50000", "white_point_x": "15635/50000", "white_point_y": "16450/50000",
		"min_luminance": "1/10000", "max_luminance": "10000000/10000"}
	if got := masterDisplay(sd); got != "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)" {
		t.Errorf("got %q", got)
	}
	delete(sd, "red_x")
	if got := masterDisplay(sd); got != "" {
		t.Errorf("incomplete side data gave %q", got)
	}
}

// TestDisplaySize: SAR stretches the width, 90/270 rotations swap.
func TestDisplaySize(t *testing.T) {
	for _, tc := range []struct {
		s    Source
		w, h int
	}{
		{Source{Width: 720, Height: 480, SAR: Rational{32, 27}}, 853, 480},
		{Source{Width: 1920, Height: 1080, Rotation: 270}, 1080, 1920},
		{Source{Width: 1920, Height: 1080, Rotation: 180}, 1920, 1080},
		{Source{Width: 1279, Height: 719}, 1279, 719},
	} {
		if w, h := tc.s.DisplaySize(); w != tc.w || h != tc.h {
			t.Errorf("%+v: %dx%d, want %dx%d", tc.s, w, h, tc.w, tc.h)
		}
	}
}

// TestFixLastSegment: the last segment is set so the playlist adds up to
// the stream, and the target duration covers it.
func TestFixLastSegment(t *testing.T) {
	p := filepath.Join(t.TempDir(), "index.m3u8")
	in := "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.000000,\nseg_00000.m4s\n#EXTINF:0.050000,\nseg_00001.m4s\n#EXT-X-ENDLIST\n"
	if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fixLastSegment(p, 13.5); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "#EXTM3U\n#EXT-X-TARGETDURATION:8\n#EXTINF:6.000000,\nseg_00000.m4s\n#EXTINF:7.500000,\nseg_00001.m4s\n#EXT-X-ENDLIST\n"
	if string(b) != want {
		t.Errorf("got\n%s", b)
	}
	if err := os.WriteFile(p, []byte("#EXTM3U\n#EXTINF:abc,\nx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fixLastSegment(p, 1); err == nil {
		t.Error("a malformed playlist was accepted")
	}
}
