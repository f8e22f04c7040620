package encode

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/encoder"
)

func TestMain(m *testing.M) {
	MaybeRunWrapper() // the test binary is the accounting wrapper too
	os.Exit(m.Run())
}

func TestListSchedule(t *testing.T) {
	// Two agents, costs 1,1,1,1,4: costliest first puts the 4 alone on one
	// agent (makespan 4); FIFO starts it last (makespan 6).
	tasks := []SimTask{{Cost: 1}, {Cost: 1}, {Cost: 1}, {Cost: 1}, {Cost: 4}}
	if got := ListSchedule(tasks, 2, CostliestFirst(tasks)); got != 4 {
		t.Errorf("costliest-first makespan %v, want 4", got)
	}
	if got := ListSchedule(tasks, 2, FIFO(tasks)); got != 6 {
		t.Errorf("FIFO makespan %v, want 6", got)
	}
	// A task after the 4 and the first 1: critical path 5, reached with
	// enough agents.
	dep := append(tasks, SimTask{Cost: 1, Deps: []int{0, 4}})
	if got := CriticalPath(dep); got != 5 {
		t.Errorf("critical path %v, want 5", got)
	}
	if got := ListSchedule(dep, 100, CostliestFirst(dep)); got != 5 {
		t.Errorf("makespan on 100 agents %v, want the critical path 5", got)
	}
}

// TestTinyRun runs the whole benchmark on a 160x120, 3 s clip cut into
// 1 s chunks and checks the JSON it would write.
func TestTinyRun(t *testing.T) {
	for _, p := range []string{encoder.FFmpeg, encoder.FFprobe} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Width: 160, Height: 120, Duration: 3 * time.Second, FPS: 30, Content: ContentMix, GOP: 500 * time.Millisecond,
		Ladder: "test", Chunk: encoder.ChunkOptions{Target: time.Second, Min: 500 * time.Millisecond, Max: 2 * time.Second},
		Workers: 2, Repeat: 1, Reprobe: true, PerProcess: true, Index: true, WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	num := func(path ...string) float64 {
		t.Helper()
		var v any = m
		for _, k := range path {
			o, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, k)
			}
			if v, ok = o[k]; !ok {
				t.Fatalf("JSON has no %v", path)
			}
		}
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			t.Fatalf("%v = %v, want a finite number", path, v)
		}
		return f
	}
	for _, p := range [][]string{{"wall_ratio"}, {"cpu_ratio"}, {"plain", "wall_s"}, {"plain", "cpu_s"},
		{"chunked", "wall_s"}, {"chunked", "cpu_s"}, {"projection", "critical_path_s"}, {"projection", "total_cpu_s"}} {
		if v := num(p...); v <= 0 {
			t.Errorf("%v = %v, want > 0", p, v)
		}
	}
	num("overhead", "split_assemble_index_share")
	num("max_abs_psnr_diff_db")
	num("total_size_diff_pct")
	if len(res.Chunks) < 2 {
		t.Errorf("%d chunks, want several", len(res.Chunks))
	}
	if len(res.Renditions) != 2 {
		t.Fatalf("%d renditions, want 2", len(res.Renditions))
	}
	for _, r := range res.Renditions {
		for _, v := range []float64{r.PSNRPlain, r.PSNRChunked} {
			if v < 20 || v > 100 {
				t.Errorf("%s: PSNR %v outside 20..100 dB", r.Name, v)
			}
		}
		if r.VideoBytesPlain <= 0 || r.VideoBytesChunk <= 0 || r.KeyframesPlain <= 0 || r.KeyframesChunked <= 0 {
			t.Errorf("%s: sizes/keyframes not measured: %+v", r.Name, r)
		}
	}
	nEnc := 0
	for _, tc := range res.Chunked.Tasks {
		if tc.Kind == "enc" {
			nEnc++
			if tc.CPUS <= 0 || tc.EncodeS <= 0 || tc.CountS <= 0 || tc.Estimate <= 0 {
				t.Errorf("task %s: costs not attributed: %+v", tc.Name, tc)
			}
		}
	}
	if want := len(res.Chunks) * 2; nEnc != want {
		t.Errorf("%d chunk tasks, want %d", nEnc, want)
	}
	if len(res.Projection.Agents) != 4 {
		t.Errorf("projection for %d agent counts, want 4 (workers, 8, 31, 100)", len(res.Projection.Agents))
	}
	for _, a := range res.Projection.Agents {
		if a.CostliestFirst < res.Projection.CriticalPathS-1e-9 || a.FIFO < res.Projection.CriticalPathS-1e-9 ||
			a.Estimated < res.Projection.CriticalPathS-1e-9 {
			t.Errorf("projection %+v below the critical path %v", a, res.Projection.CriticalPathS)
		}
	}
	if len(res.Projection.Model) != 3 || res.Projection.ModelChunks != 31 {
		t.Errorf("model projection %d agent counts of %d chunks, want 3 of 31", len(res.Projection.Model), res.Projection.ModelChunks)
	}
	if len(res.Notes) == 0 {
		t.Error("no notes")
	}
}

func TestSpearman(t *testing.T) {
	for _, tc := range []struct {
		a, b []float64
		want float64
	}{
		{[]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}, 1},
		{[]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, -1},
		{[]float64{1, 2, 3, 4}, []float64{1, 100, 1000, 5000}, 1}, // ranks, not values
		{[]float64{1, 2, 3}, []float64{5, 5, 5}, 0},               // constant
		{[]float64{1}, []float64{1}, 0},
		{[]float64{1, 2, 3, 4, 5}, []float64{2, 1, 4, 3, 5}, 0.8},
		{[]float64{1, 1, 2}, []float64{1, 1, 2}, 1}, // ties share a rank
	} {
		if got := Spearman(tc.a, tc.b); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Spearman(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestModelTitle checks the modeled title: n chunks per rendition drawn
// from that rendition's measured chunks, audio and assembles scaled, and
// the farm's estimated order beating FIFO when the costly chunks come last.
func TestModelTitle(t *testing.T) {
	tasks := []TaskCost{{Name: "plan", Kind: "plan", CPUS: 0.1}, {Name: "audio", Kind: "audio", CPUS: 1}}
	for i, c := range []float64{1, 1, 8} {
		tasks = append(tasks, TaskCost{Name: "enc-hd-" + strconv.Itoa(i), Kind: "enc", Rendition: "hd", Chunk: i, CPUS: c, Estimate: c})
	}
	for i, c := range []float64{0.5, 0.5, 4} {
		tasks = append(tasks, TaskCost{Name: "enc-sd-" + strconv.Itoa(i), Kind: "enc", Rendition: "sd", Chunk: i, CPUS: c, Estimate: c})
	}
	tasks = append(tasks, TaskCost{Name: "asm-hd", Kind: "asm", Rendition: "hd", CPUS: 0.3}, TaskCost{Name: "asm-sd", Kind: "asm", Rendition: "sd", CPUS: 0.3})
	m := modelTitle(tasks, 30)
	count := map[string]int{}
	for _, tc := range m {
		count[tc.Kind+tc.Rendition]++
		switch {
		case tc.Kind == "enc" && tc.Rendition == "hd" && tc.CPUS != 1 && tc.CPUS != 8,
			tc.Kind == "enc" && tc.Rendition == "sd" && tc.CPUS != 0.5 && tc.CPUS != 4:
			t.Errorf("%s: cost %v not drawn from its rendition", tc.Name, tc.CPUS)
		case tc.Kind == "audio" && tc.CPUS != 10, tc.Kind == "asm" && math.Abs(tc.CPUS-3) > 1e-9:
			t.Errorf("%s: cost %v not scaled by 30/3", tc.Name, tc.CPUS)
		}
	}
	if count["enchd"] != 30 || count["encsd"] != 30 || count["asmhd"] != 1 || count["plan"] != 1 {
		t.Errorf("model tasks %v", count)
	}
	if again := modelTitle(tasks, 30); !reflect.DeepEqual(again, m) {
		t.Error("the modeled title is not the same from run to run (seeded draw)")
	}
	// The farm's order: audio and assembles first, chunks by estimate. On
	// two agents with the costly chunk of each rendition last, FIFO leaves
	// the two 8s for the end; the estimate starts them first.
	sim, est := farmGraph(tasks)
	var names []string
	for _, i := range est {
		names = append(names, tasks[i].Name)
	}
	if want := []string{"plan", "audio", "asm-hd", "asm-sd", "enc-hd-2", "enc-sd-2", "enc-hd-0", "enc-hd-1", "enc-sd-0", "enc-sd-1"}; !reflect.DeepEqual(names, want) {
		t.Errorf("farm order %v, want %v", names, want)
	}
	if e, f := ListSchedule(sim, 2, est), ListSchedule(sim, 2, FIFO(sim)); e >= f {
		t.Errorf("on 2 agents the estimated order takes %v, FIFO %v: want it faster", e, f)
	}
}

// TestTarget names a run by its file output, a chunk with a pre-roll by
// its output pattern, a decode-only run by its input.
func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", "file:in.mp4", "-f", "nut", "file:c.nut.part", "-map", "[e]", "-f", "null", "-"}, "c.nut.part"},
		{[]string{"-i", "file:in.mp4", "-f", "segment", "file:c.nut.part.%d", "-f", "null", "-"}, "c.nut.part"},
		{[]string{"-ss", "1", "-i", "file:in.mp4", "-f", "null", "-"}, "in.mp4"},
		{[]string{"-v", "error", "file:in.mp4"}, "in.mp4"},
	} {
		if got := target(tc.args); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, got, tc.want)
		}
	}
}
