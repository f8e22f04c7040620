package encoder

import (
	"fmt"
	"math"
	"strconv"
)

// Pictures: what every rendition's frames look like.
//
//   - Size. A ladder rung is a box (1920x1080 for "1080p"). The picture is
//     fitted inside it at the source's display aspect ratio (coded size
//     stretched by the sample aspect ratio, turned by the rotation), with
//     even dimensions and square pixels; a portrait source fits the box
//     turned on its side, so "720p" of a phone clip is 720 wide. Rungs whose
//     box would upscale the source are dropped (FitLadder); when every rung
//     would, the smallest is kept at the source's own size.
//   - Rotation. ffmpeg applies the source's display matrix while decoding,
//     so outputs are stored upright and carry no rotation.
//   - Interlacing. Field-coded sources are deinterlaced with bwdif, one
//     output frame per source frame (frame count and timestamps kept).
//   - Pixel format. Outputs are 4:2:0. H.264 rungs are 8-bit. HEVC and AV1
//     rungs of a source with more than 8 bits are 10-bit.
//   - HDR. HEVC and AV1 rungs of an HDR10 (PQ) or HLG source stay 10-bit
//     BT.2020 with the source's transfer, mastering display and content
//     light levels. H.264 rungs of such a source are
//     tone-mapped to SDR BT.709 (zscale + tonemap, Hable), since 8-bit H.264
//     cannot carry HDR.

// deinterlaceFilter turns each field-coded frame of src into one
// progressive frame (bwdif, field order from each frame's flags), and puts
// the timestamps back in the source's time base (bwdif halves it), so that
// trim can select frames by the source's pts.
func deinterlaceFilter(src *Source) string {
	return "bwdif=mode=send_frame:parity=auto:deint=all,settb=" + src.TimeBase.String()
}

// toneMapFilter maps PQ/HLG BT.2020 to SDR BT.709 8-bit.
const toneMapFilter = "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"

// keepsHDR says whether rendition r of src is encoded as HDR: an HDR
// source and a codec that carries it.
func keepsHDR(src *Source, r Rendition) bool {
	return (src.HDR10() || src.HLG()) && r.Codec != "h264"
}

// toneMaps says whether rendition r of src is tone-mapped to SDR.
func toneMaps(src *Source, r Rendition) bool {
	return (src.HDR10() || src.HLG()) && r.Codec == "h264"
}

// VideoFilter is the filter chain from a decoded (and deinterlaced)
// source frame to the encoder's input for rendition r: scale to the
// rendition's size with square pixels, tone-map if needed, and convert to
// the output pixel format. It is pure.
func VideoFilter(src *Source, r Rendition) string {
	f := "scale=" + strconv.Itoa(r.Width) + ":" + strconv.Itoa(r.Height) + ":flags=bicubic,setsar=1"
	if toneMaps(src, r) {
		f += "," + toneMapFilter
	}
	return f + ",format=" + r.pixFmt()
}

// ReferenceFilter is what Compare applies to the source before comparing
// it with rendition r: deinterlace, scale and tone-map as the encode did.
func ReferenceFilter(src *Source, r Rendition) string {
	f := ""
	if src.Interlaced() {
		f = deinterlaceFilter(src) + ","
	}
	return f + VideoFilter(src, r)
}

// colorArgs tags the output with the colour description it carries: the
// source's for HDR renditions, BT.709 for tone-mapped ones, the source's
// own when it states one.
func colorArgs(src *Source, r Rendition) []string {
	prim, trc, space := src.ColorPrimaries, src.ColorTransfer, src.ColorSpace
	if toneMaps(src, r) {
		prim, trc, space = "bt709", "bt709", "bt709"
	}
	var a []string
	if validColorName(prim) {
		a = append(a, "-color_primaries", prim)
	}
	if validColorName(trc) {
		a = append(a, "-color_trc", trc)
	}
	if validColorName(space) {
		a = append(a, "-colorspace", space)
	}
	return a
}

// validColorName accepts ffprobe's colour names (letters, digits, '-', '_').
func validColorName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// FitLadder fits each rung of l to src (see the comment at the top of
// picture.go) and returns the renditions to encode and a line per rung
// saying what happened to it (dropped, resized, tone-mapped, 10-bit). It
// is pure.
func FitLadder(src *Source, l *Ladder) ([]Rendition, []string) {
	dw, dh := src.DisplaySize()
	var keep []Rendition
	var notes []string
	smallest := -1
	for i, r := range l.Renditions {
		bw, bh := r.Width, r.Height
		if dh > dw && bw > bh {
			bw, bh = bh, bw // a portrait source fits the box on its side
		}
		scale := math.Min(float64(bw)/float64(dw), float64(bh)/float64(dh))
		if smallest < 0 || r.Width*r.Height < l.Renditions[smallest].Width*l.Renditions[smallest].Height {
			smallest = i
		}
		// A rung a few pixels above the source (1280x720 for 1279x719) is
		// the source's size, not an upscale.
		if scale > 1.01 {
			notes = append(notes, fmt.Sprintf("%s dropped: its %dx%d box would upscale the %dx%d source", r.Name, r.Width, r.Height, dw, dh))
			continue
		}
		keep = append(keep, fitRung(src, r, math.Min(scale, 1), dw, dh, &notes))
	}
	if len(keep) == 0 && smallest >= 0 {
		r := l.Renditions[smallest]
		notes = append(notes, fmt.Sprintf("%s kept at the source's size: every rung would upscale", r.Name))
		keep = append(keep, fitRung(src, r, 1, dw, dh, &notes))
	}
	return keep, notes
}

// fitRung sizes one rung at scale of the display size and notes what
// changed.
func fitRung(src *Source, r Rendition, scale float64, dw, dh int, notes *[]string) Rendition {
	w, h := even(float64(dw)*scale), even(float64(dh)*scale)
	if w != r.Width || h != r.Height {
		*notes = append(*notes, fmt.Sprintf("%s encoded at %dx%d (box %dx%d, source displays at %dx%d)", r.Name, w, h, r.Width, r.Height, dw, dh))
	}
	r.Width, r.Height = w, h
	if r.Codec != "h264" && (src.BitDepth > 8 || keepsHDR(src, r)) {
		r.BitDepth = 10
	}
	if keepsHDR(src, r) {
		r.HDR = &HDR{Transfer: src.ColorTransfer, MasterDisplay: src.MasterDisplay, MaxCLL: src.MaxCLL}
	}
	switch {
	case toneMaps(src, r):
		*notes = append(*notes, fmt.Sprintf("%s tone-mapped from %s to SDR BT.709: H.264 renditions are 8-bit", r.Name, hdrName(src)))
	case keepsHDR(src, r):
		*notes = append(*notes, fmt.Sprintf("%s kept %s, 10-bit BT.2020", r.Name, hdrName(src)))
	}
	return r
}

func hdrName(src *Source) string {
	if src.HLG() {
		return "HLG"
	}
	return "HDR10"
}

// even rounds to the nearest even integer, at least 2.
func even(v float64) int {
	return max(2, int(math.Round(v/2))*2)
}
