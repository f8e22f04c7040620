package encoder

import (
	"encoding/json"
	"reflect"
	"testing"
)

// ladderSeeds are ladder documents, good and bad, in YAML and JSON.
var ladderSeeds = []string{
	"name: mine\npolicy: prefer-gpu\ngpu_wait: 45s\nrenditions:\n" +
		"  - {name: 720p, width: 1280, height: 720, codec: hevc, crf: 24, preset: fast, gpu_preset: p6}\n" +
		"  - {name: av1-480, width: 854, height: 480, codec: av1, crf: 35, preset: \"10\"}\n",
	`{"name":"j","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","bitrate":"1500k","max_rate":"2M"}]}`,
	`{"name":"hdr","renditions":[{"name":"a","width":3840,"height":2160,"codec":"hevc","crf":22,"bit_depth":10,` +
		`"hdr":{"transfer":"smpte2084","master_display":"G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)","max_cll":"1000,400"}}]}`,
	`{"name":"x","policy":"require-gpu","renditions":[{"name":"a","width":640,"height":360,"codec":"av1","crf":30}]}`,
	`{"name":"x","gpu_wait":"-1s","renditions":[{"name":"a","width":640,"height":360,"codec":"h264","crf":20}]}`,
	`{"name":"x","renditions":[{"name":"a","width":641,"height":360,"codec":"h264","crf":20,"gop":99999}]}`,
	"name: x\nrenditions: [{name: a, width: 640, height: 360, codec: h264, crf: 20, colour: 1}]\n",
	"renditions:\n  - name: [\n",
	"",
}

// FuzzParseLadder feeds arbitrary documents to the ladder parser. It must
// never panic; a ladder it accepts must pass ValidateLadder, survive a
// round trip through its file form unchanged, and give renditions the
// encode step's --rendition-json parser accepts.
func FuzzParseLadder(f *testing.F) {
	for _, s := range ladderSeeds {
		f.Add([]byte(s))
	}
	for _, name := range BuiltinLadders() {
		b, err := json.Marshal(toLadderFile(builtinLadder(name)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseRenditionJSON(string(data))
		_, _ = ParseIndexedRenditionJSON(string(data))
		l, err := ParseLadder(data)
		if err != nil {
			if l != nil {
				t.Fatalf("both a ladder and an error: %v", err)
			}
			return
		}
		if err := ValidateLadder(l); err != nil {
			t.Fatalf("accepted a ladder ValidateLadder refuses: %v", err)
		}
		b, err := json.Marshal(toLadderFile(l))
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseLadder(b)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		if !reflect.DeepEqual(l, again) {
			t.Fatalf("round trip changed the ladder:\n%+v\n%+v", l, again)
		}
		for _, r := range l.Renditions {
			rb, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseRenditionJSON(string(rb)); err != nil {
				t.Fatalf("rendition %s of an accepted ladder: %v", r.Name, err)
			}
		}
	})
}

// toLadderFile is the file form of a ladder.
func toLadderFile(l *Ladder) ladderFile {
	f := ladderFile{Name: l.Name, Policy: l.Policy, Renditions: l.Renditions}
	if l.GPUWait != 0 {
		f.GPUWait = l.GPUWait.String()
	}
	return f
}
