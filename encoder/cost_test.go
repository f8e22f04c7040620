package encoder

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestChunkCost(t *testing.T) {
	src := &Source{Width: 1920, Height: 1080, FrameBytes: make([]int32, 300)}
	for i := range src.FrameBytes {
		src.FrameBytes[i] = 1000
		if i >= 200 {
			src.FrameBytes[i] = 4000 // the last third is four times as complex
		}
	}
	easy := Chunk{Index: 0, StartFrame: 0, Frames: 100}
	hard := Chunk{Index: 2, StartFrame: 200, Frames: 100}
	r1080 := Rendition{Name: "1080p", Width: 1920, Height: 1080, Codec: "h264"}
	r360 := Rendition{Name: "360p", Width: 640, Height: 360, Codec: "h264"}
	hevc := Rendition{Name: "hevc", Width: 640, Height: 360, Codec: "hevc"}
	for _, tc := range []struct {
		name            string
		cheaper, dearer float64
	}{
		{"complex content costs more", ChunkCost(src, easy, r1080), ChunkCost(src, hard, r1080)},
		{"more pixels cost more", ChunkCost(src, easy, r360), ChunkCost(src, easy, r1080)},
		{"hevc costs more than h264", ChunkCost(src, easy, r360), ChunkCost(src, easy, hevc)},
		{"more frames cost more", ChunkCost(src, Chunk{StartFrame: 0, Frames: 50}, r360), ChunkCost(src, easy, r360)},
	} {
		if !(tc.cheaper < tc.dearer) {
			t.Errorf("%s: %v is not below %v", tc.name, tc.cheaper, tc.dearer)
		}
	}
	// Title mean is 2000 bytes per frame: the easy chunk is half of it, the
	// hard one twice, so the encode part of their costs is 1:4.
	srcPart := 100 * float64(1920*1080) / 3
	if e, h := ChunkCost(src, easy, r1080)-srcPart, ChunkCost(src, hard, r1080)-srcPart; h/e < 3.99 || h/e > 4.01 {
		t.Errorf("encode cost ratio hard/easy = %v, want 4", h/e)
	}
	// Without frame sizes every frame counts the same.
	plain := &Source{Width: 1920, Height: 1080}
	if a, b := ChunkCost(plain, easy, r1080), ChunkCost(plain, hard, r1080); a != b {
		t.Errorf("without sizes chunks of equal length cost %v and %v", a, b)
	}
	if c := ChunkCost(src, Chunk{Frames: 0}, r1080); c != 0 {
		t.Errorf("empty chunk costs %v", c)
	}
	past := Chunk{StartFrame: 250, Frames: 100}
	if c, want := ChunkCost(src, past, r1080), ChunkCost(plain, past, r1080); c != want {
		t.Errorf("a chunk past the sizes' end costs %v, want the estimate without sizes %v", c, want)
	}
}

// TestBuildGraphCostliestFirst checks the order the scheduler will dispatch
// the chunks in: by decreasing ChunkCost, across renditions.
func TestBuildGraphCostliestFirst(t *testing.T) {
	o := graphFixture(PolicyCPUOnly, true)
	o.Src.Width, o.Src.Height = 1280, 720
	o.Src.FrameBytes = make([]int32, o.Src.FrameCount)
	for i := range o.Src.FrameBytes {
		o.Src.FrameBytes[i] = 500
		if i >= 600 {
			o.Src.FrameBytes[i] = 5000 // the last chunk is ten times as complex
		}
	}
	tasks, err := BuildGraph(o)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, tk := range tasks {
		if strings.HasPrefix(tk.Name, "enc-") {
			order = append(order, tk.Name)
		}
	}
	last := len(o.Chunks) - 1
	if len(order) != 2*len(o.Chunks) {
		t.Fatalf("%d chunk tasks, want %d", len(order), 2*len(o.Chunks))
	}
	if want := "enc-720p-" + strconv.Itoa(last); order[0] != want {
		t.Fatalf("first chunk dispatched is %s, want %s (the complex end of the title, largest rendition); order %v", order[0], want, order)
	}
	costs := map[string]float64{}
	for _, r := range o.Ladder.Renditions {
		for i, c := range o.Chunks {
			costs["enc-"+r.Name+"-"+strconv.Itoa(i)] = ChunkCost(o.Src, c, r)
		}
	}
	for i := 1; i < len(order); i++ {
		if costs[order[i]] > costs[order[i-1]] {
			t.Errorf("%s (cost %.0f) after the cheaper %s (%.0f)", order[i], costs[order[i]], order[i-1], costs[order[i-1]])
		}
	}
	var head []string
	for _, tk := range tasks[:3] {
		head = append(head, tk.Name)
	}
	if want := []string{"audio", "asm-720p", "asm-av1"}; !slices.Equal(head, want) {
		t.Errorf("graph starts %v, want %v (audio and the assembles before any chunk: they wait for chunks, then go first)", head, want)
	}
}
