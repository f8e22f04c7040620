package encoder

// codecCost is a coarse prior for the CPU cost of a codec's encoder at its
// default preset, relative to libx264: it only orders chunks of different
// renditions in a mixed ladder, so it need not be more than roughly right.
var codecCost = map[string]float64{"h264": 1, "hevc": 3, "av1": 3}

// CostModel estimates the relative cost of encoding chunks of one source,
// for dispatching the costliest chunks first (chunk cost varies several-fold
// with content, and a farm's finish time is set by the chunk that starts
// last and runs longest). The unit is arbitrary; only the order means
// something.
//
// A chunk's estimate is the work per frame summed over the chunk: decoding
// and scaling the source (a third of its pixels, a rough weight) plus
// encoding the rendition's pixels, the latter scaled by the codec's prior
// and by the chunk's content complexity: its source bytes per frame against
// the title's mean (1 when the probe has no frame sizes). Harder content
// costs the encoder more, and the source's own compressed size is a cheap,
// already-probed measure of how hard it is.
//
// The model knows nothing of presets, so across renditions it is only as
// good as the ladder is uniform in them (a veryslow rung costs several
// times a veryfast one of the same size), and nothing of NVENC, whose
// chunks are cheap in CPU and bounded by sessions instead. Within one
// rendition, where the dispatch order matters most, neither affects it.
type CostModel struct {
	src    *Source
	prefix []int64 // prefix[i] = bytes of frames [0, i); nil without sizes
}

// NewCostModel prepares the estimates for src (linear in its frames, once;
// each estimate after that is constant time).
func NewCostModel(src *Source) *CostModel {
	m := &CostModel{src: src}
	if len(src.FrameBytes) > 0 {
		m.prefix = make([]int64, len(src.FrameBytes)+1)
		for i, b := range src.FrameBytes {
			m.prefix[i+1] = m.prefix[i] + int64(b)
		}
		if m.prefix[len(src.FrameBytes)] <= 0 {
			m.prefix = nil
		}
	}
	return m
}

// Chunk estimates the cost of encoding chunk c at rendition r.
func (m *CostModel) Chunk(c Chunk, r Rendition) float64 {
	if c.Frames <= 0 {
		return 0
	}
	complexity := 1.0
	if n := len(m.prefix) - 1; n > 0 && c.StartFrame >= 0 && c.StartFrame+c.Frames <= n {
		chunk := m.prefix[c.StartFrame+c.Frames] - m.prefix[c.StartFrame]
		complexity = (float64(chunk) / float64(c.Frames)) / (float64(m.prefix[n]) / float64(n))
	}
	weight, ok := codecCost[r.Codec]
	if !ok {
		weight = 1
	}
	perFrame := float64(m.src.Width*m.src.Height)/3 + weight*complexity*float64(r.Width*r.Height)
	return float64(c.Frames) * perFrame
}

// ChunkCost is NewCostModel(src).Chunk(c, r), for a single estimate.
func ChunkCost(src *Source, c Chunk, r Rendition) float64 {
	return NewCostModel(src).Chunk(c, r)
}
