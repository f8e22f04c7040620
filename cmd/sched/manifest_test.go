package main

import (
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/cmd/sched/jobfile"
)

// manifestSeeds are manifests as studios write them, good and bad.
var manifestSeeds = []string{
	"ladder: test\nout: delivery\ntitles:\n  - input: a.mp4\n    name: ep101\n  - input: b.mp4\n    name: ep102\n    priority: 5\n",
	"pool: studio/ingest\nclass: opportunistic\nmax_wait: 2h\npriority: -3\ntitles:\n  - {input: a.mov, ladder: l.yaml, out: o}\n",
	`{"titles": [{"input": "x.mkv"}], "class": "latency"}`,
	"titles: []\n",
	"titles:\n  - name: no-input\n",
	"class: urgent\ntitles:\n  - input: a\n",
	"max_wait: -1s\ntitles:\n  - input: a\n",
	"max_wait: soon\ntitles:\n  - input: a\n",
	"titles:\n  - input: a\n    priority: yes\n",
	"titles:\n  - input: a\n    colour: red\n",
	"titles: [input: a\n",
	"",
}

func TestParseManifest(t *testing.T) {
	m, err := parseManifest([]byte(manifestSeeds[0]))
	if err != nil {
		t.Fatal(err)
	}
	if m.Ladder != "test" || len(m.Titles) != 2 || m.Titles[1].Name != "ep102" || *m.Titles[1].Priority != 5 {
		t.Fatalf("manifest = %+v", m)
	}
	for _, c := range []struct{ doc, want string }{
		{manifestSeeds[3], "no titles"},
		{manifestSeeds[4], "title 1 has no input"},
		{manifestSeeds[5], `class: unknown class "urgent"`},
		{manifestSeeds[6], "max_wait: -1s is negative"},
		{manifestSeeds[7], "max_wait: "},
		{manifestSeeds[9], `unknown field "colour"`},
	} {
		if _, err := parseManifest([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.doc, err, c.want)
		}
	}
}

// FuzzParseManifest feeds arbitrary documents to the manifest parser: it
// returns a manifest or an error, never both, never panics, and a manifest
// it accepts has titles that each name an input, a known class and a
// usable max_wait.
func FuzzParseManifest(f *testing.F) {
	for _, s := range manifestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatalf("both a manifest and an error: %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(m.Titles) == 0 {
			t.Fatal("accepted a manifest without titles")
		}
		for i, ti := range m.Titles {
			if ti.Input == "" {
				t.Fatalf("title %d: accepted without input", i+1)
			}
		}
		if _, err := jobfile.ParseClass(m.Class); err != nil {
			t.Fatalf("accepted class: %v", err)
		}
	})
}
