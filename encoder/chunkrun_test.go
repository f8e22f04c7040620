package encoder

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestDecodeLog attributes decoder errors in real ffmpeg logs (testdata)
// to the chunk or to the preroll before it, and reads edge checksums.
func TestDecodeLog(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	damaged := read("decode_damaged.log") // frames pts 19968.. at 512 a frame; damage after pts 28672
	preroll := read("decode_preroll.log") // an MPEG-TS seek: errors before the first frame
	cases := []struct {
		name           string
		log            []byte
		from, last     int64
		errors, prerol int
		edges          []string
	}{
		{"damage inside the chunk", damaged, 25600, 33280, 7, 0, nil},
		{"damage after the chunk's last frame is not the chunk's", damaged, 19968, 27648, 0, 0, nil},
		{"damage before the chunk's window is not the chunk's", damaged, 30720, 33792, 0, 0, nil},
		{"seek noise is preroll", preroll, 222000, 249000, 0, 3, []string{"7B3FC3A7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := decodeLog(tc.log, tc.from, tc.last)
			if len(r.Errors) != tc.errors || len(r.Preroll) != tc.prerol || !reflect.DeepEqual(r.Edges, tc.edges) {
				t.Errorf("errors %d %q, preroll %d, edges %v; want %d, %d, %v", len(r.Errors), r.Errors, len(r.Preroll), r.Edges, tc.errors, tc.prerol, tc.edges)
			}
		})
	}
}

// TestDecodeStarts: the latest keyframe first, then the latest clean one,
// then the file's start; keyframe 0 is the file's start.
func TestDecodeStarts(t *testing.T) {
	src := &Source{Keyframes: []int{0, 40, 80, 120}, CleanKeys: []int{0, 40}}
	cases := []struct {
		start int
		want  []int
	}{
		{0, []int{fileStart}},
		{30, []int{fileStart}},
		{40, []int{40, fileStart}},
		{100, []int{80, 40, fileStart}},
		{130, []int{120, 40, fileStart}},
	}
	for _, tc := range cases {
		if got := decodeStarts(src, tc.start); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("chunk at %d: %v, want %v", tc.start, got, tc.want)
		}
	}
}

// TestScanAccessUnit reads NAL unit types in length-prefixed and Annex B
// access units: clean starts, and parameter sets in-band.
func TestScanAccessUnit(t *testing.T) {
	lp := func(nals ...[]byte) []byte {
		var b []byte
		for _, n := range nals {
			b = append(b, 0, 0, 0, byte(len(n)))
			b = append(b, n...)
		}
		return b
	}
	sps, pps, sei, idr, nonIDR := []byte{0x67, 0x64}, []byte{0x68, 0xee}, []byte{0x06, 1, 2, 3}, []byte{0x65, 0x88}, []byte{0x41, 0x9a}
	aud := []byte{0, 0, 0, 1, 0x09, 0xf0}
	annexB := func(nals ...[]byte) []byte {
		b := append([]byte(nil), aud...)
		for _, n := range nals {
			b = append(append(b, 0, 0, 1), n...)
		}
		return b
	}
	cases := []struct {
		name  string
		codec string
		b     []byte
		want  accessUnit
	}{
		{"h264 IDR after SEI, length-prefixed", "h264", lp(sei, idr), accessUnit{clean: true}},
		{"h264 IDR with SPS and PPS", "h264", lp(sps, pps, idr), accessUnit{clean: true, paramSets: true}},
		{"h264 non-IDR I slice", "h264", lp(sei, nonIDR), accessUnit{}},
		{"h264 IDR, Annex B", "h264", annexB(sps, pps, idr), accessUnit{clean: true, paramSets: true}},
		{"h264 non-IDR, Annex B", "h264", annexB(nonIDR), accessUnit{}},
		{"h264 IDR inside MPEG-TS packet", "h264", append([]byte{0x47, 0x41, 0, 0x10, 0, 0, 1, 0xe0, 0, 0, 0, 0}, annexB(idr)...), accessUnit{clean: true}},
		{"hevc CRA is clean", "hevc", lp([]byte{21 << 1, 1, 0xaf}), accessUnit{clean: true}},
		{"hevc VPS/SPS/PPS then IDR_W_RADL", "hevc", lp([]byte{32 << 1, 1}, []byte{33 << 1, 1}, []byte{34 << 1, 1}, []byte{19 << 1, 1}), accessUnit{clean: true, paramSets: true}},
		{"hevc trailing picture", "hevc", lp([]byte{1 << 1, 1}), accessUnit{}},
		{"garbage", "h264", []byte{1, 2, 3}, accessUnit{}},
	}
	for _, tc := range cases {
		if got := scanAccessUnit(tc.b, tc.codec, 4); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestParsePacket reads ffprobe's CSV packet lines, dts standing in for a
// missing pts.
func TestParsePacket(t *testing.T) {
	p, err := parsePacket("-1024,-2048,8974,295,KD")
	if err != nil || p != (packet{pts: -1024, size: 8974, pos: 295, key: true, discard: true}) {
		t.Errorf("got %+v %v", p, err)
	}
	p, err = parsePacket("N/A,7,100,N/A,__")
	if err != nil || p.pts != 7 || p.pos != -1 || p.key {
		t.Errorf("got %+v %v", p, err)
	}
	if _, err := parsePacket("N/A,N/A,1,2,K_"); err == nil {
		t.Error("packet without timestamps accepted")
	}
}

// TestPreroll: a chunk pre-rolls when the frames before it are decoded
// anyway or nearly (at most 2*prerollFrames more), and starts cold where
// that would mean decoding a long GOP more.
func TestPreroll(t *testing.T) {
	src := &Source{Keyframes: []int{0, 60, 120}}
	intra := &Source{Keyframes: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}
	cases := []struct {
		name string
		src  *Source
		at   int
		want int
	}{
		{"title start", src, 0, 0},
		{"cut a pre-roll after a keyframe", src, 65, 5},
		{"cut between keyframes", src, 90, 5},
		{"cut two frames after a keyframe of a long GOP: those two", src, 62, 2},
		{"cut at a keyframe of a long GOP starts cold", src, 120, 0},
		{"intra-only source", intra, 12, 5},
		{"near the title's start", src, 3, 3},
	}
	for _, tc := range cases {
		if got := Preroll(tc.src, Chunk{StartFrame: tc.at, Frames: 10}, testRend); got != tc.want {
			t.Errorf("%s: pre-roll %d, want %d", tc.name, got, tc.want)
		}
	}
}
