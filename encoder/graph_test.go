package encoder

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func graphFixture(policy string, audio bool) GraphOptions {
	src := &Source{TimeBase: Rational{1, 30}, FrameRate: Rational{30, 1}, HasAudio: audio}
	for i := 0; i < 900; i++ {
		src.FramePTS = append(src.FramePTS, int64(i))
	}
	src.EndPTS, src.FrameCount, src.Keyframes = 900, 900, []int{0}
	src.Duration = 30 * time.Second
	chunks, _ := PlanChunks(src, ChunkOptions{})
	l := &Ladder{Name: "t", Policy: policy, GPUWait: 20 * time.Second, Renditions: []Rendition{
		{Name: "720p", Width: 1280, Height: 720, Codec: "h264", CRF: 22, Preset: "fast"},
		{Name: "av1", Width: 640, Height: 360, Codec: "av1", CRF: 35, Preset: "10"},
	}}
	if policy == PolicyRequireGPU {
		l.Renditions = l.Renditions[:1]
	}
	return GraphOptions{Source: "in/title.mov", OutDir: "out/job1", Src: src, Chunks: chunks, Ladder: l}
}

func flag(cmd []string, f string) string {
	i := slices.Index(cmd, f)
	if i < 0 || i+1 >= len(cmd) {
		return ""
	}
	return cmd[i+1]
}

func TestBuildGraph(t *testing.T) {
	for _, policy := range []string{PolicyCPUOnly, PolicyRequireGPU, PolicyPreferGPU} {
		o := graphFixture(policy, policy != PolicyRequireGPU)
		tasks, err := BuildGraph(o)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]GraphTask{}
		for _, tk := range tasks {
			if _, dup := byName[tk.Name]; dup {
				t.Fatalf("duplicate task %s", tk.Name)
			}
			byName[tk.Name] = tk
			if tk.Command[0] != "@sched" || tk.Command[1] != "encoder" {
				t.Errorf("%s: command %v", tk.Name, tk.Command)
			}
		}
		for _, tk := range tasks {
			for _, d := range tk.After {
				if _, ok := byName[d]; !ok {
					t.Errorf("%s: after %s, which is not in the graph", tk.Name, d)
				}
			}
		}
		_, hasAudio := byName["audio"]
		if hasAudio != o.Src.HasAudio {
			t.Errorf("%s: audio task %v", policy, hasAudio)
		}
		for _, r := range o.Ladder.Renditions {
			for i, c := range o.Chunks {
				tk, ok := byName["enc-"+r.Name+"-"+strconv.Itoa(i)]
				if !ok {
					t.Fatalf("missing enc-%s-%d", r.Name, i)
				}
				if flag(tk.Command, "--chunk-start") != strconv.Itoa(c.StartFrame) || flag(tk.Command, "--chunk-frames") != strconv.Itoa(c.Frames) ||
					flag(tk.Command, "--out") != ChunkPath(o.OutDir, r.Name, i) {
					t.Errorf("enc cmd %v", tk.Command)
				}
				rr, err := ParseRenditionJSON(flag(tk.Command, "--rendition-json"))
				if err != nil || rr.Name != r.Name || rr.GOP != 60 {
					t.Errorf("rendition json: %v %+v", err, rr)
				}
				gpuTask := slices.Contains(tk.Command, "--gpu=true")
				wantGPU := policy != PolicyCPUOnly && r.Codec != "av1"
				if gpuTask != wantGPU {
					t.Errorf("%s %s: gpu %v", policy, tk.Name, gpuTask)
				}
				if gpuTask {
					if tk.Resources.NVENC != 1 || tk.Resources.GPUMemoryBytes != 512*MiB || tk.Resources.CPUMillis != 500 {
						t.Errorf("gpu resources %+v", tk.Resources)
					}
				} else if tk.Resources.CPUMillis != 1000 || tk.Resources.MemoryBytes != 512*MiB || tk.Resources.NVENC != 0 {
					t.Errorf("cpu resources %+v", tk.Resources)
				}
				if policy == PolicyPreferGPU && wantGPU {
					if tk.Fallback == nil || tk.FallbackAfterMs != 20000 || !slices.Contains(tk.Fallback.Command, "--gpu=false") || tk.Fallback.Resources.NVENC != 0 {
						t.Errorf("prefer-gpu fallback: %+v", tk)
					}
				} else if tk.Fallback != nil {
					t.Errorf("%s %s: unexpected fallback", policy, tk.Name)
				}
			}
			asm := byName["asm-"+r.Name]
			if len(asm.After) != len(o.Chunks)+map[bool]int{true: 1, false: 0}[hasAudio] {
				t.Errorf("asm after %v", asm.After)
			}
			n := 0
			for i, a := range asm.Command {
				if a == "--chunk" {
					if asm.Command[i+1] != ChunkPath(o.OutDir, r.Name, n) {
						t.Errorf("asm chunk order")
					}
					if asm.Command[i+2] != "--chunk-frames" || asm.Command[i+3] != strconv.Itoa(o.Chunks[n].Frames) {
						t.Errorf("asm chunk %d: frames %v, want %d", n, asm.Command[i+2:i+4], o.Chunks[n].Frames)
					}
					n++
				}
			}
			if n != len(o.Chunks) {
				t.Errorf("asm has %d chunks", n)
			}
		}
		if len(byName["index"].After) != len(o.Ladder.Renditions) || !slices.Equal(byName["verify"].After, []string{"index"}) {
			t.Errorf("index/verify deps %v %v", byName["index"].After, byName["verify"].After)
		}
		js, err := json.Marshal(Plan{Tasks: tasks})
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"tasks"`, `"cpu_millis"`, `"memory_bytes"`, `"timeout_ms"`, `"initial_backoff_ms"`, `"after"`} {
			if !strings.Contains(string(js), key) {
				t.Errorf("JSON lacks %s", key)
			}
		}
		if policy == PolicyPreferGPU && (!strings.Contains(string(js), `"fallback"`) || !strings.Contains(string(js), `"fallback_after_ms":20000`)) {
			t.Error("JSON lacks fallback")
		}
	}
}

func TestBuildGraphRejects(t *testing.T) {
	o := graphFixture(PolicyCPUOnly, false)
	o.Chunks = o.Chunks[1:]
	if _, err := BuildGraph(o); err == nil {
		t.Error("accepted chunks that do not cover the source")
	}
	o = graphFixture(PolicyCPUOnly, false)
	o.Ladder.Renditions[0].Width = 1281
	if _, err := BuildGraph(o); err == nil {
		t.Error("accepted an invalid ladder")
	}
}
