package encoder

import (
	"fmt"
	"strconv"
)

// Backend builds the encoder-specific ffmpeg output arguments for one
// encoder: codec, preset, rate control, keyframe interval and closed GOPs.
type Backend interface {
	// Name is the ffmpeg encoder name (libx264, h264_nvenc, ...).
	Name() string
	// Codec is h264, hevc or av1.
	Codec() string
	// GPU says whether the encoder runs on an NVIDIA GPU (NVENC).
	GPU() bool
	// Args returns the output arguments for r using up to threads threads
	// (ignored by NVENC). r must have passed ValidateRendition.
	Args(r Rendition, threads int) []string
}

type backend struct {
	name, codec string
	gpu         bool
	presets     []string
}

func (b *backend) Name() string  { return b.name }
func (b *backend) Codec() string { return b.codec }
func (b *backend) GPU() bool     { return b.gpu }

// BackendFor returns the backend for a codec: libx264, libx265, libsvtav1 on
// CPU; h264_nvenc, hevc_nvenc on GPU (there is no AV1 GPU backend).
func BackendFor(codec string, gpu bool) (Backend, error) {
	switch {
	case codec == "h264" && !gpu:
		return &backend{"libx264", codec, false, x26xPresets}, nil
	case codec == "hevc" && !gpu:
		return &backend{"libx265", codec, false, x26xPresets}, nil
	case codec == "av1" && !gpu:
		return &backend{"libsvtav1", codec, false, svtPresets}, nil
	case codec == "h264" && gpu:
		return &backend{"h264_nvenc", codec, true, nvPresets}, nil
	case codec == "hevc" && gpu:
		return &backend{"hevc_nvenc", codec, true, nvPresets}, nil
	}
	return nil, fmt.Errorf("no %s backend for codec %q", map[bool]string{true: "GPU", false: "CPU"}[gpu], codec)
}

// Args implements Backend. Every value comes from a validated Rendition
// (names, presets from fixed lists, numbers, rates matching bitrateRE), so
// nothing here needs quoting; a rendition that fails ValidateRendition gets
// safe defaults instead of its bad values.
func (b *backend) Args(r Rendition, threads int) []string {
	if ValidateRendition(r) != nil {
		r = Rendition{Name: r.Name, Width: 2, Height: 2, Codec: b.codec, CRF: 23}
	}
	if threads <= 0 {
		threads = 1
	}
	gop := r.GOP
	if gop <= 0 {
		gop = 60
	}
	g := strconv.Itoa(gop)
	t := strconv.Itoa(threads)
	preset := presetFor(r, b.gpu)
	if !contains(b.presets, preset) {
		preset = defaultPreset(b.codec, b.gpu)
	}
	a := []string{"-c:v", b.name, "-preset", preset}
	pix := r.pixFmt()
	switch b.name {
	case "libx264":
		a = append(a, rateArgs(r, "-crf")...)
		a = append(a, "-g", g, "-keyint_min", g, "-sc_threshold", "0",
			"-x264-params", "open-gop=0", "-threads", t, "-pix_fmt", pix)
	case "libx265":
		a = append(a, rateArgs(r, "-crf")...)
		a = append(a, "-g", g, "-keyint_min", g, "-forced-idr", "1",
			"-x265-params", "open-gop=0:scenecut=0:keyint="+g+":min-keyint="+g+":pools="+t+":frame-threads="+strconv.Itoa(min(threads, 4))+":log-level=error"+x265HDR(r.HDR),
			"-pix_fmt", pix)
	case "libsvtav1":
		a = append(a, rateArgs(r, "-crf")...)
		// irefresh-type=2: key frames (closed GOP) at every keyint.
		a = append(a, "-g", g, "-svtav1-params", "irefresh-type=2:scd=0:lp="+t+svtHDR(r.HDR), "-pix_fmt", pix)
	case "h264_nvenc", "hevc_nvenc":
		if r.Bitrate == "" {
			a = append(a, "-rc", "vbr", "-cq", strconv.Itoa(r.CRF), "-b:v", "0")
			if r.MaxRate != "" {
				a = append(a, "-maxrate", r.MaxRate, "-bufsize", r.MaxRate)
			}
		} else {
			a = append(a, "-rc", "vbr", "-b:v", r.Bitrate)
			mr := r.MaxRate
			if mr == "" {
				mr = r.Bitrate
			}
			a = append(a, "-maxrate", mr, "-bufsize", mr)
		}
		// NVENC GOPs are closed; every keyframe is an IDR with forced-idr.
		if pix == "yuv420p10le" {
			pix = "p010le" // NVENC's 10-bit 4:2:0
		}
		a = append(a, "-g", g, "-forced-idr", "1", "-no-scenecut", "1", "-strict_gop", "1", "-pix_fmt", pix)
	}
	return a
}

// DeviceArgs returns the output arguments that pin b to GPU device (a CUDA
// ordinal, see NVENCDevice): "-gpu N" for NVENC backends, nothing for CPU
// backends or an empty device.
func DeviceArgs(b Backend, device string) []string {
	if !b.GPU() || device == "" || validDevice(device) != nil {
		return nil
	}
	return []string{"-gpu", device}
}

// pixFmt is the rendition's output pixel format: 4:2:0 at its bit depth.
func (r Rendition) pixFmt() string {
	if r.BitDepth == 10 {
		return "yuv420p10le"
	}
	return "yuv420p"
}

// x265HDR is the x265 parameter tail that signals h (validated values).
func x265HDR(h *HDR) string {
	if h == nil {
		return ""
	}
	s := ":colorprim=bt2020:colormatrix=bt2020nc:transfer=" + h.Transfer
	if h.Transfer == "smpte2084" {
		s += ":hdr10=1"
	}
	if h.MasterDisplay != "" {
		s += ":master-display=" + h.MasterDisplay
	}
	if h.MaxCLL != "" {
		s += ":max-cll=" + h.MaxCLL
	}
	return s
}

// svtHDR is the SVT-AV1 parameter tail that signals h (validated values):
// colour, and the mastering display and light levels in SVT's syntax
// (chromaticities and luminance as decimals).
func svtHDR(h *HDR) string {
	if h == nil {
		return ""
	}
	trc := "16" // smpte2084
	if h.Transfer == "arib-std-b67" {
		trc = "18"
	}
	s := ":color-primaries=9:transfer-characteristics=" + trc + ":matrix-coefficients=9:enable-hdr=1"
	if m := masterDisplayRE().FindStringSubmatch(h.MasterDisplay); m != nil {
		v := make([]float64, 10)
		for i := range v {
			n, _ := strconv.ParseFloat(m[i+1], 64)
			v[i] = n / 50000
			if i >= 8 {
				v[i] = n / 10000
			}
		}
		s += fmt.Sprintf(":mastering-display=G(%.5g,%.5g)B(%.5g,%.5g)R(%.5g,%.5g)WP(%.5g,%.5g)L(%.6g,%.6g)",
			v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9])
	}
	if h.MaxCLL != "" {
		s += ":content-light=" + h.MaxCLL
	}
	return s
}

// rateArgs is CRF (or ABR when Bitrate is set), with an optional cap.
func rateArgs(r Rendition, crfFlag string) []string {
	var a []string
	if r.Bitrate != "" {
		a = append(a, "-b:v", r.Bitrate)
	} else {
		a = append(a, crfFlag, strconv.Itoa(r.CRF))
	}
	if r.MaxRate != "" {
		a = append(a, "-maxrate", r.MaxRate, "-bufsize", r.MaxRate)
	}
	return a
}
