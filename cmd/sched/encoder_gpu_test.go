package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/encoder"
)

// TestEncodeChunkOnGrantedGPU runs `sched encoder encode-chunk --gpu` as an
// agent starts it for a task granted GPU 3 (pinned by its UUID), with an
// ffmpeg that records its arguments and fails as NVENC does at its session
// limit: ffmpeg is told exactly the granted device (-gpu 0, its CUDA
// ordinal once pinned), and the step exits 69.
func TestEncodeChunkOnGrantedGPU(t *testing.T) {
	root, _ := rootsFixture(t)
	source := filepath.Join(root, "in.mov")
	if err := os.WriteFile(source, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n := 300
	src := &encoder.Source{Path: source, TimeBase: encoder.Rational{Num: 1, Den: 90000}, FrameRate: encoder.Rational{Num: 30, Den: 1},
		FrameCount: n, EndPTS: int64(n) * 3000, Keyframes: []int{0, 60, 120, 180, 240}, CleanKeys: []int{0, 60, 120, 180, 240}}
	for i := range n {
		src.FramePTS = append(src.FramePTS, int64(i)*3000)
	}
	probe := filepath.Join(root, "probe.json")
	if err := encoder.WriteSource(probe, src); err != nil {
		t.Fatal(err)
	}
	limitLog, err := filepath.Abs("../../encoder/testdata/nvenc/limit_out_of_memory.log")
	if err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(root, "args")
	fake := filepath.Join(root, "ffmpeg")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argsFile + "\ncat " + limitLog + " >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := encoder.FFmpeg
	encoder.FFmpeg = fake
	t.Cleanup(func() { encoder.FFmpeg = old })
	t.Setenv("BANYAN_GPU_INDEX", "3")
	t.Setenv("BANYAN_GPU_UUID", "GPU-9f1c")
	t.Setenv("CUDA_VISIBLE_DEVICES", "GPU-9f1c")
	t.Setenv("NVIDIA_VISIBLE_DEVICES", "GPU-9f1c")

	cmd := newEncodeChunkCmd()
	cmd.SetArgs([]string{"--source", source, "--probe", probe, "--chunk-index", "1", "--chunk-start", "60", "--chunk-frames", "60",
		"--rendition-json", `{"name":"720p","width":1280,"height":720,"codec":"h264","crf":23}`, "--gpu=true",
		"--out", filepath.Join(root, "out", "c1.nut")})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	if code := exitCode(err); code != failure.ExitNVENCSessionLimit {
		t.Fatalf("encode-chunk: %v (exit %d), want exit %d", err, code, failure.ExitNVENCSessionLimit)
	}
	data, rerr := os.ReadFile(argsFile)
	if rerr != nil {
		t.Fatalf("ffmpeg not run: %v", rerr)
	}
	args := strings.Split(strings.TrimSpace(string(data)), "\n")
	var devices []string
	for i, a := range args {
		if a == "-gpu" && i+1 < len(args) {
			devices = append(devices, args[i+1])
		}
	}
	if len(devices) != 1 || devices[0] != "0" {
		t.Errorf("-gpu values %v, want exactly [0] in: %s", devices, strings.Join(args, " "))
	}
}
