package encoder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Conformance of an output with its source, frame by frame: the checks the
// farm's tests (and anyone auditing an encode) run on every rendition.

// ConformLimits are the tolerances CheckConformance applies.
type ConformLimits struct {
	// PSNRLoss is how far the output's mean PSNR may fall below a
	// whole-file encode's with the same settings (dB); FrameLoss how far
	// any one frame's may (dB).
	PSNRLoss, FrameLoss float64
	// ColdStarts are the frames where a chunk starts without a pre-roll
	// (ColdStarts): they are held to FrameLoss like every frame, and
	// Conformance.ColdStartLoss reports the largest loss among them (see
	// coldStartBoost).
	ColdStarts []int
}

// DefaultConformLimits are 0.25 dB on average and 6 dB on any frame,
// chunks' cold first frames included.
var DefaultConformLimits = ConformLimits{PSNRLoss: 0.25, FrameLoss: 6}

// ColdStarts lists the first frames of the chunks of rendition r that start
// without a pre-roll (after the title's first frame), for ConformLimits.
func ColdStarts(src *Source, chunks []Chunk, r Rendition) []int {
	var out []int
	for _, c := range chunks {
		if c.StartFrame > 0 && Preroll(src, c, r) == 0 {
			out = append(out, c.StartFrame)
		}
	}
	return out
}

// Conformance is what CheckConformance measured.
type Conformance struct {
	Rendition string
	// ChunkedPSNR is the output's mean PSNR against the source, Whole a
	// whole-file encode's with the same settings (dB).
	ChunkedPSNR, Whole float64
	// WorstFrame is the frame whose PSNR fell furthest below the
	// whole-file encode's, by WorstFrameLoss dB; ColdStartLoss is the
	// largest loss on a chunk's cold first frame.
	WorstFrame                    int
	WorstFrameLoss, ColdStartLoss float64
	// Problems are the checks that failed, in words.
	Problems []string
	// Frames and SourceFrames count the output's and the source's frames.
	Frames, SourceFrames int
}

// CheckConformance checks the output at path, encoded as rendition r (as
// fitted to src by FitLadder) of source: the source's frame count, every
// frame at the source's time from the first (within 1 µs), the duration
// within one frame, a clean decode, no rotation left to apply, the audio
// relation (CheckAudio), and PSNR against a whole-file encode of the source
// with the same settings (written in tmpDir) within lim. An error means a
// check could not run; problems are in the result.
func CheckConformance(ctx context.Context, source string, src *Source, r Rendition, path, tmpDir string, lim ConformLimits) (*Conformance, error) {
	c := &Conformance{Rendition: r.Name, SourceFrames: src.FrameCount}
	problem := func(f string, a ...any) { c.Problems = append(c.Problems, fmt.Sprintf(f, a...)) }
	o, err := Probe(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("conformance of %s: %w", r.Name, err)
	}
	c.Frames = o.FrameCount
	for _, p := range CheckTimestamps(src, o) {
		problem("%s", p)
	}
	if d := (o.Duration - src.Duration).Abs(); d > lastInterval(src) {
		problem("duration %v, source %v", o.Duration, src.Duration)
	}
	if msg, err := DecodeErrors(ctx, path); err != nil || msg != "" {
		problem("decode: %v %s", err, msg)
	}
	if o.Rotation != 0 {
		problem("output carries a %d° rotation", o.Rotation)
	}
	if o.Width != r.Width || o.Height != r.Height || o.SAR.Num != o.SAR.Den {
		problem("output %dx%d SAR %v, want %dx%d square pixels", o.Width, o.Height, o.SAR, r.Width, r.Height)
	}
	switch h := r.HDR; {
	case h != nil:
		if o.ColorTransfer != h.Transfer || o.BitDepth < 10 {
			problem("HDR rendition is %d-bit with transfer %q, want 10-bit %s", o.BitDepth, o.ColorTransfer, h.Transfer)
		}
		if h.MasterDisplay != "" && o.MasterDisplay != h.MasterDisplay || h.MaxCLL != "" && o.MaxCLL != h.MaxCLL {
			problem("HDR metadata %q %q, want the source's %q %q", o.MasterDisplay, o.MaxCLL, h.MasterDisplay, h.MaxCLL)
		}
	case toneMaps(src, r):
		if o.ColorTransfer != "bt709" || o.BitDepth != 8 {
			problem("tone-mapped rendition is %d-bit with transfer %q, want 8-bit bt709", o.BitDepth, o.ColorTransfer)
		}
	}
	if o.Interlaced() {
		problem("output is interlaced (%s)", o.FieldOrder)
	}
	if src.HasAudio {
		for _, p := range CheckAudio(src, o) {
			problem("%s", p)
		}
	} else if o.HasAudio {
		problem("output has audio, source has none")
	}
	whole := filepath.Join(tmpDir, r.Name+"-whole.mp4")
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	if err := EncodeWhole(ctx, WholeJob{Source: source, Src: src, Rendition: r, Threads: 1, Out: whole}); err != nil {
		return nil, fmt.Errorf("conformance of %s: whole-file encode: %w", r.Name, err)
	}
	ref := ReferenceFilter(src, r)
	qc, err := Compare(ctx, path, source, ref)
	if err != nil {
		return nil, fmt.Errorf("conformance of %s: %w", r.Name, err)
	}
	qw, err := Compare(ctx, whole, source, ref)
	if err != nil {
		return nil, fmt.Errorf("conformance of %s: whole-file: %w", r.Name, err)
	}
	c.ChunkedPSNR, c.Whole = qc.PSNR, qw.PSNR
	if len(qc.FramePSNR) != src.FrameCount || len(qw.FramePSNR) != src.FrameCount {
		problem("PSNR over %d (output) and %d (whole-file) frames, source has %d", len(qc.FramePSNR), len(qw.FramePSNR), src.FrameCount)
	}
	for i := range min(len(qc.FramePSNR), len(qw.FramePSNR)) {
		d := qw.FramePSNR[i] - qc.FramePSNR[i]
		if slices.Contains(lim.ColdStarts, i) {
			c.ColdStartLoss = max(c.ColdStartLoss, d)
		}
		if d > c.WorstFrameLoss {
			c.WorstFrame, c.WorstFrameLoss = i, d
		}
	}
	if qw.PSNR-qc.PSNR > lim.PSNRLoss {
		problem("PSNR %.3f dB, %.3f below a whole-file encode's %.3f (limit %.2f)", qc.PSNR, qw.PSNR-qc.PSNR, qw.PSNR, lim.PSNRLoss)
	}
	if c.WorstFrameLoss > lim.FrameLoss {
		problem("frame %d is %.2f dB worse than in a whole-file encode (limit %.1f)", c.WorstFrame, c.WorstFrameLoss, lim.FrameLoss)
	}
	return c, nil
}
