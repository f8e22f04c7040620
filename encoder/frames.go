package encoder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Reading a source's frames.
//
// Packets are cheap to read (no decoding) and, for nearly every source, are
// the frames the decoder presents: one picture per packet, at the packet's
// pts. The exceptions are real: packets an edit list marks discard (read
// with the D flag and left out), leading pictures a decoder drops (HEVC
// RASL at the start of a cut stream, an MPEG-TS recording that starts in
// the middle of a GOP), and containers without pts (AVI) whose frames get
// the decoder's own timestamps. readFrames reads the packets; unless they
// plainly suffice (packetsSuffice: pts on every packet, a clean keyframe
// first, a container count that agrees), it decodes the head of the stream
// and its tail (from the last keyframe) and checks that the decoder
// presents exactly the packets' timestamps there. When it does not, the
// whole stream is decoded and the decoder's frames are the truth: slower,
// linear in the title's length, and only for such sources.

// packet is one video packet as ffprobe reports it.
type packet struct {
	pts     int64
	size    int32
	pos     int64
	key     bool
	discard bool
	noPTS   bool // the container gave only a dts
}

// headPackets is how many packets the head check decodes.
const headPackets = 90

// reorderWindow bounds how many frames a decoder may hold back for
// reordering; the head check ignores that many frames at its end.
const reorderWindow = 16

// readFrames fills FramePTS, Keyframes, CleanKeys, FrameBytes, FrameCount,
// VFR, EndPTS and Duration.
func (src *Source) readFrames(ctx context.Context, vs *probeStream) error {
	all, stderr, err := scanPackets(ctx, src.Path, vs.Index)
	if err != nil {
		return fmt.Errorf("%w: video packets: %w", ErrBadInput, err)
	}
	if r := tailLines(stderr, 4); r != "" {
		// ffprobe read to the end but complained (truncated or damaged data).
		return fmt.Errorf("%w: %w", ErrBadInput, &ToolError{Tool: FFprobe, Reason: r, Err: errors.New("errors while reading packets")})
	}
	pks := make([]packet, 0, len(all))
	for _, p := range all {
		if !p.discard {
			pks = append(pks, p)
		}
	}
	if len(pks) == 0 {
		return fmt.Errorf("%w: no video frames", ErrBadInput)
	}
	if n := len(all) - len(pks); n > 0 {
		src.Notes = append(src.Notes, fmt.Sprintf("%d video packets marked discard by the container (edit list) are not frames", n))
	}
	sort.SliceStable(pks, func(i, j int) bool { return pks[i].pts < pks[j].pts })
	for i := 1; i < len(pks); i++ {
		if pks[i].pts == pks[i-1].pts {
			return fmt.Errorf("%w: two video frames share pts %d", ErrBadInput, pks[i].pts)
		}
	}
	ok := src.packetsSuffice(vs, all, pks)
	if !ok {
		var err error
		if ok, err = src.decoderAgrees(ctx, vs.Index, all, pks); err != nil {
			return err
		}
	}
	if !ok {
		if pks, err = src.decodedFrames(ctx, vs.Index, pks); err != nil {
			return err
		}
		src.Notes = append(src.Notes, "the decoder does not present the container's packets one for one: frames taken from a full decode")
	}
	if src.ContainerFrames > 0 && src.ContainerFrames != len(pks) {
		src.Notes = append(src.Notes, fmt.Sprintf("container says %d video frames, %d decode", src.ContainerFrames, len(pks)))
	}
	src.FramePTS = make([]int64, len(pks))
	src.FrameBytes = make([]int32, len(pks))
	var keyPos []int64
	for i, p := range pks {
		src.FramePTS[i], src.FrameBytes[i] = p.pts, p.size
		if p.key {
			src.Keyframes = append(src.Keyframes, i)
			keyPos = append(keyPos, p.pos)
		}
	}
	src.CleanKeys, src.FreshKeys = classifyKeyframes(src.Path, src.Codec, nalLengthSize(vs), src.Keyframes, keyPos)
	src.FrameCount = len(pks)
	src.setEnd()
	return nil
}

// setEnd computes VFR, EndPTS and Duration from FramePTS.
func (src *Source) setEnd() {
	n := len(src.FramePTS)
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
}

// packetsSuffice reports whether the packets can be taken as the frames
// without decoding anything: every packet has a pts, the stream starts
// (in decode order) with a keyframe that is a clean random access point,
// and the container's frame count, if it gives one, is the number of
// presented packets. Sources that fail this (a cut or mid-GOP start,
// leading pictures, AVI timestamps, an edit list that discards frames, a
// header that disagrees) are checked against a decode.
func (src *Source) packetsSuffice(vs *probeStream, all, pks []packet) bool {
	for _, p := range all {
		if p.noPTS {
			return false
		}
	}
	if all[0].discard || !all[0].key {
		return false
	}
	if src.ContainerFrames > 0 && src.ContainerFrames != len(pks) {
		return false
	}
	clean, _ := classifyKeyframes(src.Path, src.Codec, nalLengthSize(vs), []int{0}, []int64{all[0].pos})
	return len(clean) == 1
}

// scanPackets streams the packets of one stream from ffprobe (CSV, so a
// two-hour title does not pass through one JSON document).
func scanPackets(ctx context.Context, path string, stream int) ([]packet, []byte, error) {
	cmd := exec.CommandContext(ctx, FFprobe, "-hide_banner", "-v", "error", "-select_streams", strconv.Itoa(stream),
		"-show_entries", "packet=pts,dts,size,pos,flags", "-of", "csv=p=0", fileArg(path))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	var pks []packet
	var parseErr error
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		p, err := parsePacket(line)
		if err != nil && parseErr == nil {
			parseErr = err
		}
		pks = append(pks, p)
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if waitErr != nil {
		return nil, nil, &ToolError{Tool: FFprobe, Reason: tailLines(stderr.Bytes(), 4), Err: waitErr}
	}
	if parseErr != nil {
		return nil, nil, parseErr
	}
	return pks, stderr.Bytes(), nil
}

// parsePacket reads "pts,dts,size,pos,flags" (N/A where absent); a packet
// without pts takes its dts.
func parsePacket(line string) (packet, error) {
	f := strings.Split(line, ",")
	if len(f) < 5 {
		return packet{}, fmt.Errorf("unexpected ffprobe packet line %q", line)
	}
	pts, err := strconv.ParseInt(f[0], 10, 64)
	noPTS := err != nil
	if noPTS {
		if pts, err = strconv.ParseInt(f[1], 10, 64); err != nil {
			return packet{}, fmt.Errorf("%w: video packet without timestamps", ErrBadInput)
		}
	}
	size, _ := strconv.ParseInt(f[2], 10, 32) // a missing size only weakens ChunkCost
	pos, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		pos = -1
	}
	return packet{pts: pts, size: int32(size), pos: pos, key: strings.Contains(f[4], "K"), discard: strings.Contains(f[4], "D"), noPTS: noPTS}, nil
}

// frame is one decoded picture: its timestamp and key flag.
type frame struct {
	pts int64
	key bool
}

// scanDecoded decodes the stream with ffmpeg, as the chunk encodes will
// (-copyts, no frame dropped or duplicated, within interval: "" for all of
// it, "head" for the first headPackets frames, or a start time in seconds
// to seek to) and returns the frames in presentation order, with the
// timestamps ffmpeg gives them (its own guess where the decoder has none,
// as for AVI).
func scanDecoded(ctx context.Context, path string, stream int, interval string) ([]frame, error) {
	a := []string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-copyts", "-threads", "2"}
	if interval != "" && interval != "head" {
		a = append(a, "-seek_timestamp", "1", "-noaccurate_seek", "-ss", interval)
	}
	a = append(a, "-i", fileArg(path), "-map", "0:"+strconv.Itoa(stream), "-fps_mode", "passthrough",
		"-vf", frameLogName+"=checksum=0")
	if interval == "head" {
		a = append(a, "-frames:v", strconv.Itoa(headPackets))
	}
	a = append(a, "-f", "null", "-")
	_, log, err := runTool(ctx, FFmpeg, a)
	if err != nil {
		return nil, err
	}
	var fs []frame
	for _, l := range strings.Split(string(log), "\n") {
		if !strings.Contains(l, "["+frameLogName+" @") {
			continue
		}
		m := showinfoPTS().FindStringSubmatch(l)
		if m == nil {
			continue
		}
		pts, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		fs = append(fs, frame{pts: pts, key: strings.Contains(l, "iskey:1")})
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].pts < fs[j].pts })
	return fs, nil
}

// decoderAgrees decodes the head (the first headPackets packets) and the
// tail (from the last keyframe) and reports whether the decoder presents
// exactly the packets' timestamps there; a short stream is decoded whole.
// all is in decode order; pks is the presented candidates in pts order.
func (src *Source) decoderAgrees(ctx context.Context, stream int, all, pks []packet) (bool, error) {
	want := make(map[int64]bool, len(pks))
	for _, p := range pks {
		want[p.pts] = true
	}
	// same reports whether every decoded frame at or after from is a
	// candidate and every candidate in [from, to) was decoded.
	same := func(fs []frame, from, to int64) bool {
		got := make(map[int64]bool, len(fs))
		for _, f := range fs {
			if f.pts < from {
				continue
			}
			if !want[f.pts] {
				return false
			}
			got[f.pts] = true
		}
		for _, p := range pks {
			if p.pts >= from && p.pts < to && !got[p.pts] {
				return false
			}
		}
		return true
	}
	if len(all) <= headPackets {
		fs, err := scanDecoded(ctx, src.Path, stream, "")
		if err != nil {
			return false, fmt.Errorf("%w: decode: %w", ErrBadInput, err)
		}
		if len(fs) == 0 {
			return false, fmt.Errorf("%w: no video frame decodes", ErrBadInput)
		}
		return same(fs, math.MinInt64, math.MaxInt64), nil
	}
	head, err := scanDecoded(ctx, src.Path, stream, "head")
	if err != nil {
		return false, fmt.Errorf("%w: decode head: %w", ErrBadInput, err)
	}
	if len(head) <= reorderWindow {
		return false, nil // too little decodes at the start: let the full decode decide
	}
	// The last frames of the head may be held back for reordering.
	if !same(head, math.MinInt64, head[len(head)-1-reorderWindow].pts) {
		return false, nil
	}
	lastKey := -1
	for i, p := range pks {
		if p.key {
			lastKey = i
		}
	}
	if lastKey < 0 {
		return false, nil
	}
	keyPTS := pks[lastKey].pts
	interval := ""
	if from := src.TicksToDuration(keyPTS).Seconds() - 0.001; lastKey > 0 && from > 0 {
		interval = strconv.FormatFloat(from, 'f', 6, 64)
	}
	tail, err := scanDecoded(ctx, src.Path, stream, interval)
	if err != nil {
		return false, fmt.Errorf("%w: decode tail: %w", ErrBadInput, err)
	}
	return same(tail, keyPTS, math.MaxInt64), nil
}

// decodedFrames decodes the whole stream and returns its frames as packets
// (keyframes as the decoder flags them; sizes and positions from the packet
// with the same pts, where there is one).
func (src *Source) decodedFrames(ctx context.Context, stream int, pks []packet) ([]packet, error) {
	fs, err := scanDecoded(ctx, src.Path, stream, "")
	if err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrBadInput, err)
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("%w: no video frame decodes", ErrBadInput)
	}
	byPTS := make(map[int64]packet, len(pks))
	var total int64
	for _, p := range pks {
		byPTS[p.pts] = p
		total += int64(p.size)
	}
	mean := int32(max(total/int64(len(pks)), 1))
	out := make([]packet, 0, len(fs))
	for i, f := range fs {
		if i > 0 && f.pts == fs[i-1].pts {
			return nil, fmt.Errorf("%w: two decoded video frames share pts %d", ErrBadInput, f.pts)
		}
		p, ok := byPTS[f.pts]
		if !ok {
			p = packet{pts: f.pts, size: mean, pos: -1}
		}
		// The decoder says which presented frames are keyframes; a packet
		// at the same pts may be another frame (AVI timestamps).
		p.key = f.key
		out = append(out, p)
	}
	return out, nil
}

// nalLengthSize is the NAL length field size of length-prefixed H.264/HEVC
// (4 unless the stream says otherwise).
func nalLengthSize(vs *probeStream) int {
	if n, err := strconv.Atoi(vs.NALLengthSize); err == nil && n >= 1 && n <= 4 {
		return n
	}
	return 4
}

// classifyKeyframes returns the keyframes that are clean random access
// points and those that are fresh (see Source.CleanKeys and FreshKeys). For
// H.264 and HEVC it reads the NAL unit types at the start of each
// keyframe's packet; a packet it cannot read counts as neither (the chunk
// step then checks pictures instead).
func classifyKeyframes(path, codec string, nalLen int, keys []int, pos []int64) (clean, fresh []int) {
	if codec != "h264" && codec != "hevc" {
		return slices.Clone(keys), slices.Clone(keys)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	inBand := false // parameter sets seen in the stream so far
	for i, k := range keys {
		if pos[i] < 0 {
			continue
		}
		n, _ := f.ReadAt(buf, pos[i])
		if n <= 0 {
			continue
		}
		au := scanAccessUnit(buf[:n], codec, nalLen)
		inBand = inBand || au.paramSets
		// Once parameter sets travel in-band they may change; a keyframe
		// without its own may decode with stale ones after a seek.
		if au.paramSets || !inBand {
			fresh = append(fresh, k)
			if au.clean {
				clean = append(clean, k)
			}
		}
	}
	return clean, fresh
}

// accessUnit is what scanAccessUnit learns about the start of one.
type accessUnit struct {
	// clean: the first slice is an IDR (H.264) or IRAP (HEVC: BLA, IDR or
	// CRA, whose trailing pictures decode clean) picture.
	clean bool
	// paramSets: parameter sets (SPS/PPS, and VPS for HEVC) come before it.
	paramSets bool
}

// scanAccessUnit reads the NAL unit types at the start of an access unit up
// to its first slice. It understands Annex B start codes (found anywhere in
// b, so MPEG-TS packet headers between them do no harm) and length-prefixed
// NAL units.
func scanAccessUnit(b []byte, codec string, nalLen int) accessUnit {
	var au accessUnit
	// nal records one NAL unit header and reports whether it was a slice.
	nal := func(h byte) bool {
		if codec == "h264" {
			switch t := h & 0x1f; {
			case t == 7 || t == 8:
				au.paramSets = true
			case t == 1 || t == 5:
				au.clean = t == 5
				return true
			}
			return false
		}
		switch t := (h >> 1) & 0x3f; {
		case t >= 32 && t <= 34:
			au.paramSets = true
		case t <= 21:
			au.clean = t >= 16
			return true
		}
		return false
	}
	if !(len(b) >= 4 && b[0] == 0 && b[1] == 0 && (b[2] == 1 || b[2] == 0 && b[3] == 1)) && (len(b) == 0 || b[0] != 0x47) {
		// Length-prefixed: walk the NAL units.
		for off := 0; off+nalLen < len(b); {
			var l int
			for j := 0; j < nalLen; j++ {
				l = l<<8 | int(b[off+j])
			}
			if l <= 0 || nal(b[off+nalLen]) {
				break
			}
			off += nalLen + l
		}
		return au
	}
	for i := 0; i+3 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if nal(b[i+3]) {
				break
			}
			i += 2
		}
	}
	return au
}
