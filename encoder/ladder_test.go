package encoder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuiltinLaddersValid(t *testing.T) {
	for _, n := range BuiltinLadders() {
		l, err := LoadLadder(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateLadder(l); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if err := ValidateLadder(DefaultLadder()); err != nil {
		t.Error(err)
	}
}

func TestLoadLadderFile(t *testing.T) {
	dir := t.TempDir()
	good := `name: mine
policy: prefer-gpu
gpu_wait: 45s
renditions:
  - {name: 720p, width: 1280, height: 720, codec: hevc, crf: 24, preset: fast, gpu_preset: p6}
  - {name: av1-480, width: 854, height: 480, codec: av1, crf: 35, preset: "10"}
`
	p := filepath.Join(dir, "l.yaml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := LoadLadder(p)
	if err != nil {
		t.Fatal(err)
	}
	if l.GPUWait != 45*time.Second || len(l.Renditions) != 2 || l.Renditions[0].GPUPreset != "p6" {
		t.Errorf("parsed %+v", l)
	}
	js := `{"name":"j","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","bitrate":"1500k","max_rate":"2M"}]}`
	if l, err := ParseLadder([]byte(js)); err != nil || l.Policy != PolicyCPUOnly {
		t.Errorf("json ladder: %v %+v", err, l)
	}
	bad := map[string]string{
		"unknown field":   `{"name":"x","colour":1,"renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20}]}`,
		"odd width":       `{"name":"x","renditions":[{"name":"a","width":641,"height":360,"codec":"h264","crf":20}]}`,
		"zero height":     `{"name":"x","renditions":[{"name":"a","width":640,"height":0,"codec":"h264","crf":20}]}`,
		"codec":           `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"vp9","crf":20}]}`,
		"crf range":       `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":60}]}`,
		"av1 crf range":   `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"av1","crf":64}]}`,
		"no rate":         `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"h264"}]}`,
		"bad preset":      `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20,"preset":"p4"}]}`,
		"svt preset":      `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"av1","crf":30,"preset":"medium"}]}`,
		"gpu preset":      `{"name":"x","policy":"require-gpu","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20,"gpu_preset":"slow"}]}`,
		"av1 require gpu": `{"name":"x","policy":"require-gpu","renditions":[{"name":"a","width":640,"height":360,"codec":"av1","crf":30}]}`,
		"policy":          `{"name":"x","policy":"gpu-please","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20}]}`,
		"bitrate inject":  `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","bitrate":"1M; rm -rf /"}]}`,
		"name inject":     `{"name":"x","renditions":[{"name":"../a","width":640,"height":360,"codec":"h264","crf":20}]}`,
		"duplicate":       `{"name":"x","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20},{"name":"a","width":320,"height":180,"codec":"h264","crf":20}]}`,
		"no renditions":   `{"name":"x","renditions":[]}`,
		"bad wait":        `{"name":"x","gpu_wait":"soon","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20}]}`,
	}
	for what, doc := range bad {
		if _, err := ParseLadder([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	if _, err := LoadLadder(filepath.Join(dir, "nope.yaml")); err == nil || !strings.Contains(err.Error(), "built-in") {
		t.Errorf("missing file: %v", err)
	}
}
