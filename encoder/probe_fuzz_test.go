package encoder

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// probeSeeds are pieces of ffprobe output: packet lines (CSV), stream and
// format JSON, and the starts of access units.
var probeSeeds = []string{
	"0,0,4521,48,K__\n1001,1001,1200,4569,___\n",
	"N/A,-1001,800,N/A,K_D\nN/A,N/A,N/A,N/A,__\n",
	"9223372036854775807,1,2147483648,-5,K\n",
	`{"streams":[{"index":0,"codec_type":"video","codec_name":"h264","width":1920,"height":1080,` +
		`"avg_frame_rate":"24000/1001","r_frame_rate":"24000/1001","time_base":"1/24000","nb_frames":"720",` +
		`"pix_fmt":"yuv420p10le","bits_per_raw_sample":"10","field_order":"tt","sample_aspect_ratio":"4:3",` +
		`"color_transfer":"smpte2084","nal_length_size":"4",` +
		`"side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}],"tags":{"rotate":"90"}},` +
		`{"index":1,"codec_type":"audio","codec_name":"aac","sample_rate":"48000","channels":2,` +
		`"channel_layout":"stereo","start_time":"0.021333","duration":"30.000000"}],` +
		`"format":{"format_name":"mov,mp4","start_time":"0.000000","duration":"30.03"}}`,
	`{"streams":[{"codec_type":"video","width":-1,"height":0,"time_base":"0/0","avg_frame_rate":"1/0"}]}`,
	"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\x00\x00\x01\x65\x88",
	"\x00\x00\x00\x02\x40\x01\x00\x00\x00\x02\x26\x01",
	"\x00\x00\x00\x00\xff\xff\xff\xff",
}

// FuzzProbeParsers feeds arbitrary bytes to the pure parsers of ffprobe's
// output and of the bitstream: packet lines, the stream JSON, rationals and
// access-unit starts. None may panic; a packet line either parses or
// returns an error, and a stream description either yields a video stream
// with a size and a time base or an error wrapping ErrBadInput.
func FuzzProbeParsers(f *testing.F) {
	for _, s := range probeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, line := range strings.Split(string(data), "\n") {
			p, err := parsePacket(line)
			if err != nil && p != (packet{}) {
				t.Fatalf("parsePacket(%q): both a packet and an error", line)
			}
			if r := parseRational(line); r.Den == 0 && r.Num != 0 {
				t.Fatalf("parseRational(%q) = %v", line, r)
			}
		}
		for _, codec := range []string{"h264", "hevc"} {
			for nalLen := 1; nalLen <= 4; nalLen++ {
				_ = scanAccessUnit(data, codec, nalLen)
			}
		}
		var pj probeJSON
		if json.Unmarshal(data, &pj) != nil {
			return
		}
		src := &Source{FormatStart: secs(pj.Format.StartTime)}
		vs, err := src.readStreams(pj)
		if err != nil {
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("readStreams: error %v does not wrap ErrBadInput", err)
			}
			return
		}
		if vs == nil || src.Width <= 0 || src.Height <= 0 || src.TimeBase.Num <= 0 || src.TimeBase.Den <= 0 {
			t.Fatalf("readStreams accepted %+v", src)
		}
		if src.SAR.Num <= 0 || src.SAR.Den <= 0 || src.Rotation%90 != 0 || src.Rotation < 0 || src.Rotation >= 360 {
			t.Fatalf("readStreams: SAR %v, rotation %d", src.SAR, src.Rotation)
		}
		_ = nalLengthSize(vs)
		w, h := src.DisplaySize()
		_, _ = w, h
	})
}
