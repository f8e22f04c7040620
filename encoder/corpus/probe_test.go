package corpus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Test helpers that measure a file with ffprobe/ffmpeg, independently of
// the truths stated in the recipes.

type ffStream struct {
	Index         int    `json:"index"`
	CodecType     string `json:"codec_type"`
	CodecName     string `json:"codec_name"`
	Profile       string `json:"profile"`
	PixFmt        string `json:"pix_fmt"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	SAR           string `json:"sample_aspect_ratio"`
	AvgFrameRate  string `json:"avg_frame_rate"`
	FieldOrder    string `json:"field_order"`
	ColorPrim     string `json:"color_primaries"`
	ColorTransfer string `json:"color_transfer"`
	ColorSpace    string `json:"color_space"`
	Channels      int    `json:"channels"`
	ChannelLayout string `json:"channel_layout"`
	SampleRate    string `json:"sample_rate"`
	StartTime     string `json:"start_time"`
	Duration      string `json:"duration"`
	NbFrames      string `json:"nb_frames"`
	NbReadFrames  string `json:"nb_read_frames"`
	SideData      []struct {
		Type     string `json:"side_data_type"`
		Rotation *int   `json:"rotation"`
	} `json:"side_data_list"`
}

type ffProbe struct {
	Streams []ffStream `json:"streams"`
	Format  struct {
		FormatName string `json:"format_name"`
		StartTime  string `json:"start_time"`
		Duration   string `json:"duration"`
	} `json:"format"`
	Frames []struct {
		PtsTime       string `json:"pts_time"`
		BestEffort    string `json:"best_effort_timestamp_time"`
		NbSamples     int    `json:"nb_samples"`
		Interlaced    int    `json:"interlaced_frame"`
		TopFieldFirst int    `json:"top_field_first"`
		SideData      []struct {
			Type         string `json:"side_data_type"`
			MaxLuminance string `json:"max_luminance"`
			MaxContent   int    `json:"max_content"`
			MaxAverage   int    `json:"max_average"`
		} `json:"side_data_list"`
	} `json:"frames"`
	Packets []struct {
		PtsTime string `json:"pts_time"`
		Flags   string `json:"flags"`
	} `json:"packets"`
}

func runProbe(ctx context.Context, args ...string) (*ffProbe, error) {
	cmd := exec.CommandContext(ctx, FFprobe, append([]string{"-v", "error", "-of", "json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ffprobe %v: %w: %s", args, err, tail(stderr.String(), 300))
	}
	var p ffProbe
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("ffprobe %v: %w", args, err)
	}
	return &p, nil
}

// measured is what the test finds in a file, in Entry's terms.
type measured struct {
	Entry
	videoIndex int
	fieldOrder string
	colors     [3]string
	hdrSEI     bool // the recipes' mastering display (1000 cd/m²) and content light level (1000/400) side data on the first frame
	framePTS   []time.Duration
	keyframes  []time.Duration
	decodeErr  string // what ffmpeg -v error printed while decoding all of it
}

func parseDur(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return time.Duration(math.Round(f * 1e9))
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// measure probes every trait the checks need.
func measure(ctx context.Context, file string) (*measured, error) {
	p, err := runProbe(ctx, "-count_frames", "-show_streams", "-show_format", file)
	if err != nil {
		return nil, err
	}
	m := &measured{videoIndex: -1}
	m.Format = p.Format.FormatName
	for _, s := range p.Streams {
		switch s.CodecType {
		case "video":
			if m.videoIndex >= 0 {
				continue
			}
			m.videoIndex = s.Index
			m.VideoCodec, m.Profile, m.PixFmt = s.CodecName, s.Profile, s.PixFmt
			m.Width, m.Height, m.SAR = s.Width, s.Height, s.SAR
			m.Frames = atoi(s.NbReadFrames)
			m.HeaderFrames = atoi(s.NbFrames)
			m.FrameRate = s.AvgFrameRate
			m.fieldOrder = s.FieldOrder
			m.colors = [3]string{s.ColorPrim, s.ColorTransfer, s.ColorSpace}
			for _, sd := range s.SideData {
				if sd.Type == "Display Matrix" && sd.Rotation != nil {
					m.Rotation = *sd.Rotation
				}
			}
		case "audio":
			m.AudioTracks++
			if m.AudioTracks == 1 {
				m.AudioCodec, m.AudioChannels, m.AudioLayout = s.CodecName, s.Channels, s.ChannelLayout
			}
		}
	}
	if m.videoIndex < 0 {
		return m, fmt.Errorf("%s: no video stream", file)
	}
	if m.SAR == "" || m.SAR == "0:1" || m.SAR == "N/A" {
		m.SAR = "1:1"
	}
	num, den, _ := strings.Cut(m.SAR, ":")
	w := float64(m.Width) * float64(atoi(num)) / float64(max(atoi(den), 1))
	m.DisplayWidth, m.DisplayHeight = int(math.Round(w)), m.Height
	if m.Rotation == 90 || m.Rotation == -90 || m.Rotation == 270 || m.Rotation == -270 {
		m.DisplayWidth, m.DisplayHeight = m.DisplayHeight, m.DisplayWidth
	}
	m.TenBit = strings.Contains(m.PixFmt, "p10") || strings.Contains(m.PixFmt, "p12")

	vsel := "v:0"
	f, err := runProbe(ctx, "-select_streams", vsel, "-show_entries",
		"frame=pts_time,best_effort_timestamp_time,interlaced_frame,top_field_first:frame_side_data_list", file)
	if err != nil {
		return nil, err
	}
	missing := 0
	for i, fr := range f.Frames {
		t := fr.PtsTime
		if t == "" || t == "N/A" {
			t = fr.BestEffort
		}
		if t == "" || t == "N/A" {
			missing++
		} else {
			m.framePTS = append(m.framePTS, parseDur(t))
		}
		if fr.Interlaced == 1 {
			m.Interlaced = true
			m.TopFieldFirst = fr.TopFieldFirst == 1
		}
		if i == 0 {
			var md, cll bool
			for _, sd := range fr.SideData {
				md = md || sd.Type == "Mastering display metadata" && sd.MaxLuminance == "10000000/10000"
				cll = cll || sd.Type == "Content light level metadata" && sd.MaxContent == 1000 && sd.MaxAverage == 400
			}
			m.hdrSEI = md && cll
		}
	}
	m.VideoStart, m.VideoDuration, m.VFR, m.MaxFrameGap = span(m.framePTS, missing)

	if m.AudioTracks > 0 {
		a, err := runProbe(ctx, "-select_streams", "a:0", "-show_entries", "stream=sample_rate:frame=pts_time,best_effort_timestamp_time,nb_samples", file)
		if err != nil {
			return nil, err
		}
		rate := 0
		if len(a.Streams) > 0 {
			rate = atoi(a.Streams[0].SampleRate)
		}
		first, last := time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
		for _, fr := range a.Frames {
			t := fr.PtsTime
			if t == "" || t == "N/A" {
				t = fr.BestEffort
			}
			if t == "" || t == "N/A" || rate == 0 {
				continue
			}
			s := parseDur(t)
			first = min(first, s)
			last = max(last, s+time.Duration(fr.NbSamples)*time.Second/time.Duration(rate))
		}
		if last > first {
			m.AudioStart, m.AudioDuration = first, last-first
		}
	}

	pk, err := runProbe(ctx, "-select_streams", vsel, "-show_entries", "packet=pts_time,flags", file)
	if err != nil {
		return nil, err
	}
	m.Packets = len(pk.Packets)
	for _, p := range pk.Packets {
		if strings.HasPrefix(p.Flags, "K") {
			m.keyframes = append(m.keyframes, parseDur(p.PtsTime))
		}
	}
	slices.Sort(m.keyframes)

	m.decodeErr, err = decodeErrors(ctx, nil, file)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// span returns the start and length of the presented frames with
// timestamps pts (in any order) followed by missing frames without one
// (a decoder flushing an AVI's B-frame delay), the length running to the
// end of the last frame (its start plus the interval before it); and
// whether the intervals vary by more than 2 ms (beyond the rounding of a
// millisecond time base), with the longest interval.
func span(pts []time.Duration, missing int) (start, length time.Duration, vfr bool, maxGap time.Duration) {
	if len(pts) == 0 {
		return 0, 0, false, 0
	}
	s := slices.Clone(pts)
	slices.Sort(s)
	minGap := time.Duration(math.MaxInt64)
	for i := 1; i < len(s); i++ {
		g := s[i] - s[i-1]
		minGap, maxGap = min(minGap, g), max(maxGap, g)
	}
	last := time.Duration(0)
	if len(s) > 1 {
		last = s[len(s)-1] - s[len(s)-2]
	}
	start = s[0]
	length = s[len(s)-1] + time.Duration(1+missing)*last - start
	vfr = len(s) > 2 && maxGap-minGap > 2*time.Millisecond
	if !vfr {
		maxGap = 0
	}
	return start, length, vfr, maxGap
}

// decodeErrors decodes every stream of file (after the input options pre)
// and returns what ffmpeg reported at level error.
func decodeErrors(ctx context.Context, pre []string, file string) (string, error) {
	a := append([]string{"-hide_banner", "-nostdin", "-nostats", "-v", "error"}, pre...)
	a = append(a, "-i", file, "-f", "null", "-")
	cmd := exec.CommandContext(ctx, FFmpeg, a...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			return "", err
		}
		return "exit: " + stderr.String(), nil
	}
	return strings.TrimSpace(stderr.String()), nil
}

// frameHashes decodes v:0 of file, after the input options pre, into
// per-frame MD5s keyed by pts (in the stream time base), and returns what
// the decoder reported.
func frameHashes(ctx context.Context, pre []string, file string) (map[string]string, string, error) {
	a := append([]string{"-hide_banner", "-nostdin", "-nostats", "-v", "error"}, pre...)
	a = append(a, "-i", file, "-map", "0:v:0", "-copyts", "-f", "framemd5", "-")
	cmd := exec.CommandContext(ctx, FFmpeg, a...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("framemd5 %s: %w: %s", file, err, tail(stderr.String(), 300))
	}
	h := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.Split(l, ",")
		if len(f) < 6 {
			continue
		}
		h[strings.TrimSpace(f[2])] = strings.TrimSpace(f[5])
	}
	return h, strings.TrimSpace(stderr.String()), nil
}

// tracedNAL is one NAL unit seen by the trace_headers bitstream filter:
// the packet it is in (-1 for extradata), whether that packet is flagged
// key, its type, and its syntax elements as "name=value" lines.
type tracedNAL struct {
	packet int
	key    bool
	typ    int
	sig    string
}

// traceNALs runs trace_headers over v:0 of file (stream copy) and returns
// its NAL units in order.
func traceNALs(ctx context.Context, file string) ([]tracedNAL, error) {
	cmd := exec.CommandContext(ctx, FFmpeg, "-hide_banner", "-nostdin", "-nostats", "-i", file,
		"-map", "0:v:0", "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("trace_headers %s: %w: %s", file, err, tail(stderr.String(), 300))
	}
	var nals []tracedNAL
	var sig strings.Builder
	packet, key := -1, false
	flush := func() {
		if len(nals) > 0 {
			nals[len(nals)-1].sig = sig.String()
		}
		sig.Reset()
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if !strings.HasPrefix(l, "[trace_headers @") {
			continue
		}
		_, rest, _ := strings.Cut(l, "] ")
		f := strings.Fields(rest)
		switch {
		case strings.HasPrefix(rest, "Packet:"):
			flush()
			packet++
			key = strings.Contains(rest, "key frame")
		case len(f) >= 5 && f[1] == "nal_unit_type":
			flush()
			nals = append(nals, tracedNAL{packet: packet, key: key, typ: lastInt(rest)})
		case len(f) >= 5 && f[len(f)-2] == "=":
			fmt.Fprintf(&sig, "%s=%s\n", f[1], f[len(f)-1])
		}
	}
	flush()
	return nals, nil
}

func lastInt(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		return -1
	}
	return n
}

// goLiteral prints the measured truths as recipe fields, to help write a
// new entry.
func (m *measured) goLiteral() string {
	return fmt.Sprintf("Format: %q, VideoCodec: %q, Profile: %q, PixFmt: %q, Frames: %d, Packets: %d, HeaderFrames: %d, "+
		"Width: %d, Height: %d, SAR: %q, DisplayWidth: %d, DisplayHeight: %d, FrameRate: %q, VFR: %v, MaxFrameGap: us(%d), "+
		"Interlaced: %v, TopFieldFirst: %v, TenBit: %v, Rotation: %d, VideoStart: us(%d), VideoDuration: us(%d), "+
		"AudioTracks: %d, AudioCodec: %q, AudioChannels: %d, AudioLayout: %q, AudioStart: us(%d), AudioDuration: us(%d), keyframes: %v",
		m.Format, m.VideoCodec, m.Profile, m.PixFmt, m.Frames, m.Packets, m.HeaderFrames,
		m.Width, m.Height, m.SAR, m.DisplayWidth, m.DisplayHeight, m.FrameRate, m.VFR, m.MaxFrameGap.Microseconds(),
		m.Interlaced, m.TopFieldFirst, m.TenBit, m.Rotation, m.VideoStart.Microseconds(), m.VideoDuration.Microseconds(),
		m.AudioTracks, m.AudioCodec, m.AudioChannels, m.AudioLayout, m.AudioStart.Microseconds(), m.AudioDuration.Microseconds(), m.keyframes)
}
