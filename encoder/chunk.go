package encoder

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// ChunkOptions bounds chunk lengths. Zero fields take the defaults
// Target 10s, Min 4s, Max 20s.
type ChunkOptions struct {
	Target, Min, Max time.Duration
}

// Defaults for ChunkOptions.
const (
	DefaultChunkTarget = 10 * time.Second
	DefaultChunkMin    = 4 * time.Second
	DefaultChunkMax    = 20 * time.Second
)

func (o ChunkOptions) withDefaults() ChunkOptions {
	if o.Target == 0 {
		o.Target = DefaultChunkTarget
	}
	if o.Min == 0 {
		o.Min = min(DefaultChunkMin, o.Target)
	}
	if o.Max == 0 {
		o.Max = max(DefaultChunkMax, o.Target)
	}
	return o
}

// Chunk is a run of source frames [StartFrame, StartFrame+Frames) in
// presentation order. StartPTS is the pts of its first frame and EndPTS the
// pts of the next chunk's first frame (the source's EndPTS for the last).
type Chunk struct {
	Index      int   `json:"index"`
	StartFrame int   `json:"start_frame"`
	Frames     int   `json:"frames"`
	StartPTS   int64 `json:"start_pts"`
	EndPTS     int64 `json:"end_pts"`
}

// PlanChunks splits src into chunks. It is pure.
//
// Each cut is placed at the keyframe whose distance from the chunk start is
// within [Min, Max], leaves at least Min for the rest, and is nearest to
// Target. (Cutting a pre-roll's length after it would let every chunk start
// warm, see Preroll, but the extra keyframes and pre-roll encodes cost 6%
// of the encode's wall time on make bench-encode, past its 1.05 target.) When no keyframe qualifies (keyframes too far apart), the cut is
// placed at the frame nearest to Target anyway (or to half of what is left,
// when Target would leave a tail shorter than Min): chunk encodes decode the
// source from the preceding keyframe, so any frame can start a chunk. The
// last chunk takes everything once what is left is at most Max and shorter
// than Target+Min. Chunks cover every frame exactly once; a source shorter
// than Min is one chunk. Lengths stay within [Min, Max] (to a frame) when
// Max >= 2*Min; with a narrower window some lengths cannot be split and a
// chunk may fall below Min.
// A chunk never ends on a held frame (one shown holdFactor times longer
// than the median interval): the cut moves past it.
// Scene-cut detection is not done: only container keyframes are used.
func PlanChunks(src *Source, opt ChunkOptions) ([]Chunk, error) {
	if src == nil {
		return nil, errors.New("plan chunks: nil source")
	}
	opt = opt.withDefaults()
	if opt.Min <= 0 || opt.Min > opt.Target || opt.Target > opt.Max {
		return nil, fmt.Errorf("plan chunks: need 0 < min <= target <= max, got %v/%v/%v", opt.Min, opt.Target, opt.Max)
	}
	pts := src.FramePTS
	n := len(pts)
	if n == 0 {
		return nil, errors.New("plan chunks: source has no frames")
	}
	if src.TimeBase.Num <= 0 || src.TimeBase.Den <= 0 {
		return nil, fmt.Errorf("plan chunks: bad time base %v", src.TimeBase)
	}
	for i := 1; i < n; i++ {
		if pts[i] <= pts[i-1] {
			return nil, fmt.Errorf("plan chunks: frame pts not increasing at frame %d", i)
		}
	}
	end := src.EndPTS
	if end <= pts[n-1] {
		return nil, fmt.Errorf("plan chunks: end pts %d not after last frame pts %d", end, pts[n-1])
	}
	typical := medianInterval(pts)
	keys := append([]int(nil), src.Keyframes...)
	sort.Ints(keys)
	dur := func(a, b int64) time.Duration { return ticksToDuration(b-a, src.TimeBase) }
	// frameAt returns the first frame f > s whose pts is at least want after s's.
	frameAt := func(s int, want time.Duration) int {
		f := s + 1 + sort.Search(n-s-1, func(k int) bool { return dur(pts[s], pts[s+1+k]) >= want })
		return min(f, n-1)
	}
	var out []Chunk
	for s := 0; s < n; {
		left := dur(pts[s], end)
		if left <= opt.Max && left < opt.Target+opt.Min {
			out = append(out, Chunk{Index: len(out), StartFrame: s, Frames: n - s, StartPTS: pts[s], EndPTS: end})
			break
		}
		best, bestDist := -1, time.Duration(0)
		for k := sort.SearchInts(keys, s+1); k < len(keys); k++ {
			f := keys[k]
			if f >= n {
				break
			}
			d := dur(pts[s], pts[f])
			if d > opt.Max {
				break
			}
			if d < opt.Min || dur(pts[f], end) < opt.Min {
				continue
			}
			dist := d - opt.Target
			if dist < 0 {
				dist = -dist
			}
			if best < 0 || dist < bestDist {
				best, bestDist = f, dist
			}
		}
		if best < 0 {
			want := opt.Target
			if left-want < opt.Min {
				want = left / 2
			}
			best = frameAt(s, want)
		}
		// A chunk does not end on a held frame (a screen recording's still
		// picture): the encoder learns how long a frame is shown from the
		// next one, and gives a frame shown for seconds its due only when
		// that next frame is in the same encode.
		for best < n-1 && best-s > 1 && pts[best]-pts[best-1] > holdFactor*typical {
			best++
		}
		out = append(out, Chunk{Index: len(out), StartFrame: s, Frames: best - s, StartPTS: pts[s], EndPTS: pts[best]})
		s = best
	}
	return out, nil
}

// holdFactor: a frame shown this many times longer than the typical frame
// interval is held (see PlanChunks).
const holdFactor = 4

// medianInterval is the median interval between consecutive pts (1 for a
// single frame).
func medianInterval(pts []int64) int64 {
	if len(pts) < 2 {
		return 1
	}
	d := make([]int64, len(pts)-1)
	for i := range d {
		d[i] = pts[i+1] - pts[i]
	}
	slices.Sort(d)
	return max(d[len(d)/2], 1)
}

// ChunkDuration is the chunk's length as a time.Duration in src's time base.
func ChunkDuration(src *Source, c Chunk) time.Duration {
	return ticksToDuration(c.EndPTS-c.StartPTS, src.TimeBase)
}

// ChunkFromFrames rebuilds a Chunk (with its pts) from a start frame and a
// frame count, as the CLI receives them.
func ChunkFromFrames(src *Source, index, start, frames int) (Chunk, error) {
	n := len(src.FramePTS)
	if start < 0 || frames <= 0 || start+frames > n {
		return Chunk{}, fmt.Errorf("chunk %d: frames [%d,%d) outside source's %d frames", index, start, start+frames, n)
	}
	c := Chunk{Index: index, StartFrame: start, Frames: frames, StartPTS: src.FramePTS[start], EndPTS: src.EndPTS}
	if start+frames < n {
		c.EndPTS = src.FramePTS[start+frames]
	}
	return c, nil
}
