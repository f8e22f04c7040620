package encoder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// How a chunk is encoded and checked.
//
// A chunk's encode decodes the source from a start point (the latest
// keyframe at or before the chunk, or the file's start), drops the frames
// before the chunk and encodes the rest. A seek can land on a keyframe that
// does not decode clean on its own: an H.264 I-frame or recovery point that
// is not IDR, whose later frames still reference pictures before it. The
// decoder then reports errors and shows grey or smeared pictures, while
// ffmpeg exits 0 and the frame count may be right. So each encode also:
//
//   - logs every decoded frame (showinfo) and every decoder error, and
//     counts the errors that arrive once frames near the chunk are being
//     presented (errors before the first presented frame belong to data the
//     seek skipped into, which the chunk never shows);
//   - hashes the chunk's first and last source pictures.
//
// The encode is accepted when the frame count is the plan's, no error fell
// in the chunk, and the start is trusted: a clean keyframe (Source.CleanKeys)
// with no errors at all, or the first and last pictures equal to those of a
// second decode started earlier, at the latest keyframe before it with
// current parameter sets (Source.FreshKeys). Otherwise the chunk is encoded
// again from an earlier start: the latest clean keyframe, then the file's
// start. What a decode from a clean start presents is the source's truth;
// if even that reports errors inside the chunk, the source is damaged there
// and the step fails with ErrDecode and the decoder's words.

// ErrDecode marks a source whose frames do not decode cleanly even when
// decoding starts clean (at an IDR keyframe or the file's start): retrying
// will not help.
var ErrDecode = errors.New("source does not decode cleanly")

// fileStart is the decode start that reads the file from its beginning.
const fileStart = -1

// decodeStarts lists where to try decoding from so that frame first (the
// chunk's first frame, or its pre-roll's) is decoded, in order: the latest
// keyframe at or before it, the latest clean keyframe, the file's start.
func decodeStarts(src *Source, first int) []int {
	key, clean := latestKey(src.Keyframes, first), latestKey(src.CleanKeys, first)
	starts := []int{key}
	if clean != key && clean != fileStart {
		starts = append(starts, clean)
	}
	if starts[len(starts)-1] != fileStart {
		starts = append(starts, fileStart)
	}
	return starts
}

// prerollFrames is how many frames before a chunk its encode runs through
// the encoder and then drops.
const prerollFrames = 5

// Preroll returns how many frames before chunk c its encode of rendition r
// runs through the encoder (and drops), so that the encoder's rate control
// enters the chunk warm, as it would in a whole-file encode: a fresh x264
// gives its first frame a quantizer from that frame alone, where a running
// one derives it from the frames before; a chunk's first frame measured up
// to 8 dB below the same frame of a whole-file encode cold, 4 dB with five
// frames of pre-roll (cold starts get coldStartBoost instead). The pre-roll's frames must be decoded, so it is used
// only where that costs at most 2*prerollFrames frames more than the
// chunk's own decode: chunks that start between keyframes, and sources
// whose keyframes are close (intra-only mezzanines). A chunk that starts at
// a keyframe of a long GOP, as most do, starts cold: decoding a whole
// source GOP more per chunk and rendition cost 10% of the encode's CPU on
// make bench-encode. AV1 chunks start cold (see forcesKeyframes). It is
// pure.
func Preroll(src *Source, c Chunk, r Rendition) int {
	if !forcesKeyframes(r.Codec) {
		return 0
	}
	want := min(prerollFrames, c.StartFrame)
	// The latest keyframes at or before the chunk and its pre-roll (0: the
	// file's start).
	key, near := max(latestKey(src.Keyframes, c.StartFrame), 0), max(latestKey(src.Keyframes, c.StartFrame-want), 0)
	if c.StartFrame-near <= 2*prerollFrames {
		return want
	}
	return min(want, c.StartFrame-key)
}

// seekArgs returns the input options that start decoding at keyframe
// index key (none for fileStart): an absolute seek a millisecond before
// the keyframe's pts, so the demuxer lands on it or an earlier one.
func seekArgs(src *Source, key int) []string {
	if key == fileStart {
		return nil
	}
	t := src.TicksToDuration(src.FramePTS[key]) - time.Millisecond
	if t <= 0 {
		return nil
	}
	return []string{"-seek_timestamp", "1", "-noaccurate_seek", "-ss", strconv.FormatFloat(t.Seconds(), 'f', 6, 64)}
}

// trimFilter selects the chunk's frames by pts.
func trimFilter(src *Source, c Chunk) string {
	f := "trim=start_pts=" + strconv.FormatInt(c.StartPTS, 10)
	if c.StartFrame+c.Frames < len(src.FramePTS) {
		f += ":end_pts=" + strconv.FormatInt(c.EndPTS, 10)
	}
	return f
}

// Filter instance names whose log lines decodeLog reads.
const (
	frameLogName = "showinfo@frames"
	edgeLogName  = "showinfo@edges"
)

// edgeFilter picks the chunk's first and last pictures and logs their
// checksums.
func edgeFilter(src *Source, c Chunk) string {
	return trimFilter(src, c) + ",select='eq(n\\,0)+eq(n\\," + strconv.Itoa(c.Frames-1) + ")'," + edgeLogName
}

// ChunkArgs builds the ffmpeg arguments that encode chunk j.Chunk of src,
// decoding from keyframe index start (or the file's start for -1). It is
// pure. The output holds exactly the chunk's frames (selected by pts with
// trim, with -copyts and -fps_mode passthrough so nothing is dropped,
// duplicated or re-timed), with pts = source pts - first frame's pts +
// tsOffset, in the source's time base, as NUT, filtered by VideoFilter. A
// second, null output logs the chunk's first and last source pictures; every
// decoded frame and error is logged (see decodeLog).
func ChunkArgs(src *Source, j ChunkJob, start int) ([]string, error) {
	if err := validPath("source", j.Source); err != nil {
		return nil, err
	}
	if err := validPath("out", j.Out); err != nil {
		return nil, err
	}
	if err := ValidateRendition(j.Rendition); err != nil {
		return nil, err
	}
	b, err := BackendFor(j.Rendition.Codec, j.GPU)
	if err != nil {
		return nil, err
	}
	if j.GPU {
		if err := validPreset(j.Rendition, true); err != nil {
			return nil, err
		}
		if err := validDevice(j.GPUDevice); err != nil {
			return nil, err
		}
	}
	c, err := ChunkFromFrames(src, j.Chunk.Index, j.Chunk.StartFrame, j.Chunk.Frames)
	if err != nil {
		return nil, err
	}
	pre := Preroll(src, c, j.Rendition)
	first := c.StartFrame - pre
	if start != fileStart && (start < 0 || start > first) {
		return nil, fmt.Errorf("chunk %d: decode start %d after the first frame to encode %d", c.Index, start, first)
	}
	off, err := tsOffset(src.TimeBase)
	if err != nil {
		return nil, err
	}
	r := j.Rendition
	if r.GOP == 0 {
		r.GOP = GOPFrames(src)
	}
	threads := max(j.Threads, 1)
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", "-y", "-copyts", "-threads", strconv.Itoa(threads)}
	a = append(a, seekArgs(src, start)...)
	a = append(a, "-i", fileArg(j.Source))
	// Deinterlacing sees the frames around the cut, as in a whole-file
	// encode; trim comes after it.
	deint := ""
	if src.Interlaced() {
		deint = deinterlaceFilter(src) + ","
	}
	encoded := c // the frames that go through the encoder: pre-roll and chunk
	encoded.StartFrame, encoded.Frames, encoded.StartPTS = first, c.Frames+pre, src.FramePTS[first]
	graph := "[0:v:0]" + frameLogName + "=checksum=0,split[enc][edge];" +
		"[enc]" + deint + trimFilter(src, encoded) + ",setpts=PTS-" + strconv.FormatInt(src.FramePTS[0], 10) + "+" + strconv.FormatInt(off, 10) +
		"," + VideoFilter(src, r) + "[v];" +
		"[edge]" + edgeFilter(src, c) + "[e]"
	a = append(a, "-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough", "-enc_time_base:v", src.TimeBase.String())
	a = append(a, coldStart(b.Args(r, threads), pre == 0 && c.StartFrame > 0)...)
	a = append(a, DeviceArgs(b, j.GPUDevice)...)
	// Keyframes on the title's grid (every GOP frames from the title's
	// first frame, as a whole-file encode places them), besides the one
	// that starts the chunk: renditions stay aligned for segmenting, and
	// each frame gets the picture type it would get without chunking.
	a = append(a, "-force_key_frames", "expr:eq(mod(n+"+strconv.Itoa(first)+","+strconv.Itoa(r.GOP)+"),0)+eq(n,"+strconv.Itoa(pre)+")")
	a = append(a, colorArgs(src, r)...)
	if pre > 0 {
		// The segment muxer cuts at the chunk's first frame (a forced
		// keyframe of a closed GOP): the pre-roll lands in part 0, the
		// chunk in part 1 (PrerollParts).
		a = append(a, "-f", "segment", "-segment_format", "nut", "-segment_frames", strconv.Itoa(pre), "-reset_timestamps", "0",
			fileArg(strings.ReplaceAll(j.Out, "%", "%%")+".%d"))
	} else {
		a = append(a, "-f", "nut", fileArg(j.Out))
	}
	a = append(a, "-map", "[e]", "-f", "null", "-")
	return a, nil
}

// coldStartBoost is the bitrate factor x264 and x265 give a chunk's first
// frame when it starts cold (no pre-roll). A running encoder sets a
// keyframe's quantizer from the average of the P-frames before it; a fresh
// one has none and picks a coarser one (measured 3 to 11 dB below the
// whole-file frame with veryfast). Twice the bits on that one frame brings
// it back to within a few dB, for a fraction of a percent of the chunk's
// size.
const coldStartBoost = "2"

// coldStart adds the cold-start zone to a backend's x264/x265 parameters
// (a zone over frame 0 only) when cold is true.
func coldStart(args []string, cold bool) []string {
	if !cold {
		return args
	}
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-x264-params" || out[i] == "-x265-params" {
			out[i+1] += ":zones=0,0,b=" + coldStartBoost
			return out
		}
	}
	return out
}

// prerollParts are the files ChunkArgs writes for out when the encode has
// a pre-roll: the pre-roll, then the chunk.
func prerollParts(out string) (preroll, chunk string) { return out + ".0", out + ".1" }

// referenceArgs decodes (without encoding) from keyframe index start and
// logs chunk c's first and last pictures, for comparison with an encode's.
func referenceArgs(src *Source, source string, c Chunk, start int) []string {
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", "-threads", "1"}
	a = append(a, seekArgs(src, start)...)
	a = append(a, "-i", fileArg(source), "-filter_complex", "[0:v:0]"+frameLogName+"=checksum=0,"+edgeFilter(src, c)+"[e]",
		"-map", "[e]", "-f", "null", "-")
	return a
}

// decodeReport is what one logged decode says about a chunk.
type decodeReport struct {
	// Errors are error lines logged once frames near the chunk were being
	// presented (see decodeLog); Preroll those logged before any frame.
	Errors, Preroll []string
	// Edges are the checksums of the chunk's first and last pictures.
	Edges []string
}

var (
	showinfoPTS = lazyRegexp(`\bn:\s*\d+\s+pts:\s*(-?\d+)`)
	checksumRE  = lazyRegexp(`\bchecksum:([0-9A-Fa-f]+)`)
)

// decodeLog reads an ffmpeg log written with -loglevel level+info by
// ChunkArgs or referenceArgs. It is pure. An error line counts against the
// chunk once the decoder has presented a frame at or after fromPTS (frames
// a reorder window before the chunk: an error logged then belongs to a
// frame presented later, which may be in the chunk) and before it has
// presented the frame at lastPTS (later errors belong to frames after the
// chunk). Errors logged before the first presented frame are preroll.
func decodeLog(log []byte, fromPTS, lastPTS int64) decodeReport {
	var r decodeReport
	shown, inChunk, done := false, false, false
	for _, line := range strings.Split(string(log), "\n") {
		switch {
		case strings.Contains(line, "["+frameLogName+" @"):
			if m := showinfoPTS().FindStringSubmatch(line); m != nil {
				pts, _ := strconv.ParseInt(m[1], 10, 64)
				shown = true
				if pts >= fromPTS {
					inChunk = true
				}
				if pts >= lastPTS {
					done = true
				}
			}
		case strings.Contains(line, "["+edgeLogName+" @"):
			if m := checksumRE().FindStringSubmatch(line); m != nil {
				r.Edges = append(r.Edges, m[1])
			}
		case strings.Contains(line, "[error]") || strings.Contains(line, "[fatal]") || strings.Contains(line, "[panic]"):
			msg := strings.TrimSpace(line)
			switch {
			case done:
			case !shown:
				r.Preroll = append(r.Preroll, msg)
			case inChunk:
				r.Errors = append(r.Errors, msg)
			}
		}
	}
	return r
}

// chunkWindow returns the pts from which decoder errors count against
// chunk c and the pts of its last frame.
func chunkWindow(src *Source, c Chunk) (from, last int64) {
	return src.FramePTS[max(c.StartFrame-reorderWindow, 0)], src.FramePTS[c.StartFrame+c.Frames-1]
}

// EncodeChunk encodes one chunk into j.Out (a NUT file, see ChunkExt). It
// writes to a temporary name and renames, so a retried task never sees a
// partial chunk. Each try's decode is checked as described at the top of
// chunkrun.go; a failed check moves the decode start earlier. It fails with
// ErrDecode when even a decode from the file's start is damaged inside the
// chunk or presents another number of frames than planned, with
// ErrNVENCSessionLimit (and the *ToolError) when NVENC had no session free,
// and with a *ToolError when ffmpeg itself fails.
func EncodeChunk(ctx context.Context, j ChunkJob) error {
	src := j.Src
	if src == nil {
		var err error
		if src, err = Probe(ctx, j.Source); err != nil {
			return fmt.Errorf("encode chunk %d: %w", j.Chunk.Index, err)
		}
	}
	c, err := ChunkFromFrames(src, j.Chunk.Index, j.Chunk.StartFrame, j.Chunk.Frames)
	if err != nil {
		return fmt.Errorf("encode chunk: %w: %w", ErrBadInput, err)
	}
	if err := os.MkdirAll(filepath.Dir(j.Out), 0o755); err != nil {
		return fmt.Errorf("encode chunk %d: %w", c.Index, err)
	}
	tmp := j.Out + ".part"
	defer os.Remove(tmp)
	var why []string
	for _, start := range decodeStarts(src, c.StartFrame-Preroll(src, c, j.Rendition)) {
		problem, err := encodeChunkFrom(ctx, src, j, c, start, tmp)
		if err != nil {
			return fmt.Errorf("encode chunk %d of %s: %w", c.Index, j.Source, err)
		}
		if problem == "" {
			if err := os.Rename(tmp, j.Out); err != nil {
				return fmt.Errorf("encode chunk %d: %w", c.Index, err)
			}
			return nil
		}
		why = append(why, startName(src, start)+": "+problem)
		if strings.HasPrefix(problem, decodeErrorsProblem) && src.IsClean(start) {
			break // an earlier start decodes the chunk no differently
		}
	}
	return fmt.Errorf("encode chunk %d of %s: %w: %s", c.Index, j.Source, ErrDecode, strings.Join(why, "; "))
}

// forcesKeyframes says whether codec's encoders honour forced keyframes
// (ffmpeg 5.1's SVT-AV1 wrapper does not), which the pre-roll's split
// needs.
func forcesKeyframes(codec string) bool { return codec != "av1" }

// decodeErrorsProblem starts the problem reported when the decoder logged
// errors inside a chunk.
const decodeErrorsProblem = "decoder errors in the chunk"

// startName describes a decode start for messages.
func startName(src *Source, start int) string {
	if start == fileStart {
		return "from the file's start"
	}
	kind := "keyframe"
	if !src.IsClean(start) {
		kind = "non-IDR keyframe"
	}
	return fmt.Sprintf("from %s %d", kind, start)
}

// encodeChunkFrom runs one try of a chunk's encode and returns why its
// output cannot be used ("" when it can). An error means ffmpeg failed.
func encodeChunkFrom(ctx context.Context, src *Source, j ChunkJob, c Chunk, start int, tmp string) (string, error) {
	jt := j
	jt.Out = tmp
	args, err := ChunkArgs(src, jt, start)
	if err != nil {
		return "", err
	}
	_, log, err := runTool(ctx, FFmpeg, args)
	if Preroll(src, c, j.Rendition) > 0 {
		pre, chunk := prerollParts(tmp)
		os.Remove(pre)
		if err == nil {
			if rerr := os.Rename(chunk, tmp); rerr != nil {
				return fmt.Sprintf("no chunk after its pre-roll: %v", rerr), nil
			}
		}
		os.Remove(chunk)
	}
	if err != nil {
		var te *ToolError
		if errors.As(err, &te) {
			te.Reason = errorLines(log, 4)
		}
		if j.GPU && NVENCSessionLimit(log) {
			return "", fmt.Errorf("%w: %w", ErrNVENCSessionLimit, err)
		}
		return "", err
	}
	n, err := CountPackets(ctx, tmp)
	if err != nil {
		// ffmpeg wrote no frame at all (a decoder that never recovered
		// from the seek): a wrong count, not a failed tool.
		return fmt.Sprintf("no frames came out: %v", err), nil
	}
	if n != c.Frames {
		return fmt.Sprintf("got %d frames, planned %d", n, c.Frames), nil
	}
	from, last := chunkWindow(src, c)
	rep := decodeLog(log, from, last)
	if len(rep.Errors) > 0 {
		return fmt.Sprintf("%s (%d): %s", decodeErrorsProblem, len(rep.Errors), summarize(rep.Errors)), nil
	}
	if start == fileStart || src.IsClean(start) && len(rep.Preroll) == 0 {
		return "", nil
	}
	// An untrusted start: the chunk's first and last pictures must match a
	// decode started earlier, at a keyframe with current parameter sets.
	ref := latestKey(src.FreshKeys, start-1)
	_, rlog, err := runTool(ctx, FFmpeg, referenceArgs(src, j.Source, c, ref))
	if err != nil {
		return "", err
	}
	want := decodeLog(rlog, from, last).Edges
	if len(rep.Edges) == 0 || len(rep.Edges) != min(2, c.Frames) || !slices.Equal(rep.Edges, want) {
		return fmt.Sprintf("first/last pictures %v differ from a decode %s %v", rep.Edges, startName(src, ref), want), nil
	}
	return "", nil
}

// errorLines returns the last n error lines of a level-tagged log, or its
// last lines when none is tagged as an error.
func errorLines(log []byte, n int) string {
	var errs []string
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "[error]") || strings.Contains(l, "[fatal]") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return tailLines(log, n)
	}
	return strings.Join(errs[max(len(errs)-n, 0):], "; ")
}

// summarize joins the first few messages.
func summarize(msgs []string) string {
	if len(msgs) > 3 {
		return strings.Join(msgs[:3], "; ") + "; ..."
	}
	return strings.Join(msgs, "; ")
}
