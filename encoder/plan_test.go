package encoder

import (
	"math/rand"
	"testing"
	"time"
)

func synthSource(rng *rand.Rand, n int, vfr bool, keys []int) *Source {
	tb := Rational{1, 90000}
	pts := make([]int64, n)
	t := int64(rng.Intn(5000))
	for i := range pts {
		pts[i] = t
		step := int64(3000)
		if vfr {
			step = int64(1500 + rng.Intn(4000))
		}
		t += step
	}
	return &Source{TimeBase: tb, FramePTS: pts, EndPTS: t, FrameCount: n, Keyframes: keys, FrameRate: Rational{30, 1}}
}

func TestPlanChunksProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	opts := []ChunkOptions{{}, {Target: 2 * time.Second, Min: time.Second, Max: 3 * time.Second}, {Target: 6 * time.Second, Min: 3 * time.Second, Max: 7 * time.Second}, {Target: 5 * time.Second, Min: 5 * time.Second, Max: 10 * time.Second}}
	for iter := 0; iter < 2000; iter++ {
		n := 1 + rng.Intn(3000)
		var keys []int
		switch rng.Intn(4) {
		case 0: // only the first frame
			keys = []int{0}
		case 1: // regular GOP
			g := 1 + rng.Intn(400)
			for k := 0; k < n; k += g {
				keys = append(keys, k)
			}
		default: // random, unsorted, maybe with duplicates and out of range
			for k := 0; k < rng.Intn(60); k++ {
				keys = append(keys, rng.Intn(n+10))
			}
		}
		src := synthSource(rng, n, rng.Intn(2) == 0, keys)
		opt := opts[rng.Intn(len(opts))]
		chunks, err := PlanChunks(src, opt)
		if err != nil {
			t.Fatal(err)
		}
		o := opt.withDefaults()
		total := ChunkDuration(src, Chunk{StartPTS: src.FramePTS[0], EndPTS: src.EndPTS})
		covered := make([]int, n)
		next := 0
		for i, c := range chunks {
			if c.Index != i || c.StartFrame != next || c.Frames <= 0 {
				t.Fatalf("iter %d: chunk %d %+v does not continue at %d", iter, i, c, next)
			}
			for f := c.StartFrame; f < c.StartFrame+c.Frames; f++ {
				covered[f]++
			}
			next += c.Frames
			if c.StartPTS != src.FramePTS[c.StartFrame] {
				t.Fatalf("iter %d: chunk %d start pts", iter, i)
			}
			d := ChunkDuration(src, c)
			// Frame-granular bounds: cuts are at frames, so allow one
			// frame interval (at most 5500 ticks here) of slack.
			slack := 62 * time.Millisecond
			if d > o.Max+slack {
				t.Fatalf("iter %d: chunk %d is %v > max %v", iter, i, d, o.Max)
			}
			if total >= o.Min && d < o.Min-slack && !(len(chunks) == 1) {
				t.Fatalf("iter %d: chunk %d is %v < min %v (total %v, %d chunks)", iter, i, d, o.Min, total, len(chunks))
			}
		}
		if next != n {
			t.Fatalf("iter %d: chunks cover %d of %d frames", iter, next, n)
		}
		for f, c := range covered {
			if c != 1 {
				t.Fatalf("iter %d: frame %d covered %d times", iter, f, c)
			}
		}
		if chunks[len(chunks)-1].EndPTS != src.EndPTS {
			t.Fatalf("iter %d: last chunk ends at %d, source at %d", iter, chunks[len(chunks)-1].EndPTS, src.EndPTS)
		}
	}
}

func TestPlanChunksPrefersKeyframes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	// 60 s at 30 fps, keyframes every 2 s: cuts must land on keyframes near 10 s.
	var keys []int
	for k := 0; k < 1800; k += 60 {
		keys = append(keys, k)
	}
	src := synthSource(rng, 1800, false, keys)
	chunks, err := PlanChunks(src, ChunkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks[1:] {
		if c.StartFrame%60 != 0 {
			t.Errorf("chunk %d starts at non-keyframe %d", c.Index, c.StartFrame)
		}
	}
	if len(chunks) != 6 {
		t.Errorf("want 6 chunks of 10 s, got %d", len(chunks))
	}
}

func TestPlanChunksRejects(t *testing.T) {
	src := &Source{TimeBase: Rational{1, 30}, FramePTS: []int64{0, 1, 1}, EndPTS: 2}
	if _, err := PlanChunks(src, ChunkOptions{}); err == nil {
		t.Error("want error for repeated pts")
	}
	src = &Source{TimeBase: Rational{1, 30}, FramePTS: []int64{0, 1, 2}, EndPTS: 3}
	if _, err := PlanChunks(src, ChunkOptions{Target: time.Second, Min: 2 * time.Second}); err == nil {
		t.Error("want error for min > target")
	}
	if _, err := PlanChunks(&Source{TimeBase: Rational{1, 30}}, ChunkOptions{}); err == nil {
		t.Error("want error for no frames")
	}
}

// TestPlanChunksNoHeldFrameAtTheEnd: a frame held for seconds (a screen
// recording's still) never ends a chunk, so its encoder knows its
// duration.
func TestPlanChunksNoHeldFrameAtTheEnd(t *testing.T) {
	// 30 frames at 30 fps, frame 29 held 5 s, 30 more frames; keyframe at 30.
	var pts []int64
	for i := range 30 {
		pts = append(pts, int64(i*20))
	}
	for i := range 30 {
		pts = append(pts, int64(600+3000+i*20))
	}
	src := &Source{TimeBase: Rational{1, 600}, FramePTS: pts, EndPTS: pts[59] + 20, FrameCount: 60, Keyframes: []int{0, 30}, FrameRate: Rational{60, 7}}
	chunks, err := PlanChunks(src, ChunkOptions{Target: 2 * time.Second, Min: 800 * time.Millisecond, Max: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		last := c.StartFrame + c.Frames - 1
		if last < 59 && pts[last+1]-pts[last] > 4*20 {
			t.Errorf("chunk %d ends on held frame %d: %+v", c.Index, last, chunks)
		}
	}
}
