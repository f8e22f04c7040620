package encoder_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/encoder"
	"github.com/banyan-sched/banyan/encoder/corpus"
)

// corpusLadder is what every corpus source is encoded to: one small H.264
// rung (boxes are fitted to each source) and, for sources with more than 8
// bits, HEVC and AV1 rungs too (10-bit, HDR kept).
func corpusLadder(e corpus.Entry) *encoder.Ladder {
	l := &encoder.Ladder{Name: "corpus", Policy: encoder.PolicyCPUOnly, Renditions: []encoder.Rendition{
		{Name: "avc", Width: 426, Height: 240, Codec: "h264", CRF: 23, Preset: "veryfast"},
	}}
	if e.TenBit || e.HDR10 {
		l.Renditions = append(l.Renditions,
			encoder.Rendition{Name: "hevc", Width: 426, Height: 240, Codec: "hevc", CRF: 28, Preset: "veryfast"},
			encoder.Rendition{Name: "av1", Width: 426, Height: 240, Codec: "av1", CRF: 40, Preset: "10"})
	}
	return l
}

// buildCorpus builds (or reuses) the corpus in its cache directory.
func buildCorpus(t *testing.T) []corpus.Entry {
	t.Helper()
	es, err := corpus.BuildCached(context.Background())
	if err != nil {
		t.Fatalf("build corpus: %v", err)
	}
	return es
}

// TestCorpus runs every corpus source through the encoder's steps as the
// farm runs them (plan, chunks from the saved probe, audio, assemble) and
// checks every rendition frame by frame against the source and a
// whole-file encode (CheckConformance). Bad inputs must fail at the plan
// or at a chunk, with a class that is not retried, quickly.
func TestCorpus(t *testing.T) {
	for _, p := range []string{encoder.FFmpeg, encoder.FFprobe} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is required (make test installs it): %v", p, err)
		}
	}
	for _, e := range buildCorpus(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			if !e.Valid {
				checkRefused(t, e)
				return
			}
			encodeEntry(t, e)
		})
	}
}

// checkRefused: a bad input fails its plan or its chunks with ErrBadInput
// or ErrDecode within 10 s, and says why.
func checkRefused(t *testing.T, e corpus.Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out := t.TempDir()
	_, _, err := encoder.PlanEncode(ctx, e.File, "test", out, encoder.ChunkOptions{Target: time.Second, Min: 500 * time.Millisecond, Max: 2 * time.Second})
	if err == nil {
		// The container read clean: the damage must show in the chunks.
		src, rerr := encoder.ReadSource(encoder.SourcePath(out), e.File)
		if rerr != nil {
			t.Fatal(rerr)
		}
		err = encodeAllChunks(ctx, e.File, src, out)
	}
	took := time.Since(start)
	if err == nil {
		t.Fatalf("%s (%s) was encoded", e.Name, e.BadReason)
	}
	if !errors.Is(err, encoder.ErrBadInput) && !errors.Is(err, encoder.ErrDecode) {
		t.Fatalf("%s: error of no permanent class: %v", e.Name, err)
	}
	if took > 10*time.Second {
		t.Errorf("%s refused after %v", e.Name, took)
	}
	t.Logf("%s refused in %v: %v", e.Name, took.Round(time.Millisecond), err)
}

// encodeAllChunks encodes every chunk of src, in order, at a small size.
func encodeAllChunks(ctx context.Context, source string, src *encoder.Source, out string) error {
	chunks, err := encoder.PlanChunks(src, encoder.ChunkOptions{Target: time.Second, Min: 500 * time.Millisecond, Max: 2 * time.Second})
	if err != nil {
		return err
	}
	r := encoder.Rendition{Name: "r", Width: 160, Height: 120, Codec: "h264", CRF: 30, Preset: "ultrafast"}
	for _, c := range chunks {
		if err := encoder.EncodeChunk(ctx, encoder.ChunkJob{Source: source, Src: src, Chunk: c, Rendition: r,
			Out: filepath.Join(out, fmt.Sprintf("c%d.nut", c.Index))}); err != nil {
			return err
		}
	}
	return nil
}

// corpusChunks: sources longer than 10 s (real recordings) get the farm's
// default chunks; shorter ones chunks of about two seconds but at least 48
// frames, so that they are cut at all, with chunks long enough for an
// encoder's rate control (lookahead, mbtree) to behave as in 10 s ones.
func corpusChunks(src *encoder.Source) encoder.ChunkOptions {
	if src.Duration > 10*time.Second {
		return encoder.ChunkOptions{}
	}
	target := 2 * time.Second
	if f := src.FrameRate.Float(); f > 0 {
		target = max(target, time.Duration(48/f*float64(time.Second)))
	}
	return encoder.ChunkOptions{Target: target, Min: target / 2, Max: 2 * target}
}

// encodeEntry encodes a valid source and checks it.
func encodeEntry(t *testing.T, e corpus.Entry) {
	ctx := context.Background()
	src, err := encoder.Probe(ctx, e.File)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if e.Frames > 0 && src.FrameCount != e.Frames {
		t.Errorf("probe: %d frames, the decoder presents %d", src.FrameCount, e.Frames)
	}
	if w, h := src.DisplaySize(); e.DisplayWidth > 0 && (w != e.DisplayWidth || h != e.DisplayHeight) {
		t.Errorf("display size %dx%d, want %dx%d", w, h, e.DisplayWidth, e.DisplayHeight)
	}
	if src.Interlaced() != e.Interlaced {
		t.Errorf("interlaced %v (field order %q), want %v", src.Interlaced(), src.FieldOrder, e.Interlaced)
	}
	if src.HDR10() != e.HDR10 {
		t.Errorf("HDR10 %v, want %v", src.HDR10(), e.HDR10)
	}
	if src.AudioTracks != e.AudioTracks {
		t.Errorf("%d audio tracks, want %d", src.AudioTracks, e.AudioTracks)
	}
	rends, notes := encoder.FitLadder(src, corpusLadder(e))
	t.Logf("%d frames, %d keyframes (%d clean), notes %q %q", src.FrameCount, len(src.Keyframes), len(src.CleanKeys), src.Notes, notes)
	chunks, err := encoder.PlanChunks(src, corpusChunks(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	probe := encoder.SourcePath(dir)
	if err := encoder.WriteSource(probe, src); err != nil {
		t.Fatal(err)
	}
	saved, err := encoder.ReadSource(probe, e.File)
	if err != nil {
		t.Fatal(err)
	}
	audio := encoder.AudioPath(dir)
	if err := encoder.EncodeAudio(ctx, encoder.AudioJob{Source: e.File, Src: saved, Out: audio}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rends {
		files := make([]string, len(chunks))
		errs := make([]error, len(chunks))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		for i, c := range chunks {
			files[i] = encoder.ChunkPath(dir, r.Name, i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				errs[i] = encoder.EncodeChunk(ctx, encoder.ChunkJob{Source: e.File, Src: saved, Chunk: c, Rendition: r, Threads: 1, Out: files[i]})
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		out := encoder.RenditionPath(dir, r.Name)
		if err := encoder.Assemble(ctx, encoder.AssembleJob{Chunks: files, Audio: audio, Src: saved, Out: out}); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		lim := encoder.DefaultConformLimits
		lim.ColdStarts = encoder.ColdStarts(src, chunks, r)
		c, err := encoder.CheckConformance(ctx, e.File, src, r, out, filepath.Join(dir, "whole"), lim)
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		t.Logf("%s %dx%d: %d chunks, PSNR %.2f (whole-file %.2f), worst frame %d %.2f dB worse, cold chunk starts up to %.2f dB worse",
			r.Name, r.Width, r.Height, len(chunks), c.ChunkedPSNR, c.Whole, c.WorstFrame, c.WorstFrameLoss, c.ColdStartLoss)
		for _, p := range c.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
	}
}
