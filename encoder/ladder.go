package encoder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Rendition is one rung of a ladder. Codec is h264, hevc or av1. Rate
// control is CRF (constant quality; CQ for NVENC) unless Bitrate is set;
// MaxRate caps either. Preset is the CPU encoder's preset (x264/x265 names,
// or "0".."13" for SVT-AV1); GPUPreset is NVENC's (p1..p7, default p4).
// GOP is the keyframe interval in frames (0: BuildGraph/EncodeChunk use two
// seconds of the source's frame rate; Args falls back to 60).
type Rendition struct {
	Name      string `json:"name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Codec     string `json:"codec"`
	CRF       int    `json:"crf,omitempty"`
	Bitrate   string `json:"bitrate,omitempty"`
	MaxRate   string `json:"max_rate,omitempty"`
	Preset    string `json:"preset,omitempty"`
	GPUPreset string `json:"gpu_preset,omitempty"`
	GOP       int    `json:"gop,omitempty"`
	// BitDepth is 8 (or 0) or 10; 10 only for hevc and av1. The plan sets
	// it from the source (FitLadder).
	BitDepth int `json:"bit_depth,omitempty"`
	// HDR, set by the plan for HEVC and AV1 rungs of an HDR source, is the
	// signalling the rendition carries.
	HDR *HDR `json:"hdr,omitempty"`
}

// HDR is the high-dynamic-range signalling of a rendition.
type HDR struct {
	// Transfer is smpte2084 (PQ, HDR10) or arib-std-b67 (HLG).
	Transfer string `json:"transfer"`
	// MasterDisplay is the mastering display in x265's syntax,
	// G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min); "" when the source has none.
	MasterDisplay string `json:"master_display,omitempty"`
	// MaxCLL is "max content light level,max frame-average light level".
	MaxCLL string `json:"max_cll,omitempty"`
}

// Ladder policies.
const (
	PolicyRequireGPU = "require-gpu"
	PolicyPreferGPU  = "prefer-gpu"
	PolicyCPUOnly    = "cpu-only"
)

// DefaultGPUWait is how long a prefer-gpu chunk waits for a GPU before its
// CPU fallback is used, when the ladder does not say.
const DefaultGPUWait = 30 * time.Second

// Ladder is a set of renditions and the policy for using GPUs.
type Ladder struct {
	Name       string
	Policy     string
	GPUWait    time.Duration
	Renditions []Rendition
}

// ladderFile is the on-disk (YAML or JSON) shape of a ladder.
type ladderFile struct {
	Name       string      `json:"name"`
	Policy     string      `json:"policy,omitempty"`
	GPUWait    string      `json:"gpu_wait,omitempty"`
	Renditions []Rendition `json:"renditions"`
}

// DefaultLadder is 1080p/720p/480p H.264, preferring NVENC with a CPU
// fallback after DefaultGPUWait.
func DefaultLadder() *Ladder {
	return &Ladder{Name: "default", Policy: PolicyPreferGPU, GPUWait: DefaultGPUWait, Renditions: []Rendition{
		{Name: "1080p", Width: 1920, Height: 1080, Codec: "h264", CRF: 21, MaxRate: "8M", Preset: "medium", GPUPreset: "p5"},
		{Name: "720p", Width: 1280, Height: 720, Codec: "h264", CRF: 22, MaxRate: "5M", Preset: "medium", GPUPreset: "p5"},
		{Name: "480p", Width: 854, Height: 480, Codec: "h264", CRF: 23, MaxRate: "2500k", Preset: "medium", GPUPreset: "p5"},
	}}
}

func builtinLadder(name string) *Ladder {
	switch name {
	case "default":
		return DefaultLadder()
	case "demo":
		return &Ladder{Name: "demo", Policy: PolicyPreferGPU, GPUWait: 10 * time.Second, Renditions: []Rendition{
			{Name: "720p", Width: 1280, Height: 720, Codec: "h264", CRF: 23, Preset: "veryfast", GPUPreset: "p2"},
			{Name: "480p", Width: 854, Height: 480, Codec: "h264", CRF: 24, Preset: "veryfast", GPUPreset: "p2"},
			{Name: "360p", Width: 640, Height: 360, Codec: "h264", CRF: 25, Preset: "veryfast", GPUPreset: "p2"},
		}}
	case "test":
		return &Ladder{Name: "test", Policy: PolicyCPUOnly, Renditions: []Rendition{
			{Name: "240p", Width: 320, Height: 240, Codec: "h264", CRF: 26, Preset: "ultrafast"},
			{Name: "120p", Width: 160, Height: 120, Codec: "h264", CRF: 28, Preset: "ultrafast"},
		}}
	}
	return nil
}

// BuiltinLadders lists the names LoadLadder knows without a file.
func BuiltinLadders() []string { return []string{"default", "demo", "test"} }

// LoadLadder returns a built-in ladder ("default", "demo", "test") or reads
// a YAML/JSON file (fields: name, policy, gpu_wait as a Go duration, and
// renditions with name, width, height, codec, crf, bitrate, max_rate,
// preset, gpu_preset, gop). Unknown fields are errors; the result is
// validated with ValidateLadder.
func LoadLadder(nameOrPath string) (*Ladder, error) {
	if l := builtinLadder(nameOrPath); l != nil {
		return l, nil
	}
	data, err := os.ReadFile(nameOrPath)
	if err != nil {
		return nil, fmt.Errorf("load ladder %q (not a built-in: %s): %w", nameOrPath, strings.Join(BuiltinLadders(), ", "), err)
	}
	l, err := ParseLadder(data)
	if err != nil {
		return nil, fmt.Errorf("load ladder %s: %w", nameOrPath, err)
	}
	return l, nil
}

// ParseLadder parses and validates a YAML or JSON ladder document.
func ParseLadder(data []byte) (*Ladder, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse ladder: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var f ladderFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse ladder: %w", err)
	}
	l := &Ladder{Name: f.Name, Policy: f.Policy, Renditions: f.Renditions}
	if f.GPUWait != "" {
		if l.GPUWait, err = time.ParseDuration(f.GPUWait); err != nil {
			return nil, fmt.Errorf("parse ladder: gpu_wait: %w", err)
		}
	}
	if l.Policy == "" {
		l.Policy = PolicyCPUOnly
	}
	if l.Policy == PolicyPreferGPU && l.GPUWait == 0 {
		l.GPUWait = DefaultGPUWait
	}
	if err := ValidateLadder(l); err != nil {
		return nil, err
	}
	return l, nil
}

var (
	nameRE    = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)
	bitrateRE = lazyRegexp(`^[1-9][0-9]{0,8}(\.[0-9]{1,3})?[kKmM]?$`)
	// Mastering display and content light level in x265's syntax.
	masterDisplayRE = lazyRegexp(`^G\((\d{1,5}),(\d{1,5})\)B\((\d{1,5}),(\d{1,5})\)R\((\d{1,5}),(\d{1,5})\)WP\((\d{1,5}),(\d{1,5})\)L\((\d{1,10}),(\d{1,10})\)$`)
	maxCLLRE        = lazyRegexp(`^\d{1,5},\d{1,5}$`)
)

// ValidateLadder checks a ladder: a name, a known policy, renditions with
// unique safe names, even positive dimensions up to 8192, a known codec, a
// CRF within the codec's range (or a bitrate), well-formed rates, presets
// valid for the backends the policy will use, and a GPU backend for every
// rendition when the policy is require-gpu. It is pure.
func ValidateLadder(l *Ladder) error {
	if l == nil {
		return errors.New("ladder: nil")
	}
	if !nameRE().MatchString(l.Name) {
		return fmt.Errorf("ladder: bad name %q", l.Name)
	}
	switch l.Policy {
	case PolicyRequireGPU, PolicyPreferGPU, PolicyCPUOnly:
	default:
		return fmt.Errorf("ladder %s: unknown policy %q (want %s, %s or %s)", l.Name, l.Policy, PolicyRequireGPU, PolicyPreferGPU, PolicyCPUOnly)
	}
	if l.GPUWait < 0 {
		return fmt.Errorf("ladder %s: negative gpu_wait", l.Name)
	}
	if len(l.Renditions) == 0 {
		return fmt.Errorf("ladder %s: no renditions", l.Name)
	}
	seen := map[string]bool{}
	for _, r := range l.Renditions {
		if seen[r.Name] {
			return fmt.Errorf("ladder %s: duplicate rendition %q", l.Name, r.Name)
		}
		seen[r.Name] = true
		if err := ValidateRendition(r); err != nil {
			return fmt.Errorf("ladder %s: %w", l.Name, err)
		}
		if l.Policy != PolicyCPUOnly {
			_, err := BackendFor(r.Codec, true)
			if err != nil && l.Policy == PolicyRequireGPU {
				return fmt.Errorf("ladder %s: rendition %s: policy %s: %w", l.Name, r.Name, l.Policy, err)
			}
			if err == nil {
				if err := validPreset(r, true); err != nil {
					return fmt.Errorf("ladder %s: %w", l.Name, err)
				}
			}
		}
	}
	return nil
}

// ValidateRendition checks one rendition for its CPU backend (see
// ValidateLadder). It is pure.
func ValidateRendition(r Rendition) error {
	if !nameRE().MatchString(r.Name) {
		return fmt.Errorf("rendition: bad name %q", r.Name)
	}
	if r.Width <= 0 || r.Height <= 0 || r.Width%2 != 0 || r.Height%2 != 0 || r.Width > 8192 || r.Height > 8192 {
		return fmt.Errorf("rendition %s: dimensions %dx%d must be even, positive and at most 8192", r.Name, r.Width, r.Height)
	}
	lo, hi, ok := crfRange(r.Codec)
	if !ok {
		return fmt.Errorf("rendition %s: unknown codec %q (want h264, hevc or av1)", r.Name, r.Codec)
	}
	if r.Bitrate == "" && r.CRF == 0 {
		return fmt.Errorf("rendition %s: needs crf or bitrate", r.Name)
	}
	if r.CRF != 0 && (r.CRF < lo || r.CRF > hi) {
		return fmt.Errorf("rendition %s: crf %d outside %d..%d for %s", r.Name, r.CRF, lo, hi, r.Codec)
	}
	for _, v := range []struct{ what, s string }{{"bitrate", r.Bitrate}, {"max_rate", r.MaxRate}} {
		if v.s != "" && !bitrateRE().MatchString(v.s) {
			return fmt.Errorf("rendition %s: bad %s %q (want e.g. 2500k or 5M)", r.Name, v.what, v.s)
		}
	}
	if r.GOP < 0 || r.GOP > 10000 {
		return fmt.Errorf("rendition %s: gop %d outside 0..10000", r.Name, r.GOP)
	}
	switch {
	case r.BitDepth != 0 && r.BitDepth != 8 && r.BitDepth != 10:
		return fmt.Errorf("rendition %s: bit_depth %d (want 8 or 10)", r.Name, r.BitDepth)
	case r.BitDepth == 10 && r.Codec == "h264":
		return fmt.Errorf("rendition %s: 10-bit needs hevc or av1, not h264", r.Name)
	}
	if h := r.HDR; h != nil {
		switch {
		case r.BitDepth != 10:
			return fmt.Errorf("rendition %s: hdr needs bit_depth 10", r.Name)
		case h.Transfer != "smpte2084" && h.Transfer != "arib-std-b67":
			return fmt.Errorf("rendition %s: hdr transfer %q (want smpte2084 or arib-std-b67)", r.Name, h.Transfer)
		case h.MasterDisplay != "" && !masterDisplayRE().MatchString(h.MasterDisplay):
			return fmt.Errorf("rendition %s: bad master_display %q (want G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min))", r.Name, h.MasterDisplay)
		case h.MaxCLL != "" && !maxCLLRE().MatchString(h.MaxCLL):
			return fmt.Errorf("rendition %s: bad max_cll %q (want e.g. 1000,400)", r.Name, h.MaxCLL)
		}
	}
	return validPreset(r, false)
}

func crfRange(codec string) (lo, hi int, ok bool) {
	switch codec {
	case "h264", "hevc":
		return 1, 51, true
	case "av1":
		return 1, 63, true
	}
	return 0, 0, false
}

var (
	x26xPresets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"}
	svtPresets  = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"}
	nvPresets   = []string{"p1", "p2", "p3", "p4", "p5", "p6", "p7"}
)

// defaultPreset is used when a rendition names none.
func defaultPreset(codec string, gpu bool) string {
	switch {
	case gpu:
		return "p4"
	case codec == "av1":
		return "8"
	}
	return "medium"
}

func validPreset(r Rendition, gpu bool) error {
	b, err := BackendFor(r.Codec, gpu)
	if err != nil {
		return fmt.Errorf("rendition %s: %w", r.Name, err)
	}
	p := presetFor(r, gpu)
	if !contains(b.(*backend).presets, p) {
		return fmt.Errorf("rendition %s: preset %q not valid for %s (want one of %s)", r.Name, p, b.Name(), strings.Join(b.(*backend).presets, ", "))
	}
	return nil
}

func presetFor(r Rendition, gpu bool) string {
	p := r.Preset
	if gpu {
		p = r.GPUPreset
	}
	if p == "" {
		p = defaultPreset(r.Codec, gpu)
	}
	return p
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
