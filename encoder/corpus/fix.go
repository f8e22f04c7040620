package corpus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The Go edits a recipe can apply (step.op), each with its arguments:
//
//	list FILE F1 F2...        write an ffmpeg concat-demuxer list of F1, F2...
//	avi-frames FILE N         add N to the AVI header's video frame counts
//	                          (avih dwTotalFrames, the video strh dwLength
//	                          and the OpenDML dmlh count when present)
//	mp4-trim-edit FILE        shorten the video track's last edit-list entry
//	                          (and tkhd duration) by one frame, so the
//	                          demuxer flags the last frame discard
//	mp4-rotate FILE DEG       set the video tkhd display matrix to DEG
//	                          (90, 180, 270) as a phone stores it
//	truncate-mdat FILE FRAC   cut the file FRAC of the way into its mdat
//	corrupt-mdat FILE N SIZE  overwrite N runs of SIZE bytes spread inside
//	                          mdat with fixed pseudo-random bytes
//	text FILE CONTENT         write CONTENT to FILE
func runFix(op string, args []string) error {
	need := map[string]int{"list": 2, "avi-frames": 2, "mp4-trim-edit": 1, "mp4-rotate": 2,
		"truncate-mdat": 2, "corrupt-mdat": 3, "text": 2}
	n, ok := need[op]
	if !ok {
		return fmt.Errorf("unknown operation %q", op)
	}
	if len(args) < n {
		return fmt.Errorf("%s: %d arguments, want %d", op, len(args), n)
	}
	switch op {
	case "list":
		var b strings.Builder
		for _, f := range args[1:] {
			fmt.Fprintf(&b, "file '%s'\n", strings.ReplaceAll(f, "'", `'\''`))
		}
		return os.WriteFile(args[0], []byte(b.String()), 0o644)
	case "text":
		return os.WriteFile(args[0], []byte(args[1]), 0o644)
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	switch op {
	case "avi-frames":
		d, err := strconv.Atoi(args[1])
		if err != nil || d < 0 {
			return fmt.Errorf("avi-frames: bad count %q", args[1])
		}
		if err := aviAddFrames(data, uint32(d)); err != nil {
			return err
		}
	case "mp4-trim-edit":
		if err := mp4TrimLastFrame(data); err != nil {
			return err
		}
	case "mp4-rotate":
		deg, err := strconv.Atoi(args[1])
		if err != nil {
			return fmt.Errorf("mp4-rotate: %w", err)
		}
		if err := mp4Rotate(data, deg); err != nil {
			return err
		}
	case "truncate-mdat":
		frac, err := strconv.ParseFloat(args[1], 64)
		if err != nil || frac <= 0 || frac >= 1 {
			return fmt.Errorf("truncate-mdat: bad fraction %q", args[1])
		}
		start, end, err := mdatRange(data)
		if err != nil {
			return err
		}
		data = data[:start+int(float64(end-start)*frac)]
	case "corrupt-mdat":
		runs, err1 := strconv.Atoi(args[1])
		size, err2 := strconv.Atoi(args[2])
		if err := errors.Join(err1, err2); err != nil || runs < 1 || size < 1 {
			return fmt.Errorf("corrupt-mdat: bad arguments %q", args[1:])
		}
		start, end, err := mdatRange(data)
		if err != nil {
			return err
		}
		if end-start < runs*size*2 {
			return fmt.Errorf("corrupt-mdat: mdat of %d bytes too small", end-start)
		}
		seed := uint32(0x9e3779b9)
		for k := range runs {
			at := start + (k+1)*(end-start)/(runs+1) - size/2
			for i := range size {
				seed = seed*1664525 + 1013904223 // Numerical Recipes LCG
				data[at+i] = byte(seed >> 24)
			}
		}
	}
	return os.WriteFile(args[0], data, 0o644)
}

// --- RIFF/AVI ---

type riffChunk struct {
	id        string
	listType  string // for LIST and RIFF chunks
	data, end int    // data start (after the list type for lists) and end
}

// riffChildren returns the chunks in b[start:end].
func riffChildren(b []byte, start, end int) []riffChunk {
	var cs []riffChunk
	for p := start; p+8 <= end; {
		id := string(b[p : p+4])
		size := int(binary.LittleEndian.Uint32(b[p+4 : p+8]))
		c := riffChunk{id: id, data: p + 8, end: min(p+8+size, end)}
		if (id == "LIST" || id == "RIFF") && size >= 4 && p+12 <= end {
			c.listType = string(b[p+8 : p+12])
			c.data = p + 12
		}
		cs = append(cs, c)
		p += 8 + size + size&1
	}
	return cs
}

func aviAddFrames(b []byte, d uint32) error {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "AVI " {
		return errors.New("avi-frames: not an AVI file")
	}
	add := func(at int) {
		binary.LittleEndian.PutUint32(b[at:], binary.LittleEndian.Uint32(b[at:])+d)
	}
	var avih, strh bool
	for _, top := range riffChildren(b, 12, len(b)) {
		if top.listType == "hdrl" {
			for _, c := range riffChildren(b, top.data, top.end) {
				switch {
				case c.id == "avih" && c.end-c.data >= 20:
					add(c.data + 16) // dwTotalFrames
					avih = true
				case c.listType == "strl":
					for _, s := range riffChildren(b, c.data, c.end) {
						if s.id == "strh" && s.end-s.data >= 36 && string(b[s.data:s.data+4]) == "vids" {
							add(s.data + 32) // dwLength
							strh = true
						}
					}
				case c.listType == "odml":
					for _, s := range riffChildren(b, c.data, c.end) {
						if s.id == "dmlh" && s.end-s.data >= 4 {
							add(s.data) // dwTotalFrames
						}
					}
				}
			}
		}
	}
	if !avih || !strh {
		return errors.New("avi-frames: no avih or video strh header")
	}
	return nil
}

// --- ISO BMFF (MP4/MOV) ---

type mp4Box struct {
	typ       string
	data, end int // payload start and end
}

// mp4Children returns the boxes in b[start:end].
func mp4Children(b []byte, start, end int) []mp4Box {
	var bs []mp4Box
	for p := start; p+8 <= end; {
		size := int(binary.BigEndian.Uint32(b[p:]))
		typ := string(b[p+4 : p+8])
		hdr := 8
		switch size {
		case 1:
			if p+16 > end {
				return bs
			}
			size = int(binary.BigEndian.Uint64(b[p+8:]))
			hdr = 16
		case 0:
			size = end - p
		}
		if size < hdr {
			return bs
		}
		bs = append(bs, mp4Box{typ: typ, data: p + hdr, end: min(p+size, end)})
		p += size
	}
	return bs
}

func mp4Find(b []byte, in mp4Box, path ...string) (mp4Box, bool) {
	cur := in
	for _, t := range path {
		found := false
		for _, c := range mp4Children(b, cur.data, cur.end) {
			if c.typ == t {
				cur, found = c, true
				break
			}
		}
		if !found {
			return mp4Box{}, false
		}
	}
	return cur, true
}

func mdatRange(b []byte) (start, end int, err error) {
	for _, c := range mp4Children(b, 0, len(b)) {
		if c.typ == "mdat" {
			return c.data, c.end, nil
		}
	}
	return 0, 0, errors.New("no mdat box")
}

// videoTrak returns the moov box and the first trak whose handler is vide.
func videoTrak(b []byte) (moov, trak mp4Box, err error) {
	root := mp4Box{data: 0, end: len(b)}
	moov, ok := mp4Find(b, root, "moov")
	if !ok {
		return moov, trak, errors.New("no moov box")
	}
	for _, t := range mp4Children(b, moov.data, moov.end) {
		if t.typ != "trak" {
			continue
		}
		h, ok := mp4Find(b, t, "mdia", "hdlr")
		if ok && h.end-h.data >= 12 && string(b[h.data+8:h.data+12]) == "vide" {
			return moov, t, nil
		}
	}
	return moov, trak, errors.New("no video track")
}

// timescale returns the timescale of an mvhd or mdhd box (0 when the box
// is too short).
func timescale(b []byte, x mp4Box) uint32 {
	switch {
	case x.end-x.data >= 24 && b[x.data] == 1:
		return binary.BigEndian.Uint32(b[x.data+20:])
	case x.end-x.data >= 16 && b[x.data] == 0:
		return binary.BigEndian.Uint32(b[x.data+12:])
	}
	return 0
}

func mp4TrimLastFrame(b []byte) error {
	moov, trak, err := videoTrak(b)
	if err != nil {
		return fmt.Errorf("mp4-trim-edit: %w", err)
	}
	mvhd, ok1 := mp4Find(b, moov, "mvhd")
	mdhd, ok2 := mp4Find(b, trak, "mdia", "mdhd")
	stts, ok3 := mp4Find(b, trak, "mdia", "minf", "stbl", "stts")
	elst, ok4 := mp4Find(b, trak, "edts", "elst")
	tkhd, ok5 := mp4Find(b, trak, "tkhd")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || stts.end-stts.data < 16 || elst.end-elst.data < 8 || tkhd.end-tkhd.data < 36 {
		return errors.New("mp4-trim-edit: missing mvhd, mdhd, stts, elst or tkhd")
	}
	movieTS, mediaTS := uint64(timescale(b, mvhd)), uint64(timescale(b, mdhd))
	delta := uint64(binary.BigEndian.Uint32(b[stts.data+12:])) // first sample delta
	if movieTS == 0 || mediaTS == 0 || delta == 0 {
		return errors.New("mp4-trim-edit: zero timescale or frame duration")
	}
	frame := (delta*movieTS + mediaTS - 1) / mediaTS // one frame in movie units, rounded up
	v := b[elst.data]
	n := int(binary.BigEndian.Uint32(b[elst.data+4:]))
	entSize := 12
	if v == 1 {
		entSize = 20
	}
	if n < 1 || elst.data+8+n*entSize > elst.end {
		return errors.New("mp4-trim-edit: empty or short edit list")
	}
	last := elst.data + 8 + (n-1)*entSize
	var dur uint64
	if v == 1 {
		dur = binary.BigEndian.Uint64(b[last:])
	} else {
		dur = uint64(binary.BigEndian.Uint32(b[last:]))
	}
	if dur <= frame {
		return errors.New("mp4-trim-edit: last edit shorter than a frame")
	}
	dur -= frame
	if v == 1 {
		binary.BigEndian.PutUint64(b[last:], dur)
	} else {
		binary.BigEndian.PutUint32(b[last:], uint32(dur))
	}
	// tkhd duration: the sum of the edits, in movie units.
	var total uint64
	for i := range n {
		p := elst.data + 8 + i*entSize
		if v == 1 {
			total += binary.BigEndian.Uint64(b[p:])
		} else {
			total += uint64(binary.BigEndian.Uint32(b[p:]))
		}
	}
	if b[tkhd.data] == 1 {
		binary.BigEndian.PutUint64(b[tkhd.data+28:], total)
	} else {
		binary.BigEndian.PutUint32(b[tkhd.data+20:], uint32(total))
	}
	return nil
}

func mp4Rotate(b []byte, deg int) error {
	_, trak, err := videoTrak(b)
	if err != nil {
		return fmt.Errorf("mp4-rotate: %w", err)
	}
	tkhd, ok := mp4Find(b, trak, "tkhd")
	if !ok {
		return errors.New("mp4-rotate: no tkhd")
	}
	if tkhd.end-tkhd.data < 1 {
		return errors.New("mp4-rotate: empty tkhd")
	}
	m := tkhd.data + 40
	if b[tkhd.data] == 1 {
		m = tkhd.data + 52
	}
	if m+44 > tkhd.end {
		return errors.New("mp4-rotate: short tkhd")
	}
	w := int32(binary.BigEndian.Uint32(b[m+36:]) >> 16)
	h := int32(binary.BigEndian.Uint32(b[m+40:]) >> 16)
	// a, b, c, d, tx, ty as QuickTime writes them (and ffmpeg's mov muxer
	// for a rotate tag): x' = a*x + c*y + tx, y' = b*x + d*y + ty.
	var a, bb, c, d, tx, ty int32
	switch deg {
	case 90:
		a, bb, c, d, tx, ty = 0, 1, -1, 0, h, 0
	case 180:
		a, bb, c, d, tx, ty = -1, 0, 0, -1, w, h
	case 270:
		a, bb, c, d, tx, ty = 0, -1, 1, 0, 0, w
	default:
		return fmt.Errorf("mp4-rotate: unsupported angle %d", deg)
	}
	vals := []int32{a << 16, bb << 16, 0, c << 16, d << 16, 0, tx << 16, ty << 16, 1 << 30}
	for i, x := range vals {
		binary.BigEndian.PutUint32(b[m+4*i:], uint32(x))
	}
	return nil
}
