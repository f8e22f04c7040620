package encode

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/banyan-sched/banyan/encoder"
)

// job is one task of the local chunked run.
type job struct {
	name, kind, rend string
	chunk            int
	prio             float64
	run              func(context.Context) error
}

// JobTiming is when a job of the local chunked run ran, in seconds from the
// start of the run.
type JobTiming struct {
	Name   string  `json:"name"`
	Worker int     `json:"worker"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
}

// chunkedRun is one timed run of Banyan's chunked pipeline.
type chunkedRun struct {
	wall, cpu float64
	foreign   float64 // CPU used by other processes meanwhile
	planEnd   float64 // seconds from start when the plan step finished
	src       *encoder.Source
	chunks    []encoder.Chunk
	jobs      []JobTiming
	outputs   map[string]string // rendition -> assembled mp4
	audio     string
	chunkOut  map[string]string // chunk file -> job name
	order     string
}

// runChunked runs plan (probe + PlanChunks), then a pool of workers over
// audio, every (rendition, chunk) and each rendition's Assemble as soon as
// its chunks and the audio are done. Priorities: audio first (every
// Assemble waits for it), assembles next (critical path), chunks costliest
// first by encoder.ChunkCost, the estimate the farm's graph is ordered by.
func runChunked(ctx context.Context, cfg *Config, source string, ladder *encoder.Ladder, dir string) (*chunkedRun, error) {
	r := &chunkedRun{outputs: map[string]string{}, chunkOut: map[string]string{}}
	cpu0, busy0 := childrenCPU(), systemBusyCPU()
	t0 := time.Now()
	src, err := encoder.Probe(ctx, source)
	if err != nil {
		return nil, err
	}
	chunks, err := encoder.PlanChunks(src, cfg.Chunk)
	if err != nil {
		return nil, err
	}
	r.src, r.chunks = src, chunks
	r.planEnd = time.Since(t0).Seconds()
	srcFor := func() *encoder.Source {
		if cfg.Reprobe {
			return nil // probed by the step itself, as `sched encoder ...` does
		}
		return src
	}
	var jobs []*job
	deps := map[string]int{} // asm job -> outstanding dependencies
	asmJobs := map[string]*job{}
	audio := ""
	if src.HasAudio {
		audio = encoder.AudioPath(dir)
		r.audio = audio
		jobs = append(jobs, &job{name: "audio", kind: "audio", prio: 1e30, run: func(ctx context.Context) error {
			return encoder.EncodeAudio(ctx, encoder.AudioJob{Source: source, Src: srcFor(), Out: audio})
		}})
	}
	r.order = "estimated (encoder.ChunkCost)"
	costs := encoder.NewCostModel(src)
	for _, rd := range ladder.Renditions {
		rd := rd
		var files []string
		var frames []int
		for _, c := range chunks {
			c := c
			name := "enc-" + rd.Name + "-" + strconv.Itoa(c.Index)
			out := encoder.ChunkPath(dir, rd.Name, c.Index)
			files, frames = append(files, out), append(frames, c.Frames)
			r.chunkOut[out] = name
			prio := costs.Chunk(c, rd)
			jobs = append(jobs, &job{name: name, kind: "enc", rend: rd.Name, chunk: c.Index, prio: prio,
				run: func(ctx context.Context) error {
					return encoder.EncodeChunk(ctx, encoder.ChunkJob{Source: source, Src: srcFor(), Chunk: c,
						Rendition: rd, Threads: cfg.ChunkThreads, Out: out})
				}})
		}
		out := encoder.RenditionPath(dir, rd.Name)
		r.outputs[rd.Name] = out
		name := "asm-" + rd.Name
		asmJobs[name] = &job{name: name, kind: "asm", rend: rd.Name, prio: 1e29, run: func(ctx context.Context) error {
			// As the farm's graph does: the plan's counts, checked by each chunk.
			return encoder.Assemble(ctx, encoder.AssembleJob{Chunks: files, Frames: frames, Audio: audio, Src: srcFor(), Source: source, Out: out})
		}}
		deps[name] = len(chunks)
		if audio != "" {
			deps[name]++
		}
	}
	ready := append([]*job(nil), jobs...)
	pending := len(jobs) + len(asmJobs)
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var firstErr error
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := func(j *job) {
		var names []string
		if j.kind == "audio" {
			for n := range asmJobs {
				names = append(names, n)
			}
			sort.Strings(names)
		} else if j.kind == "enc" {
			names = []string{"asm-" + j.rend}
		}
		for _, n := range names {
			deps[n]--
			if deps[n] == 0 {
				ready = append(ready, asmJobs[n])
			}
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				mu.Lock()
				for len(ready) == 0 && pending > 0 && firstErr == nil {
					cond.Wait()
				}
				if pending == 0 || firstErr != nil {
					mu.Unlock()
					return
				}
				best := 0
				for i, j := range ready {
					if j.prio > ready[best].prio {
						best = i
					}
				}
				j := ready[best]
				ready = append(ready[:best], ready[best+1:]...)
				mu.Unlock()
				s := time.Since(t0).Seconds()
				err := j.run(cctx)
				e := time.Since(t0).Seconds()
				mu.Lock()
				r.jobs = append(r.jobs, JobTiming{Name: j.name, Worker: w, StartS: s, EndS: e})
				pending--
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", j.name, err)
					cancel()
				}
				if err == nil {
					finished(j)
				}
				cond.Broadcast()
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	r.wall = time.Since(t0).Seconds()
	r.cpu = childrenCPU() - cpu0
	r.foreign = max(0, systemBusyCPU()-busy0-r.cpu)
	sort.Slice(r.jobs, func(a, b int) bool { return r.jobs[a].StartS < r.jobs[b].StartS })
	return r, nil
}

// plainRun is one timed plain run: one EncodeWhole per rendition.
type plainRun struct {
	wall, cpu float64
	foreign   float64
	outputs   map[string]string
}

// runPlain encodes every rendition over the whole file, one after another
// (parallel=false) or all at once.
func runPlain(ctx context.Context, src *encoder.Source, source string, ladder *encoder.Ladder, dir string, parallel bool, threads int) (*plainRun, error) {
	r := &plainRun{outputs: map[string]string{}}
	for _, rd := range ladder.Renditions {
		r.outputs[rd.Name] = filepath.Join(dir, rd.Name+".mp4")
	}
	cpu0, busy0 := childrenCPU(), systemBusyCPU()
	t0 := time.Now()
	enc := func(rd encoder.Rendition) error {
		return encoder.EncodeWhole(ctx, encoder.WholeJob{Source: source, Src: src, Rendition: rd, Threads: threads, Out: r.outputs[rd.Name]})
	}
	if parallel {
		errs := make([]error, len(ladder.Renditions))
		var wg sync.WaitGroup
		for i, rd := range ladder.Renditions {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = enc(rd) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	} else {
		for _, rd := range ladder.Renditions {
			if err := enc(rd); err != nil {
				return nil, err
			}
		}
	}
	r.wall = time.Since(t0).Seconds()
	r.cpu = childrenCPU() - cpu0
	r.foreign = max(0, systemBusyCPU()-busy0-r.cpu)
	return r, nil
}
