package encoder

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestBackendConformance runs one suite against every backend, NVENC
// included (command lines only: no GPU here).
func TestBackendConformance(t *testing.T) {
	cases := []struct {
		codec string
		gpu   bool
		name  string
	}{
		{"h264", false, "libx264"}, {"hevc", false, "libx265"}, {"av1", false, "libsvtav1"},
		{"h264", true, "h264_nvenc"}, {"hevc", true, "hevc_nvenc"},
	}
	for _, c := range cases {
		b, err := BackendFor(c.codec, c.gpu)
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != c.name || b.Codec() != c.codec || b.GPU() != c.gpu {
			t.Errorf("%s: got %s/%s/%v", c.name, b.Name(), b.Codec(), b.GPU())
		}
		lo, hi, _ := crfRange(c.codec)
		rends := []Rendition{
			{Name: "crf", Width: 640, Height: 360, Codec: c.codec, CRF: lo + (hi-lo)/2, GOP: 48},
			{Name: "capped", Width: 640, Height: 360, Codec: c.codec, CRF: hi, MaxRate: "2M"},
			{Name: "abr", Width: 640, Height: 360, Codec: c.codec, Bitrate: "1500k", MaxRate: "2M", GOP: 120},
			// Invalid values must never reach the command line.
			{Name: "evil", Width: 640, Height: 360, Codec: c.codec, CRF: 20, Preset: "fast; rm -rf /", Bitrate: "$(reboot)"},
		}
		for _, r := range rends {
			a := b.Args(r, 2)
			t.Logf("%s %s: %s", c.name, r.Name, strings.Join(a, " "))
			val := func(flag string) (string, bool) {
				i := slices.Index(a, flag)
				if i < 0 || i+1 >= len(a) {
					return "", false
				}
				return a[i+1], true
			}
			if v, _ := val("-c:v"); v != c.name {
				t.Errorf("%s %s: -c:v %q", c.name, r.Name, v)
			}
			for _, s := range a {
				if strings.ContainsAny(s, ";|&$`<>\\\"' \n*?(){}") {
					t.Errorf("%s %s: shell metacharacter in %q", c.name, r.Name, s)
				}
			}
			p, _ := val("-preset")
			if !contains(b.(*backend).presets, p) {
				t.Errorf("%s %s: preset %q not valid", c.name, r.Name, p)
			}
			_, crf := val("-crf")
			_, cq := val("-cq")
			_, br := val("-b:v")
			if !crf && !cq && !br {
				t.Errorf("%s %s: no rate control", c.name, r.Name)
			}
			if r.Bitrate != "" && ValidateRendition(r) == nil {
				if v, _ := val("-b:v"); v != r.Bitrate {
					t.Errorf("%s %s: -b:v %q", c.name, r.Name, v)
				}
			}
			if r.MaxRate != "" {
				if v, _ := val("-maxrate"); v != r.MaxRate {
					t.Errorf("%s %s: -maxrate %q", c.name, r.Name, v)
				}
				if _, ok := val("-bufsize"); !ok {
					t.Errorf("%s %s: maxrate without bufsize", c.name, r.Name)
				}
			}
			g, ok := val("-g")
			want := "60"
			if r.GOP > 0 && ValidateRendition(r) == nil {
				want = strconv.Itoa(r.GOP)
			}
			if !ok || g != want {
				t.Errorf("%s %s: -g %q want %s", c.name, r.Name, g, want)
			}
			joined := strings.Join(a, " ")
			switch c.name {
			case "libx264":
				if !strings.Contains(joined, "open-gop=0") || !strings.Contains(joined, "-keyint_min "+g) {
					t.Errorf("%s: GOP not closed/fixed: %s", c.name, joined)
				}
			case "libx265":
				if !strings.Contains(joined, "open-gop=0") || !strings.Contains(joined, "keyint="+g) {
					t.Errorf("%s: GOP not closed: %s", c.name, joined)
				}
			case "libsvtav1":
				if !strings.Contains(joined, "irefresh-type=2") {
					t.Errorf("%s: GOP not closed: %s", c.name, joined)
				}
			default:
				if !strings.Contains(joined, "-forced-idr 1") || !strings.Contains(joined, "-strict_gop 1") {
					t.Errorf("%s: IDR/GOP not forced: %s", c.name, joined)
				}
			}
		}
	}
	if _, err := BackendFor("av1", true); err == nil {
		t.Error("av1 GPU backend should not exist")
	}
	if _, err := BackendFor("vp9", false); err == nil {
		t.Error("vp9 should be unknown")
	}
}
