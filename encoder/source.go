package encoder

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rational is a fraction Num/Den (a frame rate or a time base).
type Rational struct{ Num, Den int64 }

// Float returns Num/Den as a float64 (0 when Den is 0).
func (r Rational) Float() float64 {
	if r.Den == 0 {
		return 0
	}
	return float64(r.Num) / float64(r.Den)
}

// String formats r as "num/den".
func (r Rational) String() string { return fmt.Sprintf("%d/%d", r.Num, r.Den) }

func parseRational(s string) Rational {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		b = "1"
	}
	n, err1 := strconv.ParseInt(a, 10, 64)
	d, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || d == 0 {
		return Rational{}
	}
	return Rational{n, d}
}

// Source is what Probe learns about an input.
type Source struct {
	Path       string
	Duration   time.Duration // from the first frame's pts to EndPTS
	FrameCount int
	Width      int // coded size, before rotation and sample aspect ratio
	Height     int
	Codec      string
	// FrameRate is the average (nominal) frame rate; VFR says whether frame
	// intervals vary by more than one time-base tick.
	FrameRate Rational
	VFR       bool
	TimeBase  Rational
	// FramePTS holds the pts of every video frame the decoder presents, in
	// presentation order, in TimeBase units: packets the container marks
	// discard (edit lists) are not frames, and frames the decoder does not
	// present are left out (see Probe).
	FramePTS []int64
	// EndPTS is where the last frame ends: its pts plus the last frame
	// interval (the interval before it), in TimeBase units.
	EndPTS int64
	// Keyframes are frame indices (presentation order) of keyframes.
	Keyframes []int
	// CleanKeys are the keyframes (a subset of Keyframes) from which the
	// codec guarantees a clean decode of every later frame: IDR pictures for
	// H.264, IRAP pictures for HEVC, every keyframe of other codecs. A
	// keyframe that is not clean (an H.264 I-frame or recovery point that is
	// not IDR) may still decode clean; the chunk step checks it.
	CleanKeys []int
	// FreshKeys are the keyframes (a superset of CleanKeys) at which a
	// decoder that seeks there holds the stream's current parameter sets:
	// every keyframe until parameter sets appear in-band, then those that
	// carry their own. A seek to another keyframe may decode with stale
	// ones (a PPS that changed mid-stream): wrong pictures, maybe no error.
	FreshKeys []int
	// FrameBytes holds every video frame's compressed size in the source,
	// in presentation order: a cheap measure of how complex the content is
	// along the title (ChunkCost). Nil when unknown.
	FrameBytes []int32
	// FormatStart is the container's start time (the earliest stream).
	FormatStart time.Duration

	// PixFmt is the decoder's pixel format and BitDepth its bits per
	// sample (8 when unknown).
	PixFmt   string
	BitDepth int
	// FieldOrder is ffprobe's field_order: progressive, tt, bb, tb, bt, or
	// "" when unknown.
	FieldOrder string
	// Rotation is the display rotation in degrees, counter-clockwise, as the
	// display matrix says (0, 90, 180 or 270); decoders apply it.
	Rotation int
	// SAR is the sample (pixel) aspect ratio; 1:1 when unknown.
	SAR Rational
	// Color description as the stream signals it ("" when unspecified).
	ColorPrimaries, ColorTransfer, ColorSpace string
	// MasterDisplay and MaxCLL are an HDR source's mastering display (in
	// x265's syntax) and content light levels ("" when absent).
	MasterDisplay string `json:",omitempty"`
	MaxCLL        string `json:",omitempty"`
	// ContainerFrames is the container's own frame count (0 when it gives
	// none). It is a hint: FrameCount is what decodes.
	ContainerFrames int
	// Notes say what probing found unusual and how it was handled.
	Notes []string `json:",omitempty"`

	HasAudio        bool
	AudioCodec      string
	AudioSampleRate int
	AudioChannels   int
	AudioLayout     string
	// AudioTracks counts the audio streams; the first is encoded.
	AudioTracks int
	// AudioStart is the audio stream's start time.
	AudioStart time.Duration
	// AudioDuration is the audio stream's duration: the container's, or
	// measured from its packets when the container gives none.
	AudioDuration time.Duration

	audioIndex int // the first audio stream's index
}

// TicksToDuration converts a count of TimeBase ticks to a time.Duration.
func (s *Source) TicksToDuration(t int64) time.Duration {
	return ticksToDuration(t, s.TimeBase)
}

func ticksToDuration(t int64, tb Rational) time.Duration {
	if tb.Den == 0 {
		return 0
	}
	v := new(big.Int).Mul(big.NewInt(t), big.NewInt(tb.Num*int64(time.Second)))
	q, _ := new(big.Rat).SetFrac(v, big.NewInt(tb.Den)).Float64()
	return time.Duration(math.Round(q))
}

// DisplaySize is the size the picture is shown at: the coded size stretched
// by the sample aspect ratio (horizontally) and turned by the rotation.
func (s *Source) DisplaySize() (w, h int) {
	w, h = s.Width, s.Height
	if s.SAR.Num > 0 && s.SAR.Den > 0 && s.SAR.Num != s.SAR.Den {
		w = int(math.Round(float64(w) * float64(s.SAR.Num) / float64(s.SAR.Den)))
	}
	if s.Rotation == 90 || s.Rotation == 270 {
		w, h = h, w
	}
	return w, h
}

// Interlaced says whether the source is field-coded (its field order is
// known and not progressive).
func (s *Source) Interlaced() bool {
	switch s.FieldOrder {
	case "tt", "bb", "tb", "bt":
		return true
	}
	return false
}

// HDR10 says whether the source is PQ (SMPTE ST 2084) high dynamic range.
func (s *Source) HDR10() bool { return s.ColorTransfer == "smpte2084" }

// HLG says whether the source is hybrid log-gamma high dynamic range.
func (s *Source) HLG() bool { return s.ColorTransfer == "arib-std-b67" }

// IsClean says whether frame index k is a clean keyframe (see CleanKeys).
func (s *Source) IsClean(k int) bool {
	i := sort.SearchInts(s.CleanKeys, k)
	return i < len(s.CleanKeys) && s.CleanKeys[i] == k
}

// latestKey returns the last of keys (sorted) at or before frame f that is
// above 0, or fileStart: where a decode that must present frame f starts
// (keyframe 0 being the file's start).
func latestKey(keys []int, f int) int {
	i := sort.SearchInts(keys, f+1) - 1
	if i < 0 || keys[i] <= 0 {
		return fileStart
	}
	return keys[i]
}

// AudioEnd is where the first audio track ends on the container's clock.
func (s *Source) AudioEnd() time.Duration { return s.AudioStart + s.AudioDuration }

// VideoEnd is where the video ends on the container's clock.
func (s *Source) VideoEnd() time.Duration { return s.TicksToDuration(s.EndPTS) }

type probeStream struct {
	Index         int    `json:"index"`
	CodecType     string `json:"codec_type"`
	CodecName     string `json:"codec_name"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	AvgFrameRate  string `json:"avg_frame_rate"`
	RFrameRate    string `json:"r_frame_rate"`
	TimeBase      string `json:"time_base"`
	StartTime     string `json:"start_time"`
	NbFrames      string `json:"nb_frames"`
	SampleRate    string `json:"sample_rate"`
	Duration      string `json:"duration"`
	Channels      int    `json:"channels"`
	ChannelLayout string `json:"channel_layout"`
	PixFmt        string `json:"pix_fmt"`
	BitsPerRaw    string `json:"bits_per_raw_sample"`
	FieldOrder    string `json:"field_order"`
	SAR           string `json:"sample_aspect_ratio"`
	ColorPrim     string `json:"color_primaries"`
	ColorTrc      string `json:"color_transfer"`
	ColorSpace    string `json:"color_space"`
	NALLengthSize string `json:"nal_length_size"`
	Disposition   struct {
		AttachedPic int `json:"attached_pic"`
	} `json:"disposition"`
	SideData []struct {
		Type     string  `json:"side_data_type"`
		Rotation float64 `json:"rotation"`
	} `json:"side_data_list"`
	Tags map[string]string `json:"tags"`
}

type probeJSON struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		FormatName string `json:"format_name"`
		StartTime  string `json:"start_time"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

func secs(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return time.Duration(math.Round(f * float64(time.Second)))
}

// Probe runs ffprobe on path and returns what it learns. It reads every
// video packet (not decoding) to learn exact frame timestamps, keyframes
// and sizes, leaving out packets the container marks discard (edit lists).
// It then decodes the head and the tail of the stream and checks that the
// decoder presents exactly those frames there; when it does not (frames the
// decoder drops, timestamps it assigns itself), the whole stream is decoded
// and the decoder's frames are the truth. A container's frame count is only
// a hint. Corrupt, truncated or unsupported input is an error wrapping
// ErrBadInput (and the *ToolError with ffprobe's reason when ffprobe itself
// failed).
func Probe(ctx context.Context, path string) (*Source, error) {
	if err := validPath("probe", path); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("probe %s: %w: %w", path, ErrBadInput, err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("probe %s: %w: is a directory", path, ErrBadInput)
	}
	out, _, err := runTool(ctx, FFprobe, []string{"-hide_banner", "-v", "error", "-of", "json",
		"-show_format", "-show_streams", fileArg(path)})
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w: %w", path, ErrBadInput, err)
	}
	var pj probeJSON
	if err := json.Unmarshal(out, &pj); err != nil {
		return nil, fmt.Errorf("probe %s: parse ffprobe output: %w", path, err)
	}
	src := &Source{Path: path, FormatStart: secs(pj.Format.StartTime)}
	vs, err := src.readStreams(pj)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", path, err)
	}
	if err := src.readFrames(ctx, vs); err != nil {
		return nil, fmt.Errorf("probe %s: %w", path, err)
	}
	if src.HDR10() || src.HLG() {
		if err := src.readHDR(ctx, vs.Index); err != nil {
			return nil, fmt.Errorf("probe %s: %w", path, err)
		}
	}
	if src.HasAudio {
		if err := src.measureAudio(ctx, pj); err != nil {
			return nil, fmt.Errorf("probe %s: %w", path, err)
		}
	}
	return src, nil
}

// readStreams fills the stream-level fields and returns the video stream.
func (src *Source) readStreams(pj probeJSON) (*probeStream, error) {
	var vs *probeStream
	for i := range pj.Streams {
		st := &pj.Streams[i]
		switch st.CodecType {
		case "video":
			if vs != nil || st.Disposition.AttachedPic != 0 {
				continue
			}
			vs = st
			src.Codec = st.CodecName
			src.Width, src.Height = st.Width, st.Height
			src.FrameRate = parseRational(st.AvgFrameRate)
			if src.FrameRate.Num <= 0 {
				src.FrameRate = parseRational(st.RFrameRate)
			}
			src.TimeBase = parseRational(st.TimeBase)
			src.ContainerFrames, _ = strconv.Atoi(st.NbFrames)
			src.PixFmt = st.PixFmt
			src.BitDepth = pixFmtDepth(st.PixFmt, st.BitsPerRaw)
			if st.FieldOrder != "unknown" {
				src.FieldOrder = st.FieldOrder
			}
			src.SAR = parseRational(strings.ReplaceAll(st.SAR, ":", "/"))
			if src.SAR.Num <= 0 || src.SAR.Den <= 0 {
				src.SAR = Rational{1, 1}
			}
			src.ColorPrimaries, src.ColorTransfer, src.ColorSpace = known(st.ColorPrim), known(st.ColorTrc), known(st.ColorSpace)
			src.Rotation = rotationOf(st)
		case "audio":
			src.AudioTracks++
			if src.HasAudio {
				continue
			}
			src.HasAudio = true
			src.audioIndex = st.Index
			src.AudioCodec = st.CodecName
			src.AudioSampleRate, _ = strconv.Atoi(st.SampleRate)
			src.AudioChannels = st.Channels
			src.AudioLayout = st.ChannelLayout
			src.AudioStart = secs(st.StartTime)
			src.AudioDuration = secs(st.Duration)
		}
	}
	if vs == nil {
		return nil, fmt.Errorf("%w: no video stream", ErrBadInput)
	}
	if src.Width <= 0 || src.Height <= 0 || src.TimeBase.Num <= 0 || src.TimeBase.Den <= 0 {
		return nil, fmt.Errorf("%w: video stream has no size or time base (codec %q)", ErrBadInput, src.Codec)
	}
	return vs, nil
}

// known maps ffprobe's "unknown"/"reserved" to "".
func known(s string) string {
	if s == "unknown" || s == "reserved" || s == "unspecified" {
		return ""
	}
	return s
}

// rotationOf reads the display matrix's rotation (or the legacy rotate tag)
// as 0, 90, 180 or 270 degrees.
func rotationOf(st *probeStream) int {
	r := 0.0
	found := false
	for _, sd := range st.SideData {
		if sd.Type == "Display Matrix" {
			r, found = sd.Rotation, true
		}
	}
	if !found {
		if v, err := strconv.ParseFloat(st.Tags["rotate"], 64); err == nil {
			r = -v
		}
	}
	// Reduce first: a huge or non-finite angle would overflow the int.
	if r = math.Mod(r, 360); math.IsNaN(r) {
		return 0
	}
	d := int(math.Round(r/90)) * 90 % 360
	if d < 0 {
		d += 360
	}
	return d
}

// pixFmtDepth is the bits per sample of a pixel format (8 by default).
func pixFmtDepth(pixFmt, raw string) int {
	for _, d := range []int{16, 14, 12, 10, 9} {
		if strings.Contains(pixFmt, "p"+strconv.Itoa(d)) {
			return d
		}
	}
	if n, err := strconv.Atoi(raw); err == nil && n > 8 && strings.Contains(pixFmt, "yuv") {
		return n
	}
	return 8
}

// measureAudio learns the first audio track's end from its last packets:
// Matroska and WebM state no stream duration, and MPEG-TS only estimates
// one. The container's duration stays when no packet says otherwise.
func (src *Source) measureAudio(ctx context.Context, pj probeJSON) error {
	from := secs(pj.Format.Duration) + src.FormatStart - 30*time.Second
	interval := "%"
	if from > 0 {
		interval = strconv.FormatFloat(from.Seconds(), 'f', 6, 64) + "%"
	}
	out, _, err := runTool(ctx, FFprobe, []string{"-hide_banner", "-v", "error", "-select_streams", strconv.Itoa(src.audioIndex),
		"-read_intervals", interval, "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", fileArg(src.Path)})
	if err != nil {
		return fmt.Errorf("%w: audio packets: %w", ErrBadInput, err)
	}
	var end float64
	for _, l := range strings.Split(string(out), "\n") {
		p, d, _ := strings.Cut(strings.TrimSpace(l), ",")
		pt, err1 := strconv.ParseFloat(p, 64)
		dt, err2 := strconv.ParseFloat(strings.TrimSuffix(d, ","), 64)
		if err1 == nil && err2 == nil && pt+dt > end {
			end = pt + dt
		}
	}
	if end > 0 {
		src.AudioDuration = time.Duration(math.Round(end*float64(time.Second))) - src.AudioStart
	}
	return nil
}

// VideoStart is the presentation time of the first video frame.
func (s *Source) VideoStart() time.Duration { return s.TicksToDuration(s.FramePTS[0]) }

// readHDR reads the mastering display and content light levels from the
// first frame's side data.
func (src *Source) readHDR(ctx context.Context, stream int) error {
	out, _, err := runTool(ctx, FFprobe, []string{"-hide_banner", "-v", "error", "-select_streams", strconv.Itoa(stream),
		"-read_intervals", "%+#1", "-show_frames", "-show_entries", "frame=side_data_list", "-of", "json", fileArg(src.Path)})
	if err != nil {
		return fmt.Errorf("%w: read HDR metadata: %w", ErrBadInput, err)
	}
	var fj struct {
		Frames []struct {
			SideData []map[string]any `json:"side_data_list"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &fj); err != nil {
		return fmt.Errorf("parse HDR metadata: %w", err)
	}
	for _, f := range fj.Frames {
		for _, sd := range f.SideData {
			switch sd["side_data_type"] {
			case "Mastering display metadata":
				src.MasterDisplay = masterDisplay(sd)
			case "Content light level metadata":
				mc, ok1 := sd["max_content"].(float64)
				ma, ok2 := sd["max_average"].(float64)
				if ok1 && ok2 && mc >= 0 && ma >= 0 && mc < 65536 && ma < 65536 {
					src.MaxCLL = fmt.Sprintf("%d,%d", int(mc), int(ma))
				}
			}
		}
	}
	return nil
}

// masterDisplay formats mastering display side data in x265's syntax:
// chromaticities in units of 0.00002, luminance in units of 0.0001 cd/m².
// It returns "" when a value is missing or malformed.
func masterDisplay(sd map[string]any) string {
	val := func(k string, unit int64) (int64, bool) {
		s, ok := sd[k].(string)
		if !ok {
			return 0, false
		}
		r := parseRational(s)
		if r.Den <= 0 || r.Num < 0 {
			return 0, false
		}
		return int64(math.Round(float64(r.Num) * float64(unit) / float64(r.Den))), true
	}
	keys := []string{"green_x", "green_y", "blue_x", "blue_y", "red_x", "red_y", "white_point_x", "white_point_y"}
	v := make([]int64, 0, 10)
	for _, k := range keys {
		x, ok := val(k, 50000)
		if !ok {
			return ""
		}
		v = append(v, x)
	}
	for _, k := range []string{"max_luminance", "min_luminance"} {
		x, ok := val(k, 10000)
		if !ok {
			return ""
		}
		v = append(v, x)
	}
	s := fmt.Sprintf("G(%d,%d)B(%d,%d)R(%d,%d)WP(%d,%d)L(%d,%d)", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9])
	if !masterDisplayRE().MatchString(s) {
		return ""
	}
	return s
}
