package encoder

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNVENCSessionLimit classifies ffmpeg logs of NVENC failures: the
// session-limit ones (limit_*.log) from those that are not (other_*.log).
func TestNVENCSessionLimit(t *testing.T) {
	files, err := filepath.Glob("testdata/nvenc/*.log")
	if err != nil || len(files) < 8 {
		t.Fatalf("testdata: %v %v", files, err)
	}
	for _, f := range files {
		log, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := strings.HasPrefix(filepath.Base(f), "limit_")
		if got := NVENCSessionLimit(log); got != want {
			t.Errorf("%s: session limit = %v, want %v", f, got, want)
		}
	}
	// The decode logs of the other tests are no session limit either.
	for _, f := range []string{"testdata/decode_damaged.log", "testdata/decode_preroll.log"} {
		log, _ := os.ReadFile(f)
		if NVENCSessionLimit(log) {
			t.Errorf("%s: read as a session limit", f)
		}
	}
}

func TestNVENCDevice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{"no grant", map[string]string{}, "", false},
		{"no grant, task's own CUDA_VISIBLE_DEVICES", map[string]string{"CUDA_VISIBLE_DEVICES": "1"}, "", false},
		{"pinned by the agent: ordinal 0", map[string]string{"BANYAN_GPU_INDEX": "3", "BANYAN_GPU_UUID": "GPU-c",
			"CUDA_VISIBLE_DEVICES": "GPU-c"}, "0", false},
		{"two grants: the first", map[string]string{"BANYAN_GPU_INDEX": "5,2", "BANYAN_GPU_UUID": "GPU-e,GPU-b",
			"CUDA_VISIBLE_DEVICES": "GPU-e,GPU-b"}, "0", false},
		{"first grant listed second", map[string]string{"BANYAN_GPU_INDEX": "5", "BANYAN_GPU_UUID": "GPU-e",
			"CUDA_VISIBLE_DEVICES": "GPU-b,GPU-e"}, "1", false},
		{"MIG instance", map[string]string{"BANYAN_GPU_INDEX": "1", "BANYAN_GPU_UUID": "MIG-7f0e",
			"CUDA_VISIBLE_DEVICES": "MIG-7f0e"}, "0", false},
		{"no CUDA_VISIBLE_DEVICES: the NVML index", map[string]string{"BANYAN_GPU_INDEX": "3", "BANYAN_GPU_UUID": "GPU-c"}, "3", false},
		{"grant not visible", map[string]string{"BANYAN_GPU_INDEX": "3", "BANYAN_GPU_UUID": "GPU-c",
			"CUDA_VISIBLE_DEVICES": "GPU-a"}, "", true},
		{"bad index", map[string]string{"BANYAN_GPU_INDEX": "x"}, "", true},
		{"negative index", map[string]string{"BANYAN_GPU_INDEX": "-1"}, "", true},
	} {
		got, err := NVENCDevice(func(k string) string { return tc.env[k] })
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: %q, %v; want %q (error %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// deviceOf returns the value of -gpu in args ("" without one) and how
// often the flag appears.
func deviceOf(args []string) (string, int) {
	n, v := 0, ""
	for i, a := range args {
		if a == "-gpu" && i+1 < len(args) {
			n, v = n+1, args[i+1]
		}
	}
	return v, n
}

// TestChunkArgsNamesTheDevice: an NVENC chunk's command line names exactly
// the device it was given, once, among the encoder's output options; a CPU
// chunk or one without a device names none.
func TestChunkArgsNamesTheDevice(t *testing.T) {
	src := synthSource(rand.New(rand.NewSource(1)), 300, false, []int{0, 60, 120, 180, 240})
	c, err := ChunkFromFrames(src, 1, 60, 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		codec  string
		gpu    bool
		device string
		want   string
	}{
		{"h264", true, "0", "0"}, {"hevc", true, "2", "2"}, {"h264", true, "", ""}, {"h264", false, "1", ""},
	} {
		j := ChunkJob{Source: "/in.mov", Chunk: c, Rendition: Rendition{Name: "720p", Width: 1280, Height: 720, Codec: tc.codec, CRF: 23},
			GPU: tc.gpu, GPUDevice: tc.device, Out: "/out/c1.nut"}
		args, err := ChunkArgs(src, j, 60)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		got, n := deviceOf(args)
		if got != tc.want || (tc.want != "" && n != 1) || (tc.want == "" && n != 0) {
			t.Errorf("%s gpu=%v device %q: -gpu %q (%d times) in %s", tc.codec, tc.gpu, tc.device, got, n, strings.Join(args, " "))
		}
		if tc.want != "" {
			enc, dev := slices.Index(args, "-c:v"), slices.Index(args, "-gpu")
			out := slices.Index(args, "-f")
			if !(enc < dev && dev < out) {
				t.Errorf("-gpu at %d, want between -c:v (%d) and the output (%d)", dev, enc, out)
			}
		}
	}
	j := ChunkJob{Source: "/in.mov", Chunk: c, Rendition: Rendition{Name: "720p", Width: 1280, Height: 720, Codec: "h264", CRF: 23},
		GPU: true, GPUDevice: "0 -vf evil", Out: "/out/c1.nut"}
	if _, err := ChunkArgs(src, j, 60); err == nil {
		t.Error("a device that is not an ordinal was accepted")
	}
}

// TestEncodeChunkSessionLimit runs a chunk's encode with an ffmpeg that
// fails as NVENC does at its session limit: the error says so (and still
// is the tool's error); the same log from a CPU encode is a plain tool
// failure.
func TestEncodeChunkSessionLimit(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "ffmpeg")
	script := "#!/bin/sh\ncat " + filepath.Join(mustAbs(t, "testdata/nvenc/limit_out_of_memory.log")) + " >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := FFmpeg
	FFmpeg = fake
	t.Cleanup(func() { FFmpeg = old })

	src := synthSource(rand.New(rand.NewSource(1)), 300, false, []int{0, 60, 120, 180, 240})
	c, _ := ChunkFromFrames(src, 1, 60, 60)
	for _, gpu := range []bool{true, false} {
		err := EncodeChunk(context.Background(), ChunkJob{Source: filepath.Join(dir, "in.mov"), Src: src, Chunk: c,
			Rendition: Rendition{Name: "720p", Width: 1280, Height: 720, Codec: "h264", CRF: 23}, GPU: gpu, GPUDevice: "0",
			Out: filepath.Join(dir, "out", "c1.nut")})
		var te *ToolError
		if !errors.As(err, &te) {
			t.Fatalf("gpu=%v: %v, want a tool error", gpu, err)
		}
		if got := errors.Is(err, ErrNVENCSessionLimit); got != gpu {
			t.Errorf("gpu=%v: session limit = %v (%v)", gpu, got, err)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
