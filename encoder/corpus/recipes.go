package corpus

import "time"

// Shorthands for recipe arguments.

// lavfi returns the arguments of one lavfi input.
func lavfi(graph string) []string { return []string{"-f", "lavfi", "-i", graph} }

// tone is a stereo sine input of d seconds at 48 kHz.
func tone(freq, d string) []string {
	return lavfi("sine=f=" + freq + ":r=48000:d=" + d + ",aformat=channel_layouts=stereo")
}

// monoTone is a mono sine input of d seconds at 48 kHz.
func monoTone(freq, d string) []string { return lavfi("sine=f=" + freq + ":r=48000:d=" + d) }

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func args(a ...string) []string { return a }

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func us(n int) time.Duration { return time.Duration(n) * time.Microsecond }

const (
	x264fast = "veryfast"
	mp4      = "mov,mp4,m4a,3gp,3g2,mj2"
)

// x264 returns libx264 arguments with the given -x264-params.
func x264(params string) []string {
	return args("-c:v", "libx264", "-preset", x264fast, "-x264-params", params)
}

// aac returns AAC-LC audio arguments.
func aac(kbps string) []string { return args("-c:a", "aac", "-b:a", kbps+"k") }

// seekParts is the recipe shared by the two entries whose later keyframes
// cannot be seeked to: three x264 High 4:4:4 encodes joined by the concat
// demuxer without Annex B conversion (-auto_convert 0), so the MP4 keeps
// one sample entry (avc1) holding the first part's SPS/PPS. The second part
// carries its different PPS in-band once, at its first IDR (repeat-headers);
// the third part uses the same PPS but carries none. Decoding from the
// start picks up the in-band PPS and stays right; a seek into the third
// part decodes it with the first part's PPS.
func seekParts(first, second []string, firstParams, secondParams string) []step {
	src := "testsrc2=s=320x240:r=20:d=6"
	enc := func(opts []string, params string) []string {
		return cat(args("-c:v", "libx264", "-preset", x264fast, "-pix_fmt", "yuv444p", "-x264-params", params), opts)
	}
	return []step{
		ff(cat(lavfi(src+",trim=0:2,setpts=PTS-STARTPTS"), enc(first, firstParams), args("{t:a.mp4}"))...),
		ff(cat(lavfi(src+",trim=2:3,setpts=PTS-STARTPTS"), enc(second, secondParams+":repeat-headers=1"), args("{t:b.mp4}"))...),
		ff(cat(lavfi(src+",trim=3:6,setpts=PTS-STARTPTS"), enc(second, secondParams), args("{t:c.mp4}"))...),
		fix("list", "{t:list.txt}", "{t:a.mp4}", "{t:b.mp4}", "{t:c.mp4}"),
		ff(cat(args("-auto_convert", "0", "-f", "concat", "-safe", "0", "-i", "{t:list.txt}"), tone("660", "6"),
			args("-map", "0:v", "-map", "1:a", "-c:v", "copy"), aac("96"), args("{out}"))...),
	}
}

// entries returns the generated corpus. The truths were measured with
// ffprobe/ffmpeg 5.1 and are checked by corpus_test.go.
func entries() []Entry {
	return []Entry{
		{
			Name: "h264-ts-sps-change", Ext: "ts", Valid: true,
			Format: "mpegts", VideoCodec: "h264", PixFmt: "yuv420p", Frames: 100,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			ParamSetsChange: true,
			VideoStart:      ms(1480), VideoDuration: ms(4000),
			AudioTracks: 1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioStart: us(1458667), AudioDuration: ms(4032),
			Traits: []string{"H.264 in MPEG-TS whose SPS/PPS change mid-stream: Main profile (CABAC, 3 refs, 2 B-frames) for 2 s, then High profile (8x8 transform, 1 ref, 3 B-frames) for 2 s, same 320x240 resolution",
				"MPEG-TS default 1.4 s start offset", "AAC (ADTS) audio"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x240:r=25:d=2"), x264("keyint=25:bframes=2:ref=3"), args("-profile:v", "main", "{t:a.mp4}"))...),
				ff(cat(lavfi("testsrc2=s=320x240:r=25:d=4,trim=2:4,setpts=PTS-STARTPTS"), x264("keyint=25:bframes=3:ref=1:8x8dct=1"), args("-profile:v", "high", "-level", "4.1", "{t:b.mp4}"))...),
				fix("list", "{t:list.txt}", "{t:a.mp4}", "{t:b.mp4}"),
				ff(cat(args("-f", "concat", "-safe", "0", "-i", "{t:list.txt}"), tone("500", "4"),
					args("-map", "0:v", "-map", "1:a", "-c:v", "copy"), aac("96"), args("-f", "mpegts", "{out}"))...),
			},
		},
		{
			Name: "h264-open-gop", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 100,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			OpenGOP:       true,
			Keyframes:     []time.Duration{0, ms(1000), ms(2000), ms(3000)},
			VideoDuration: ms(4000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(4010667),
			Traits: []string{"open-GOP H.264: keyframes after the first are I-frames with a recovery point SEI, not IDR, and B-frames before them in display order reference the previous GOP",
				"MP4 (moov first), AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=4"), tone("440", "4"),
				x264("keyint=25:min-keyint=25:scenecut=0:open-gop=1:bframes=3"), aac("96"), args("-movflags", "+faststart", "{out}"))...)},
		},
		{
			Name: "hevc-cra-rasl", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "hevc", Profile: "Main", PixFmt: "yuv420p", Frames: 100,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			OpenGOP:       true,
			Keyframes:     []time.Duration{0, ms(1000), ms(2000), ms(3000)},
			VideoDuration: ms(4000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(4010667),
			Traits: []string{"HEVC (x265 open GOP): keyframes after the first are CRA pictures followed by RASL leading pictures", "MP4 hvc1, AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=4"), tone("440", "4"),
				args("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25:min-keyint=25:scenecut=0:open-gop=1:bframes=4", "-tag:v", "hvc1"),
				aac("96"), args("{out}"))...)},
		},
		{
			Name: "h264-keyframes-minutes", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 750,
			Width: 160, Height: 90, SAR: "1:1", DisplayWidth: 160, DisplayHeight: 90, FrameRate: "5/1",
			Keyframes:     []time.Duration{0, 120 * time.Second},
			VideoDuration: 150 * time.Second,
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 1, AudioLayout: "mono", AudioDuration: ms(150016),
			Traits: []string{"keyframes two minutes apart: 150 s at 160x90, 5 fps, IDR frames only at 0 s and 120 s", "mono AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=160x90:r=5:d=150"), monoTone("300", "150"),
				x264("keyint=infinite:scenecut=0"), args("-force_key_frames", "0,120"), aac("32"), args("{out}"))...)},
		},
		{
			Name: "h264-444-seek-garbage", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High 4:4:4 Predictive", PixFmt: "yuv444p", Frames: 120,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "20/1",
			ParamSetsChange: true,
			Keyframes:       []time.Duration{0, ms(1000), ms(2000), ms(3000), ms(4000), ms(5000)}, BrokenSeeks: []time.Duration{ms(3000), ms(4000), ms(5000)},
			VideoDuration: ms(6000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(6016),
			Traits: []string{"H.264 High 4:4:4 with B-frames (4 refs) whose PPS changes mid-stream (8x8 transform off, then on) with the new PPS in-band only once, at 2 s",
				"decoding from the start is clean; a seek to the keyframes at 3, 4 or 5 s decodes with the stale PPS from the sample entry: decoder errors (\"Reference N >= N\", \"top block unavailable\") and wrong pictures (issue 9 point 1)"},
			recipe: seekParts(nil, nil, "keyint=20:bframes=3:ref=4:8x8dct=0", "keyint=20:bframes=3:ref=4:8x8dct=1"),
		},
		{
			Name: "h264-444-seek-silent", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High 4:4:4 Predictive", PixFmt: "yuv444p", Frames: 120,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "20/1",
			ParamSetsChange: true,
			Keyframes:       []time.Duration{0, ms(1000), ms(2000), ms(3000), ms(4000), ms(5000)}, BrokenSeeks: []time.Duration{ms(3000), ms(4000), ms(5000)},
			VideoDuration: ms(6000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(6016),
			Traits: []string{"H.264 High 4:4:4 (CAVLC, B-frames) whose PPS changes mid-stream (pic_init_qp 22, then 38) with the new PPS in-band only once, at 2 s",
				"decoding from the start is clean; a seek to the keyframes at 3, 4 or 5 s decodes with the stale PPS: no decoder error at all, but washed-out wrong pictures"},
			recipe: seekParts(args("-qp", "22"), args("-qp", "38"), "keyint=20:bframes=3:ref=4:cabac=0", "keyint=20:bframes=3:ref=4:cabac=0"),
		},
		{
			Name: "h264-high422", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High 4:2:2", PixFmt: "yuv422p", Frames: 50,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2005333),
			Traits: []string{"H.264 High 4:2:2, yuv422p (8-bit)", "AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=2"), tone("440", "2"), x264("keyint=25"), args("-pix_fmt", "yuv422p"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "h264-high444-mkv", Ext: "mkv", Valid: true,
			Format: "matroska,webm", VideoCodec: "h264", Profile: "High 4:4:4 Predictive", PixFmt: "yuv444p", Frames: 60,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "30/1",
			VideoStart: ms(7), VideoDuration: ms(2001),
			AudioTracks: 1, AudioCodec: "opus", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2000500),
			Traits: []string{"H.264 High 4:4:4 Predictive, yuv444p, as screen recorders write", "Matroska, Opus (its pre-skip makes the muxer start the video at 7 ms)"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=30:d=2"), tone("440", "2"), x264("keyint=60"), args("-pix_fmt", "yuv444p", "-c:a", "libopus", "-b:a", "64k", "{out}"))...)},
		},
		{
			Name: "h264-high10", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High 10", PixFmt: "yuv420p10le", Frames: 50,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			TenBit:        true,
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2005333),
			Traits: []string{"H.264 High 10, yuv420p10le", "AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=2"), tone("440", "2"), x264("keyint=25"), args("-pix_fmt", "yuv420p10le"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "hevc-hdr10", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "hevc", Profile: "Main 10", PixFmt: "yuv420p10le", Frames: 50,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			TenBit: true, HDR10: true,
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2005333),
			Traits: []string{"HDR10: HEVC Main 10, BT.2020 primaries, PQ (smpte2084) transfer, bt2020nc matrix, mastering display (P3 D65 primaries, 0.0001 to 1000 cd/m²) and content light level (MaxCLL 1000, MaxFALL 400) SEI", "MP4 hvc1, AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=2,format=yuv420p10le"), tone("440", "2"),
				args("-c:v", "libx265", "-preset", "ultrafast", "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
					"-x265-params", "log-level=error:keyint=25:hdr10=1:repeat-headers=1:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
					"-tag:v", "hvc1"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "prores-422hq", Ext: "mov", Valid: true,
			Format: mp4, VideoCodec: "prores", Profile: "HQ", PixFmt: "yuv422p10le", Frames: 48,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "24000/1001",
			TenBit:        true,
			VideoDuration: ms(2002),
			AudioTracks:   1, AudioCodec: "pcm_s24le", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(2000),
			Traits: []string{"ProRes 422 HQ (prores_ks profile 3, apch), yuv422p10le, 23.976 fps, in QuickTime", "PCM s24le stereo"},
			recipe: []step{ff(cat(lavfi("mandelbrot=s=320x240:r=24000/1001:maxiter=256,trim=duration=2"), tone("1000", "2"),
				args("-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", "-c:a", "pcm_s24le", "-ac", "2", "{out}"))...)},
		},
		{
			Name: "dnxhr-hq", Ext: "mov", Valid: true,
			Format: mp4, VideoCodec: "dnxhd", Profile: "DNXHR HQ", PixFmt: "yuv422p", Frames: 48,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "24000/1001",
			VideoDuration: ms(2002),
			AudioTracks:   1, AudioCodec: "pcm_s16le", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(2000),
			Traits: []string{"DNxHR HQ (dnxhd profile dnxhr_hq), yuv422p, 23.976 fps, in QuickTime", "PCM s16le stereo"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=24000/1001:d=2"), tone("1000", "2"),
				args("-c:v", "dnxhd", "-profile:v", "dnxhr_hq", "-pix_fmt", "yuv422p", "-c:a", "pcm_s16le", "-ac", "2", "{out}"))...)},
		},
		{
			Name: "mpeg2-ts-offset", Ext: "ts", Valid: true,
			Format: "mpegts", VideoCodec: "mpeg2video", Profile: "Main", PixFmt: "yuv420p", Frames: 75,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			VideoStart: ms(11400), VideoDuration: ms(3000),
			AudioTracks: 1, AudioCodec: "mp2", AudioChannels: 2, AudioLayout: "stereo", AudioStart: us(11389978), AudioDuration: ms(3000),
			Traits: []string{"MPEG-2 video in MPEG-TS starting at 11.4 s (-output_ts_offset 10 plus the muxer's 1.4 s)", "MP2 stereo starting 10 ms before the video"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=3"), tone("440", "3"),
				args("-c:v", "mpeg2video", "-b:v", "1M", "-g", "12", "-bf", "2", "-c:a", "mp2", "-b:a", "128k", "-ac", "2", "-output_ts_offset", "10", "{out}"))...)},
		},
		{
			Name: "h264-avi", Ext: "avi", Valid: true,
			Format: "avi", VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 75,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "25/1",
			VideoStart: ms(80), VideoDuration: ms(3000),
			AudioTracks: 1, AudioCodec: "mp3", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(3024),
			Traits: []string{"H.264 (with B-frames) in AVI, 16:9", "MP3 audio",
				"AVI has no pts: ffmpeg presents the first frame at 80 ms (the B-frame delay) and flushes the last two without a timestamp"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x180:r=25:d=3"), tone("440", "3"), x264("keyint=25:bframes=2"), args("-c:a", "libmp3lame", "-b:a", "128k", "{out}"))...)},
		},
		{
			Name: "h264-avi-header-extra-frame", Ext: "avi", Valid: true,
			Format: "avi", VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 75,
			HeaderFrames: 76,
			Width:        320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "25/1",
			VideoStart: ms(80), VideoDuration: ms(3000),
			AudioTracks: 1, AudioCodec: "mp3", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(3024),
			Traits: []string{"H.264 in AVI whose header (avih dwTotalFrames, strh dwLength) claims one more video frame than the file holds; every frame decodes clean (issue 9 point 6)", "MP3 audio"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x180:r=25:d=3"), tone("440", "3"), x264("keyint=25:bframes=2"), args("-c:a", "libmp3lame", "-b:a", "128k", "{out}"))...),
				fix("avi-frames", "{out}", "1"),
			},
		},
		{
			Name: "vp9-webm-opus", Ext: "webm", Valid: true,
			Format: "matroska,webm", VideoCodec: "vp9", Profile: "Profile 0", PixFmt: "yuv420p", Frames: 75,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			VideoStart: ms(7), VideoDuration: ms(3000),
			AudioTracks: 1, AudioCodec: "opus", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(3000500),
			Traits: []string{"VP9 profile 0 in WebM", "Opus stereo (pre-skip: audio starts before the video)"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=25:d=3"), tone("440", "3"),
				args("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-g", "50", "-c:a", "libopus", "-b:a", "64k", "-ac", "2", "{out}"))...)},
		},
		{
			Name: "h264-interlaced-tff", Ext: "mts", Valid: true,
			Format: "mpegts", VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 50,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "25/1",
			Interlaced: true, TopFieldFirst: true,
			VideoStart: ms(1480), VideoDuration: ms(2000),
			AudioTracks: 1, AudioCodec: "ac3", AudioChannels: 2, AudioLayout: "stereo", AudioStart: us(1474667), AudioDuration: ms(2016),
			Traits: []string{"field-coded H.264 (x264 interlaced: MBAFF), top field first, made from 50 fields/s motion: 25 frames/s with combing", "MPEG-TS with AC-3, as AVCHD cameras write"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=50:d=2"), tone("440", "2"),
				args("-vf", "tinterlace=interleave_top,fieldorder=tff", "-pix_fmt", "yuv420p"),
				x264("tff=1"), args("-flags", "+ildct+ilme", "-c:a", "ac3", "-b:a", "192k", "{out}"))...)},
		},
		{
			Name: "mpeg2-interlaced-bff", Ext: "mpg", Valid: true,
			Format: "mpeg", VideoCodec: "mpeg2video", Profile: "Main", PixFmt: "yuv420p", Frames: 60,
			Width: 352, Height: 240, SAR: "10:11", DisplayWidth: 320, DisplayHeight: 240, FrameRate: "30000/1001",
			Interlaced: true, TopFieldFirst: false,
			VideoStart: us(533367), VideoDuration: ms(2002),
			AudioTracks: 1, AudioCodec: "mp2", AudioChannels: 2, AudioLayout: "stereo", AudioStart: us(523344), AudioDuration: ms(2016),
			Traits: []string{"field-coded MPEG-2, bottom field first, 352x240 at 29.97 frames/s from 59.94 fields/s motion, 4:3 display (SAR 10:11), as DV/DVD sources", "MPEG program stream, MP2"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=352x240:r=60000/1001:d=2"), tone("440", "2"),
				args("-vf", "tinterlace=interleave_bottom,fieldorder=bff", "-pix_fmt", "yuv420p", "-c:v", "mpeg2video", "-b:v", "2M", "-flags", "+ildct+ilme", "-top", "0", "-aspect", "4:3", "-c:a", "mp2", "-b:a", "192k", "{out}"))...)},
		},
		{
			Name: "phone-portrait-rotate90", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 180, DisplayHeight: 320, FrameRate: "30/1",
			Rotation:      -90,
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2005333),
			Traits: []string{"portrait phone clip stored landscape (320x180) with a 90° display matrix in tkhd: displayed 180x320", "AAC"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), tone("440", "2"), x264("keyint=30"), aac("96"), args("{out}"))...),
				fix("mp4-rotate", "{out}", "90"),
			},
		},
		{
			Name: "h264-anamorphic-720x480", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 45,
			Width: 720, Height: 480, SAR: "32:27", DisplayWidth: 853, DisplayHeight: 480, FrameRate: "30000/1001",
			VideoDuration: us(1501500),
			Traits:        []string{"non-square pixels: 720x480 with SAR 32:27 (16:9 display, NTSC widescreen), 29.97 fps"},
			recipe:        []step{ff(cat(lavfi("testsrc2=s=720x480:r=30000/1001:d=1.5,setsar=32/27"), x264("keyint=30"), args("-aspect", "16:9", "{out}"))...)},
		},
		{
			Name: "vp9-odd-1279x719", Ext: "webm", Valid: true,
			Format: "matroska,webm", VideoCodec: "vp9", Profile: "Profile 0", PixFmt: "yuv420p", Frames: 15,
			Width: 1279, Height: 719, SAR: "1:1", DisplayWidth: 1279, DisplayHeight: 719, FrameRate: "10/1",
			VideoDuration: ms(1500),
			Traits:        []string{"odd dimensions 1279x719 (a browser window capture), VP9 yuv420p, 10 fps, no audio"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=1280x720:r=10:d=1.5,scale=1279:719,setsar=1"),
				args("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k", "{out}"))...)},
		},
		{
			Name: "mp4-editlist-tail-discard", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 89,
			Packets: 90, HeaderFrames: 90,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: us(2966667),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(3008),
			Traits: []string{"MP4 whose video edit list starts the media at 33 ms (one B-frame of delay) and ends one frame before the last frame, so the demuxer flags that packet discard: 90 packets, 89 frames presented (issue 9 point 7)", "AAC"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x180:r=30:d=3"), tone("440", "3"), x264("keyint=30:bframes=1"), aac("96"), args("{out}"))...),
				fix("mp4-trim-edit", "{out}"),
			},
		},
		{
			Name: "mp4-editlist-ss-copy", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 75,
			Packets: 90, HeaderFrames: 90,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2500),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2510667),
			Traits: []string{"MP4 cut by a stream copy from 1.5 s (ffmpeg -ss 1.5 -c copy): the edit list skips the pre-roll from the keyframe at 1 s, whose packets the demuxer flags discard", "AAC with its own edit"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x180:r=30:d=4"), tone("440", "4"), x264("keyint=30:bframes=2"), aac("96"), args("{t:src.mp4}"))...),
				ff("-ss", "1.5", "-i", "{t:src.mp4}", "-c", "copy", "{out}"),
			},
		},
		{
			Name: "mp4-video-starts-late", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoStart: ms(200), VideoDuration: ms(2000),
			AudioTracks: 1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2218667),
			Traits: []string{"video starts 200 ms after the audio (an empty edit before the video track)", "AAC from 0 s"},
			recipe: []step{ff(cat(args("-itsoffset", "0.2"), lavfi("testsrc2=s=320x180:r=30:d=2"), tone("440", "2.2"),
				args("-fps_mode:v", "passthrough"), x264("keyint=30"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "mp4-audio-starts-late", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioStart: ms(278), AudioDuration: ms(1728),
			Traits: []string{"audio starts after the video: an empty edit of 278 ms before the audio track (-itsoffset 0.3, less the 21 ms of AAC priming that ffmpeg's muxer leaves in the presentation)"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), args("-itsoffset", "0.3"), tone("440", "1.7"),
				x264("keyint=30"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "mp4-audio-longer", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2090667),
			Traits: []string{"audio 82 ms longer than the video by the container (edit list), as phone clips (issue 9 point 2)",
				"the AAC decoder presents 2.091 s of audio for 2 s of video: the last frame's padding is not trimmed"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), tone("440", "2.082"), x264("keyint=30"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "mp4-audio-shorter", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(1514667),
			Traits: []string{"audio ends 500 ms before the video"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), tone("440", "1.5"), x264("keyint=30"), aac("96"), args("{out}"))...)},
		},
		{
			Name: "mp4-no-audio", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2000),
			Traits:        []string{"video only"},
			recipe:        []step{ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), x264("keyint=30"), args("{out}"))...)},
		},
		{
			Name: "mov-two-audio-tracks", Ext: "mov", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2000),
			AudioTracks:   2, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(2005333),
			Traits: []string{"two audio tracks: English stereo AAC and Spanish mono AAC", "QuickTime"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), tone("440", "2"), tone("880", "2"),
				args("-map", "0:v", "-map", "1:a", "-map", "2:a"), x264("keyint=30"), aac("96"),
				args("-ac:a:0", "2", "-ac:a:1", "1", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=spa", "{out}"))...)},
		},
		{
			Name: "mp4-aac-5.1", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 180, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 180, FrameRate: "30/1",
			VideoDuration: ms(2000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 6, AudioLayout: "5.1", AudioDuration: us(2005333),
			Traits: []string{"5.1 audio: AAC, 6 channels, layout 5.1 (FL FR FC LFE BL BR)"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x180:r=30:d=2"), lavfi("anoisesrc=r=48000:d=2:a=0.1:c=pink:seed=42,pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0"),
				x264("keyint=30"), aac("256"), args("{out}"))...)},
		},
		{
			Name: "mov-screen-vfr-hold", Ext: "mov", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 60,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240,
			VFR: true, MaxFrameGap: us(5033333),
			VideoDuration: ms(7000),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: us(7018667),
			Traits: []string{"screen recording with variable frame rate: 30 frames at 30 fps, one frame held for 5.03 s, 30 more frames at 30 fps; timescale 600", "AAC for the whole 7 s"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=30:d=2"), tone("440", "7"),
				args("-vf", "setpts=(N+if(gte(N\\,30)\\,150\\,0))/30/TB", "-fps_mode:v", "passthrough", "-enc_time_base:v", "1/600"),
				x264("keyint=60"), aac("96"), args("-video_track_timescale", "600", "{out}"))...)},
		},
		{
			Name: "mp4-phone-vfr", Ext: "mp4", Valid: true,
			Format: mp4, VideoCodec: "h264", Profile: "High", PixFmt: "yuv420p", Frames: 90,
			Width: 320, Height: 240, SAR: "1:1", DisplayWidth: 320, DisplayHeight: 240,
			VFR: true, MaxFrameGap: us(40600),
			VideoDuration: us(3000377),
			AudioTracks:   1, AudioCodec: "aac", AudioChannels: 2, AudioLayout: "stereo", AudioDuration: ms(3008),
			Traits: []string{"phone-like variable frame rate: nominal 30 fps with frame intervals jittering by up to ±6 ms; timescale 90000", "AAC"},
			recipe: []step{ff(cat(lavfi("testsrc2=s=320x240:r=30:d=3"), tone("440", "3"),
				args("-vf", "settb=1/90000,setpts=(N/30+0.006*sin(N*1.3))/TB", "-fps_mode:v", "passthrough", "-enc_time_base:v", "1/90000"),
				x264("keyint=30"), aac("96"), args("-video_track_timescale", "90000", "{out}"))...)},
		},
		{
			Name: "bad-truncated-faststart", Ext: "mp4", Valid: false, BadReason: ReasonTruncated,
			Traits: []string{"MP4 with moov first (+faststart), cut in the middle of mdat: probes fine, half its samples are missing"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x240:r=25:d=3"), tone("440", "3"), x264("keyint=25"), aac("96"), args("-movflags", "+faststart", "{out}"))...),
				fix("truncate-mdat", "{out}", "0.5"),
			},
		},
		{
			Name: "bad-truncated-no-moov", Ext: "mp4", Valid: false, BadReason: ReasonTruncated,
			Traits: []string{"MP4 with moov at the end, cut in the middle of mdat: no moov, ffprobe fails (\"moov atom not found\")"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x240:r=25:d=3"), tone("440", "3"), x264("keyint=25"), aac("96"), args("{out}"))...),
				fix("truncate-mdat", "{out}", "0.5"),
			},
		},
		{
			Name: "bad-corrupt", Ext: "mp4", Valid: false, BadReason: ReasonCorrupt,
			Traits: []string{"MP4 whose mdat has three 800-byte runs overwritten with noise: probes fine, decoding reports errors"},
			recipe: []step{
				ff(cat(lavfi("testsrc2=s=320x240:r=25:d=3"), tone("440", "3"), x264("keyint=25"), aac("96"), args("{out}"))...),
				fix("corrupt-mdat", "{out}", "3", "800"),
			},
		},
		{
			Name: "bad-not-media", Ext: "mp4", Valid: false, BadReason: ReasonNotMedia,
			Traits: []string{"an HTML error page saved as .mp4 (a failed download)"},
			recipe: []step{fix("text", "{out}", notMediaText)},
		},
	}
}

const notMediaText = `<!DOCTYPE html>
<html><head><title>403 Forbidden</title></head>
<body><h1>Forbidden</h1>
<p>You don't have permission to access this resource. The link to clip_0042.mp4 has expired.</p>
</body></html>
`
