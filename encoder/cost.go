package encoder

// codecCost is a coarse prior for the CPU cost of a codec's encoder at its
// default preset, relative to libx264: it only orders chunks of different
// renditions in a mixed ladder, so it need not be more than roughly right.
var codecCost = map[string]float64{"h264": 1, "hevc": 3, "av1": 3}

// ChunkCost estimates the relative cost of encoding chunk c of src at
// rendition r, for dispatching the costliest chunks first (chunk cost
// varies several-fold with content, and a farm's finish time is set by the
// chunk that starts last and runs longest). The unit is arbitrary; only
// the order means something.
//
// The estimate is the work per frame summed over the chunk: decoding and
// scaling the source (a third of its pixels, a rough weight) plus encoding
// the rendition's pixels, the latter scaled by the codec's prior and by the
// chunk's content complexity: its source bytes per frame against the
// title's mean (1 when the probe has no frame sizes). Harder content costs
// the encoder more, and the source's own compressed size is a cheap,
// already-probed measure of how hard it is.
func ChunkCost(src *Source, c Chunk, r Rendition) float64 {
	if c.Frames <= 0 {
		return 0
	}
	complexity := 1.0
	if n := len(src.FrameBytes); n > 0 && c.StartFrame >= 0 && c.StartFrame+c.Frames <= n {
		var title, chunk int64
		for i, b := range src.FrameBytes {
			title += int64(b)
			if i >= c.StartFrame && i < c.StartFrame+c.Frames {
				chunk += int64(b)
			}
		}
		if title > 0 {
			complexity = (float64(chunk) / float64(c.Frames)) / (float64(title) / float64(n))
		}
	}
	weight, ok := codecCost[r.Codec]
	if !ok {
		weight = 1
	}
	perFrame := float64(src.Width*src.Height)/3 + weight*complexity*float64(r.Width*r.Height)
	return float64(c.Frames) * perFrame
}
