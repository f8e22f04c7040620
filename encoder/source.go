package encoder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
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
	Width      int
	Height     int
	Codec      string
	// FrameRate is the average (nominal) frame rate; VFR says whether frame
	// intervals vary by more than one time-base tick.
	FrameRate Rational
	VFR       bool
	TimeBase  Rational
	// FramePTS holds the pts of every video frame in presentation order, in
	// TimeBase units.
	FramePTS []int64
	// EndPTS is where the last frame ends: its pts plus the last frame
	// interval (the interval before it), in TimeBase units.
	EndPTS int64
	// Keyframes are frame indices (presentation order) of keyframes.
	Keyframes []int
	// FrameBytes holds every video frame's compressed size in the source,
	// in presentation order: a cheap measure of how complex the content is
	// along the title (ChunkCost). Nil when unknown.
	FrameBytes []int32
	// FormatStart is the container's start time (the earliest stream).
	FormatStart time.Duration

	HasAudio        bool
	AudioCodec      string
	AudioSampleRate int
	AudioChannels   int
	// AudioStart is the audio stream's start time.
	AudioStart time.Duration
	// AudioDuration is the audio stream's duration as the container says.
	AudioDuration time.Duration
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

type probeJSON struct {
	Streams []struct {
		Index        int    `json:"index"`
		CodecType    string `json:"codec_type"`
		CodecName    string `json:"codec_name"`
		Width        int    `json:"width"`
		Height       int    `json:"height"`
		AvgFrameRate string `json:"avg_frame_rate"`
		RFrameRate   string `json:"r_frame_rate"`
		TimeBase     string `json:"time_base"`
		StartTime    string `json:"start_time"`
		NbFrames     string `json:"nb_frames"`
		SampleRate   string `json:"sample_rate"`
		Duration     string `json:"duration"`
		Channels     int    `json:"channels"`
		Disposition  struct {
			AttachedPic int `json:"attached_pic"`
		} `json:"disposition"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		StartTime  string `json:"start_time"`
	} `json:"format"`
	Packets []struct {
		PTS   *int64 `json:"pts"`
		DTS   *int64 `json:"dts"`
		Flags string `json:"flags"`
		Size  string `json:"size"`
	} `json:"packets"`
}

func secs(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return time.Duration(math.Round(f * float64(time.Second)))
}

// Probe runs ffprobe on path and returns what it learns. It reads every
// video packet (not decoding) to learn exact frame timestamps and keyframes.
// Corrupt, truncated or unsupported input is an error wrapping ErrBadInput
// (and the *ToolError with ffprobe's reason when ffprobe itself failed).
func Probe(ctx context.Context, path string) (*Source, error) {
	if err := validPath("probe", path); err != nil {
		return nil, err
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
	vIdx := -1
	var nbFrames int
	for _, st := range pj.Streams {
		switch st.CodecType {
		case "video":
			if vIdx >= 0 || st.Disposition.AttachedPic != 0 {
				continue
			}
			vIdx = st.Index
			src.Codec = st.CodecName
			src.Width, src.Height = st.Width, st.Height
			src.FrameRate = parseRational(st.AvgFrameRate)
			if src.FrameRate.Num == 0 {
				src.FrameRate = parseRational(st.RFrameRate)
			}
			src.TimeBase = parseRational(st.TimeBase)
			nbFrames, _ = strconv.Atoi(st.NbFrames)
		case "audio":
			if src.HasAudio {
				continue
			}
			src.HasAudio = true
			src.AudioCodec = st.CodecName
			src.AudioSampleRate, _ = strconv.Atoi(st.SampleRate)
			src.AudioChannels = st.Channels
			src.AudioStart = secs(st.StartTime)
			src.AudioDuration = secs(st.Duration)
		}
	}
	if vIdx < 0 {
		return nil, fmt.Errorf("probe %s: %w: no video stream", path, ErrBadInput)
	}
	if src.Width <= 0 || src.Height <= 0 || src.TimeBase.Num <= 0 || src.TimeBase.Den <= 0 {
		return nil, fmt.Errorf("probe %s: %w: video stream has no size or time base (codec %q)", path, ErrBadInput, src.Codec)
	}
	out, stderr, err := runTool(ctx, FFprobe, []string{"-hide_banner", "-v", "error", "-of", "json",
		"-select_streams", strconv.Itoa(vIdx), "-show_entries", "packet=pts,dts,flags,size", "-show_packets", fileArg(path)})
	if err != nil {
		return nil, fmt.Errorf("probe %s packets: %w: %w", path, ErrBadInput, err)
	}
	if r := tailLines(stderr, 4); r != "" {
		// ffprobe read to the end but complained (truncated or damaged data).
		return nil, fmt.Errorf("probe %s: %w: %w", path, ErrBadInput, &ToolError{Tool: FFprobe, Reason: r, Err: errors.New("errors while reading packets")})
	}
	pj.Packets = nil
	if err := json.Unmarshal(out, &pj); err != nil {
		return nil, fmt.Errorf("probe %s: parse ffprobe packets: %w", path, err)
	}
	type pk struct {
		pts  int64
		key  bool
		size int32
	}
	pks := make([]pk, 0, len(pj.Packets))
	for _, p := range pj.Packets {
		t := p.PTS
		if t == nil {
			t = p.DTS
		}
		if t == nil {
			return nil, fmt.Errorf("probe %s: %w: video packet without timestamps", path, ErrBadInput)
		}
		size, _ := strconv.ParseInt(p.Size, 10, 32) // a missing size only weakens ChunkCost
		pks = append(pks, pk{*t, strings.Contains(p.Flags, "K"), int32(size)})
	}
	if len(pks) == 0 {
		return nil, fmt.Errorf("probe %s: %w: no video frames", path, ErrBadInput)
	}
	if nbFrames > 0 && nbFrames != len(pks) {
		return nil, fmt.Errorf("probe %s: %w: truncated: container says %d video frames, found %d", path, ErrBadInput, nbFrames, len(pks))
	}
	sort.SliceStable(pks, func(i, j int) bool { return pks[i].pts < pks[j].pts })
	src.FramePTS = make([]int64, len(pks))
	src.FrameBytes = make([]int32, len(pks))
	for i, p := range pks {
		src.FrameBytes[i] = p.size
		if i > 0 && p.pts == pks[i-1].pts {
			return nil, fmt.Errorf("probe %s: %w: two video frames share pts %d", path, ErrBadInput, p.pts)
		}
		src.FramePTS[i] = p.pts
		if p.key {
			src.Keyframes = append(src.Keyframes, i)
		}
	}
	src.FrameCount = len(pks)
	n := len(pks)
	var last int64
	if n > 1 {
		minI, maxI := int64(math.MaxInt64), int64(0)
		for i := 1; i < n; i++ {
			d := src.FramePTS[i] - src.FramePTS[i-1]
			minI, maxI = min(minI, d), max(maxI, d)
		}
		src.VFR = maxI-minI > 1
		last = src.FramePTS[n-1] - src.FramePTS[n-2]
	} else if src.FrameRate.Num > 0 {
		last = int64(math.Round(float64(src.TimeBase.Den) / (src.FrameRate.Float() * float64(src.TimeBase.Num))))
	}
	if last <= 0 {
		last = 1
	}
	src.EndPTS = src.FramePTS[n-1] + last
	src.Duration = src.TicksToDuration(src.EndPTS - src.FramePTS[0])
	return src, nil
}

// VideoStart is the presentation time of the first video frame.
func (s *Source) VideoStart() time.Duration { return s.TicksToDuration(s.FramePTS[0]) }
