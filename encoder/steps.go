package encoder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ChunkExt is the file extension of encoded chunks (NUT: exact time base,
// any codec).
const ChunkExt = "nut"

// ChunkJob is one chunk of one rendition to encode.
type ChunkJob struct {
	Source    string
	Chunk     Chunk
	Src       *Source // optional; re-probed from Source when nil
	Rendition Rendition
	GPU       bool
	// GPUDevice is the CUDA device ordinal NVENC encodes on (ffmpeg's
	// -gpu; see NVENCDevice); "" lets ffmpeg choose. Ignored on the CPU.
	GPUDevice string
	Threads   int // encoder threads; 0 means 1
	Out       string
}

// tsOffset returns a constant number of time-base ticks, about ten seconds,
// that is also a whole number of microseconds, so that shifting by it and
// back through the concat demuxer (which counts in microseconds) is exact.
// Chunks carry pts = source pts - first pts + offset, which keeps B-frame
// dts positive in every chunk (so no muxer shifts one chunk differently).
func tsOffset(tb Rational) (int64, error) {
	// Smallest k with k*Num*1e6/Den an integer.
	num := new(big.Int).Mul(big.NewInt(tb.Num), big.NewInt(1_000_000))
	g := new(big.Int).GCD(nil, nil, num, big.NewInt(tb.Den))
	k := tb.Den / g.Int64()
	per := ticksToDuration(k, tb) // duration of k ticks
	if per <= 0 || per > time.Minute {
		return 0, fmt.Errorf("time base %v cannot be carried exactly in microseconds", tb)
	}
	steps := int64(math.Ceil(float64(10*time.Second) / float64(per)))
	return k * steps, nil
}

// GOPFrames is the default keyframe interval for a source: two seconds of
// its average frame rate (at least 1 frame).
func GOPFrames(src *Source) int {
	g := int(math.Round(2 * src.FrameRate.Float()))
	return max(g, 1)
}

// CountPackets counts the video packets of a file (ffprobe -count_packets).
func CountPackets(ctx context.Context, path string) (int, error) {
	return countVideo(ctx, path, "-count_packets", "nb_read_packets")
}

// CountFrames decodes a file and counts its video frames (ffprobe
// -count_frames).
func CountFrames(ctx context.Context, path string) (int, error) {
	return countVideo(ctx, path, "-count_frames", "nb_read_frames")
}

func countVideo(ctx context.Context, path, flag, entry string) (int, error) {
	out, _, err := runTool(ctx, FFprobe, []string{"-hide_banner", "-v", "error", flag, "-select_streams", "v:0",
		"-show_entries", "stream=" + entry, "-of", "default=nw=1:nk=1", fileArg(path)})
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(strings.TrimSpace(string(out)), "\n")[0]))
	if err != nil {
		return 0, fmt.Errorf("count %s: unexpected ffprobe output %q", path, out)
	}
	return n, nil
}

// AudioJob encodes a title's audio once (not per chunk).
type AudioJob struct {
	Source, Out string
	Bitrate     string // AAC bitrate; default 128k
	Src         *Source
}

// DefaultAudioBitrate is the AAC bitrate when AudioJob.Bitrate is empty.
const DefaultAudioBitrate = "128k"

// SurroundAudioBitrate is the AAC bitrate for sources with more than two
// channels when AudioJob.Bitrate is empty.
const SurroundAudioBitrate = "384k"

// AudioArgs builds the ffmpeg arguments for EncodeAudio. It is pure. The
// output's time 0 is the first video frame: audio before it is trimmed,
// and audio that starts after it is delayed by silence, so every sample
// plays against the same picture as in the source. The first audio track
// is encoded, in its own channel layout (mono, stereo, 5.1, ...).
func AudioArgs(src *Source, j AudioJob) ([]string, error) {
	if err := validPath("source", j.Source); err != nil {
		return nil, err
	}
	if err := validPath("out", j.Out); err != nil {
		return nil, err
	}
	br := j.Bitrate
	if br == "" {
		br = DefaultAudioBitrate
		if src.AudioChannels > 2 {
			br = SurroundAudioBitrate
		}
	}
	if !bitrateRE().MatchString(br) {
		return nil, fmt.Errorf("audio: bad bitrate %q", br)
	}
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y", "-i", fileArg(j.Source),
		"-map", "0:a:0", "-vn", "-sn", "-dn"}
	// ffmpeg counts from the container's start; on that clock the video
	// starts at v and the audio at au.
	v := src.VideoStart() - src.FormatStart
	au := src.AudioStart - src.FormatStart
	switch {
	case au < v:
		a = append(a, "-af", "atrim=start="+strconv.FormatFloat(v.Seconds(), 'f', 6, 64)+",asetpts=PTS-STARTPTS")
	case au > v && src.AudioSampleRate > 0:
		n := int64(math.Round((au - v).Seconds() * float64(src.AudioSampleRate)))
		a = append(a, "-af", "asetpts=PTS-STARTPTS,adelay=delays="+strconv.FormatInt(n, 10)+"S:all=1")
	}
	a = append(a, "-c:a", "aac", "-b:a", br, "-f", "mp4", fileArg(j.Out))
	return a, nil
}

// EncodeAudio encodes the source's first audio track to AAC in an .m4a
// file. A source without audio is not an error: nothing is written.
func EncodeAudio(ctx context.Context, j AudioJob) error {
	src := j.Src
	if src == nil {
		var err error
		if src, err = Probe(ctx, j.Source); err != nil {
			return fmt.Errorf("encode audio: %w", err)
		}
	}
	if !src.HasAudio {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(j.Out), 0o755); err != nil {
		return fmt.Errorf("encode audio: %w", err)
	}
	tmp := j.Out + ".part"
	defer os.Remove(tmp)
	jt := j
	jt.Out = tmp
	args, err := AudioArgs(src, jt)
	if err != nil {
		return fmt.Errorf("encode audio: %w", err)
	}
	if _, _, err := runTool(ctx, FFmpeg, args); err != nil {
		return fmt.Errorf("encode audio of %s: %w", j.Source, err)
	}
	if err := os.Rename(tmp, j.Out); err != nil {
		return fmt.Errorf("encode audio: %w", err)
	}
	return nil
}

// AssembleJob joins one rendition's chunks (in order) and the audio.
type AssembleJob struct {
	Chunks []string
	// Frames, when given, are the chunks' frame counts (the plan's, which
	// EncodeChunk checked before keeping each file); otherwise Assemble
	// counts the packets of every chunk.
	Frames []int
	Audio  string // "" or a missing file: no audio
	Src    *Source
	Source string // probed when Src is nil
	Out    string // an .mp4
}

// concatScript writes the ffconcat script: every chunk with its exact
// duration in microseconds, from the source's FramePTS. Since the chunk
// files' own start times are (their first pts + tsOffset) and the concat
// demuxer places each file at the sum of the previous durations, every
// chunk is shifted by exactly -tsOffset.
func concatScript(src *Source, chunks []string, frames []int) (string, error) {
	var sb strings.Builder
	sb.WriteString("ffconcat version 1.0\n")
	us := func(t int64) int64 {
		return ticksToDuration(t-src.FramePTS[0], src.TimeBase).Round(time.Microsecond).Microseconds()
	}
	start := 0
	for i, p := range chunks {
		if strings.ContainsAny(p, "\x00\n\r") {
			return "", fmt.Errorf("chunk path %q has control characters", p)
		}
		end := src.EndPTS
		if start+frames[i] < len(src.FramePTS) {
			end = src.FramePTS[start+frames[i]]
		}
		d := us(end) - us(src.FramePTS[start])
		sb.WriteString("file '" + strings.ReplaceAll(p, "'", `'\''`) + "'\n")
		fmt.Fprintf(&sb, "duration %d.%06d\n", d/1_000_000, d%1_000_000)
		start += frames[i]
	}
	return sb.String(), nil
}

// Assemble joins the chunks without re-encoding into j.Out (MP4), with the
// source's video timestamps (first pts 0, same intervals, same last pts,
// MP4 timescale = the source's time base) and the audio muxed from 0. It
// checks that the chunks' frame counts add up to the source's.
func Assemble(ctx context.Context, j AssembleJob) error {
	src := j.Src
	if src == nil {
		var err error
		if src, err = Probe(ctx, j.Source); err != nil {
			return fmt.Errorf("assemble: %w", err)
		}
	}
	if len(j.Chunks) == 0 {
		return errors.New("assemble: no chunks")
	}
	if err := validPath("out", j.Out); err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	frames := make([]int, len(j.Chunks))
	total := 0
	abs := make([]string, len(j.Chunks))
	if len(j.Frames) != 0 && len(j.Frames) != len(j.Chunks) {
		return fmt.Errorf("assemble: %d frame counts for %d chunks", len(j.Frames), len(j.Chunks))
	}
	for i, c := range j.Chunks {
		var n int
		var err error
		if len(j.Frames) > 0 {
			if _, err := os.Stat(c); err != nil {
				return fmt.Errorf("assemble: chunk %d: %w", i, err)
			}
			n = j.Frames[i]
		} else if n, err = CountPackets(ctx, c); err != nil {
			return fmt.Errorf("assemble: chunk %d: %w", i, err)
		}
		frames[i], total = n, total+n
		if abs[i], err = filepath.Abs(c); err != nil {
			return fmt.Errorf("assemble: %w", err)
		}
	}
	if total != len(src.FramePTS) {
		return fmt.Errorf("assemble: chunks hold %d frames, source has %d", total, len(src.FramePTS))
	}
	script, err := concatScript(src, abs, frames)
	if err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(j.Out), 0o755); err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	list := j.Out + ".ffconcat"
	if err := os.WriteFile(list, []byte(script), 0o644); err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	defer os.Remove(list)
	audio := j.Audio
	if audio != "" {
		if _, err := os.Stat(audio); errors.Is(err, os.ErrNotExist) {
			audio = ""
		}
	}
	tmp := j.Out + ".part"
	defer os.Remove(tmp)
	args := AssembleArgs(src, list, audio, total, tmp)
	if _, _, err := runTool(ctx, FFmpeg, args); err != nil {
		return fmt.Errorf("assemble %s: %w", j.Out, err)
	}
	if err := os.Rename(tmp, j.Out); err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	return nil
}

// AssembleArgs builds the ffmpeg arguments that mux the concat script list
// (and audio, if not "") into out. It is pure. The setts bitstream filter
// leaves pts/dts alone and gives the last packet the duration that makes
// the track end exactly at the source's end.
func AssembleArgs(src *Source, list, audio string, frames int, out string) []string {
	end := src.EndPTS - src.FramePTS[0]
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y",
		"-f", "concat", "-safe", "0", "-i", fileArg(list)}
	if audio != "" {
		a = append(a, "-i", fileArg(audio))
	}
	a = append(a, "-map", "0:v:0")
	if audio != "" {
		a = append(a, "-map", "1:a:0")
	}
	a = append(a, "-c", "copy",
		"-bsf:v", "setts=pts=PTS:dts=DTS:duration=DURATION+not("+strconv.Itoa(frames-1)+"-N)*("+strconv.FormatInt(end, 10)+"-DTS+STARTDTS-STARTPTS-DURATION)",
		"-video_track_timescale", strconv.FormatInt(src.TimeBase.Den, 10),
		"-movflags", "+faststart", "-f", "mp4", fileArg(out))
	return a
}

// WholeJob is a plain, unchunked encode of a whole source with the same
// settings as the chunked pipeline (for comparison and benchmarks).
type WholeJob struct {
	Source    string
	Src       *Source
	Rendition Rendition
	GPU       bool
	GPUDevice string // as ChunkJob.GPUDevice
	Threads   int
	Out       string // .mp4, video only
}

// EncodeWhole runs one ffmpeg over the whole source with the backend's
// arguments for the rendition (same GOP rule as the chunked path).
func EncodeWhole(ctx context.Context, j WholeJob) error {
	src := j.Src
	if src == nil {
		var err error
		if src, err = Probe(ctx, j.Source); err != nil {
			return fmt.Errorf("encode whole: %w", err)
		}
	}
	if err := ValidateRendition(j.Rendition); err != nil {
		return fmt.Errorf("encode whole: %w", err)
	}
	b, err := BackendFor(j.Rendition.Codec, j.GPU)
	if err != nil {
		return fmt.Errorf("encode whole: %w", err)
	}
	r := j.Rendition
	if r.GOP == 0 {
		r.GOP = GOPFrames(src)
	}
	threads := max(j.Threads, 1)
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y", "-threads", strconv.Itoa(threads),
		"-i", fileArg(j.Source), "-map", "0:v:0", "-an", "-sn", "-dn",
		"-vf", ReferenceFilter(src, r), "-fps_mode", "passthrough", "-enc_time_base:v", src.TimeBase.String()}
	a = append(a, b.Args(r, threads)...)
	a = append(a, DeviceArgs(b, j.GPUDevice)...)
	a = append(a, colorArgs(src, r)...)
	a = append(a, "-video_track_timescale", strconv.FormatInt(src.TimeBase.Den, 10), "-f", "mp4", fileArg(j.Out))
	if _, _, err := runTool(ctx, FFmpeg, a); err != nil {
		return fmt.Errorf("encode whole %s: %w", j.Source, err)
	}
	return nil
}

// PlanEncode is the whole plan step: it probes source, loads the ladder
// (built-in name or file), fits it to the source (FitLadder), plans chunks
// and builds the graph rooted at outDir. The CLI prints the graph as JSON
// into the task's result and the notes (what probing and fitting found) on
// its output.
func PlanEncode(ctx context.Context, source, ladder, outDir string, opt ChunkOptions) (*Plan, []string, error) {
	l, err := LoadLadder(ladder)
	if err != nil {
		return nil, nil, fmt.Errorf("plan: %w", err)
	}
	src, err := Probe(ctx, source)
	if err != nil {
		return nil, nil, fmt.Errorf("plan: %w", err)
	}
	fitted := *l
	var notes []string
	fitted.Renditions, notes = FitLadder(src, l)
	notes = append(append([]string(nil), src.Notes...), notes...)
	if src.Interlaced() {
		notes = append(notes, "interlaced source ("+src.FieldOrder+"): deinterlaced with bwdif, one frame per frame")
	}
	if src.AudioTracks > 1 {
		notes = append(notes, fmt.Sprintf("%d audio tracks: the first is encoded", src.AudioTracks))
	}
	if src.HasAudio {
		notes = append(notes, fmt.Sprintf("audio: %s, %d channels (%s) kept", src.AudioCodec, src.AudioChannels, src.AudioLayout))
	}
	chunks, err := PlanChunks(src, opt)
	if err != nil {
		return nil, nil, fmt.Errorf("plan: %w: %w", ErrBadInput, err)
	}
	probe := SourcePath(outDir)
	if err := WriteSource(probe, src); err != nil {
		return nil, nil, fmt.Errorf("plan: %w", err)
	}
	tasks, err := BuildGraph(GraphOptions{Source: source, OutDir: outDir, Src: src, Chunks: chunks, Ladder: &fitted,
		ProbeFile: probe})
	if err != nil {
		return nil, nil, fmt.Errorf("plan: %w", err)
	}
	return &Plan{Tasks: tasks}, notes, nil
}

// SourceFile is the name of the saved probe in a title's output directory.
const SourceFile = "source.json"

// SourcePath is where the plan step saves the probe of a title.
func SourcePath(outDir string) string { return filepath.Join(outDir, SourceFile) }

// WriteSource saves a probe so later steps need not probe the source again.
func WriteSource(path string, src *Source) error {
	data, err := json.Marshal(src)
	if err != nil {
		return fmt.Errorf("save probe: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("save probe: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("save probe: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save probe: %w", err)
	}
	return nil
}

// ReadSource loads a probe saved by WriteSource and checks it describes
// source.
func ReadSource(path, source string) (*Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read probe: %w", err)
	}
	src := &Source{}
	if err := json.Unmarshal(data, src); err != nil {
		return nil, fmt.Errorf("read probe %s: %w", path, err)
	}
	if src.Path != source || len(src.FramePTS) != src.FrameCount || src.FrameCount == 0 {
		return nil, fmt.Errorf("read probe %s: it describes %q (%d frames), not %q", path, src.Path, src.FrameCount, source)
	}
	return src, nil
}
