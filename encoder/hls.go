package encoder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// IndexJob writes HLS playlists for assembled renditions.
type IndexJob struct {
	Renditions     []IndexedRendition
	OutDir         string
	SegmentSeconds float64 // default 4
}

// IndexedRendition is one assembled rendition to index (or verify).
// Bandwidth (bits/s) is measured from the file when 0.
type IndexedRendition struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bandwidth int64  `json:"bandwidth,omitempty"`
}

// MasterPlaylist is the file name of the master playlist Index writes in
// OutDir; each rendition's media playlist is <name>/index.m3u8 with
// init.mp4 and seg_NNNNN.m4s beside it.
const MasterPlaylist = "master.m3u8"

// Index writes, without re-encoding, a VOD media playlist of fMP4 segments
// for every rendition (segments split at keyframes near SegmentSeconds) and
// a master playlist listing them.
func Index(ctx context.Context, j IndexJob) error {
	if len(j.Renditions) == 0 {
		return errors.New("index: no renditions")
	}
	seg := j.SegmentSeconds
	if seg == 0 {
		seg = 4
	}
	if seg <= 0 || seg > 600 || math.IsNaN(seg) {
		return fmt.Errorf("index: bad segment length %v", j.SegmentSeconds)
	}
	if err := validPath("out dir", j.OutDir); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	var master strings.Builder
	master.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	for _, r := range j.Renditions {
		if !nameRE().MatchString(r.Name) {
			return fmt.Errorf("index: bad rendition name %q", r.Name)
		}
		if err := validPath("rendition", r.Path); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		dir := filepath.Join(j.OutDir, r.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		args := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y", "-i", fileArg(r.Path),
			"-map", "0", "-c", "copy", "-f", "hls", "-hls_time", strconv.FormatFloat(seg, 'f', 3, 64),
			"-hls_playlist_type", "vod", "-hls_segment_type", "fmp4", "-hls_flags", "independent_segments",
			"-hls_fmp4_init_filename", "init.mp4",
			"-hls_segment_filename", filepath.Join(dir, "seg_%05d.m4s"), filepath.Join(dir, "index.m3u8")}
		if _, _, err := runTool(ctx, FFmpeg, args); err != nil {
			return fmt.Errorf("index %s: %w", r.Name, err)
		}
		src, err := Probe(ctx, r.Path)
		if err != nil {
			return fmt.Errorf("index %s: %w", r.Name, err)
		}
		if err := fixLastSegment(filepath.Join(dir, "index.m3u8"), src.Duration.Seconds()); err != nil {
			return fmt.Errorf("index %s: %w", r.Name, err)
		}
		bw := r.Bandwidth
		if bw == 0 {
			fi, err := os.Stat(r.Path)
			if err != nil {
				return fmt.Errorf("index: %w", err)
			}
			if s := src.Duration.Seconds(); s > 0 {
				bw = int64(float64(fi.Size()*8) / s)
			}
		}
		fmt.Fprintf(&master, "#EXT-X-STREAM-INF:BANDWIDTH=%d", bw)
		if r.Width > 0 && r.Height > 0 {
			fmt.Fprintf(&master, ",RESOLUTION=%dx%d", r.Width, r.Height)
		}
		master.WriteString("\n" + r.Name + "/index.m3u8\n")
	}
	tmp := filepath.Join(j.OutDir, MasterPlaylist+".part")
	if err := os.WriteFile(tmp, []byte(master.String()), 0o644); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(j.OutDir, MasterPlaylist)); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// PlaylistVariant is a variant listed in a master playlist.
type PlaylistVariant struct {
	URI       string
	Bandwidth int64
}

// ReadMaster parses a master playlist's variants.
func ReadMaster(path string) ([]PlaylistVariant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read master: %w", err)
	}
	defer f.Close()
	var out []PlaylistVariant
	var pending *PlaylistVariant
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#EXT-X-STREAM-INF:"):
			pending = &PlaylistVariant{}
			for _, kv := range strings.Split(strings.TrimPrefix(l, "#EXT-X-STREAM-INF:"), ",") {
				if v, ok := strings.CutPrefix(kv, "BANDWIDTH="); ok {
					pending.Bandwidth, _ = strconv.ParseInt(v, 10, 64)
				}
			}
		case l != "" && !strings.HasPrefix(l, "#") && pending != nil:
			pending.URI = l
			out = append(out, *pending)
			pending = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read master: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read master %s: no variants", path)
	}
	return out, nil
}

// PlaylistDuration sums the #EXTINF durations of a media playlist and
// returns them with the segment count.
func PlaylistDuration(path string) (float64, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read playlist: %w", err)
	}
	var sum float64
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "#EXTINF:"); ok {
			v, _, _ = strings.Cut(v, ",")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("playlist %s: bad EXTINF %q", path, l)
			}
			sum += f
			n++
		}
	}
	return sum, n, nil
}

// fixLastSegment sets the last segment's #EXTINF of a media playlist so
// that the segments add up to total seconds, and raises the target
// duration to cover it. ffmpeg's HLS muxer measures every other segment
// from one keyframe's pts to the next, but the last from the packets'
// durations, which sources with variable frame rates can get wrong (a
// screen recording whose frames all claim one tick); the stream's end is
// known exactly.
func fixLastSegment(path string, total float64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("playlist: %w", err)
	}
	lines := strings.Split(string(data), "\n")
	var segs []int
	for i, l := range lines {
		if strings.HasPrefix(l, "#EXTINF:") {
			if _, ok := segmentSeconds(l); !ok {
				return fmt.Errorf("playlist %s: bad %q", path, l)
			}
			segs = append(segs, i)
		}
	}
	if len(segs) == 0 {
		return fmt.Errorf("playlist %s: no segments", path)
	}
	sum, longest := 0.0, 0.0
	for _, i := range segs[:len(segs)-1] {
		d, _ := segmentSeconds(lines[i])
		sum, longest = sum+d, max(longest, d)
	}
	d := max(total-sum, 0)
	lines[segs[len(segs)-1]] = "#EXTINF:" + strconv.FormatFloat(d, 'f', 6, 64) + ","
	longest = max(longest, d)
	for i, l := range lines {
		if strings.HasPrefix(l, "#EXT-X-TARGETDURATION:") {
			lines[i] = "#EXT-X-TARGETDURATION:" + strconv.Itoa(int(math.Ceil(longest-1e-6)))
		}
	}
	tmp := path + ".part"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return fmt.Errorf("playlist: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("playlist: %w", err)
	}
	return nil
}

// segmentSeconds reads an #EXTINF line's duration.
func segmentSeconds(l string) (float64, bool) {
	v, _ := strings.CutPrefix(l, "#EXTINF:")
	v, _, _ = strings.Cut(v, ",")
	d, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	return d, err == nil && d >= 0
}
