package encoder

// Graph building for the scheduler's generic fan-out.
//
// The plan step prints JSON {"tasks":[...]} (see Plan) of GraphTask values,
// whose field names follow the scheduler's TaskSpec JSON (proto names):
//
//	{
//	  "name": "enc-720p-3",
//	  "command": ["@sched", "encoder", "encode-chunk", ...],
//	  "env": {"K": "V"},                         // omitted when empty
//	  "resources": {"cpu_millis": 1000, "memory_bytes": 536870912,
//	                "gpus": 0, "gpu_memory_bytes": 0, "nvenc": 0},
//	  "timeout_ms": 1800000,
//	  "retry": {"max_attempts": 3, "initial_backoff_ms": 2000},
//	  "after": ["audio"],                        // omitted when empty
//	  "fallback": { ...a GraphTask... },         // prefer-gpu chunks only
//	  "fallback_after_ms": 30000                 // prefer-gpu chunks only
//	}
//
// "@sched" (GraphOptions.Exe) is replaced by the agent with its own binary.
// Tasks, in the order of the list (the order in which the scheduler
// dispatches those that are ready):
//
//	audio          (only if the source has audio)
//	  @sched encoder encode-audio --source S --bitrate 128k --out O/audio/audio.m4a
//	asm-<r>        (after every enc-<r>-*, and audio)
//	  @sched encoder assemble --source S [--audio O/audio/audio.m4a]
//	         --out O/<r>/<r>.mp4 --chunk O/<r>/chunks/00000.nut --chunk-frames N --chunk ...
//	  (--chunk repeated, in order, each with its planned frame count, which
//	  the chunk step checked before it kept the file)
//	enc-<r>-<i>    (every rendition r, every chunk i; no "after"), costliest
//	               first by CostModel
//	  @sched encoder encode-chunk --source S --chunk-index I --chunk-start F
//	         --chunk-frames N --rendition-json '<Rendition JSON>' --gpu=<true|false>
//	         --threads T --out O/<r>/chunks/<IIIII>.nut
//	  CPU: cpu_millis 1000, memory 512 MiB, --threads 1.
//	  NVENC: nvenc 1, gpu_memory_bytes 512 MiB, cpu_millis 500, memory 512 MiB.
//	  Policy cpu-only: the CPU task; require-gpu: the GPU task only;
//	  prefer-gpu: the GPU task with fallback = the CPU task (named
//	  enc-<r>-<i>-cpu, same out path) and fallback_after_ms = the ladder's
//	  GPUWait. AV1 has no
//	  GPU backend and is always a CPU task under prefer-gpu.
//	index          (after every asm-*)
//	  @sched encoder index --out-dir O/hls --segment-seconds 4
//	         --rendition-json '<IndexedRendition JSON>' ...   (repeated)
//	verify         (after index)
//	  @sched encoder verify --source S --master O/hls/master.m3u8
//	         --out O --rendition-json '<IndexedRendition JSON>' ...   (repeated)
//	  writes O/verify.json (a Report) and exits non-zero unless Report.OK.
//
// The CLI maps these flags onto ChunkJob, AudioJob, AssembleJob, IndexJob
// and VerifyJob; the rendition JSON is Rendition's / IndexedRendition's
// JSON (ParseRenditionJSON, ParseIndexedRenditionJSON).

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// GraphResources is a task's resource ask (TaskSpec.resources).
type GraphResources struct {
	CPUMillis      int64 `json:"cpu_millis"`
	MemoryBytes    int64 `json:"memory_bytes"`
	GPUs           int64 `json:"gpus"`
	GPUMemoryBytes int64 `json:"gpu_memory_bytes"`
	NVENC          int64 `json:"nvenc"`
}

// GraphRetry is a task's retry policy (TaskSpec.retry).
type GraphRetry struct {
	MaxAttempts      int32 `json:"max_attempts"`
	InitialBackoffMs int64 `json:"initial_backoff_ms"`
}

// GraphTask is one task of the encode graph, in the scheduler's TaskSpec
// JSON shape (see the comment at the top of graph.go).
type GraphTask struct {
	Name            string            `json:"name"`
	Command         []string          `json:"command"`
	Env             map[string]string `json:"env,omitempty"`
	Resources       GraphResources    `json:"resources"`
	TimeoutMs       int64             `json:"timeout_ms,omitempty"`
	Retry           *GraphRetry       `json:"retry,omitempty"`
	After           []string          `json:"after,omitempty"`
	Fallback        *GraphTask        `json:"fallback,omitempty"`
	FallbackAfterMs int64             `json:"fallback_after_ms,omitempty"`
}

// Plan is the plan step's JSON result.
type Plan struct {
	Tasks []GraphTask `json:"tasks"`
}

// GraphOptions is what BuildGraph needs.
type GraphOptions struct {
	Source string
	OutDir string
	Src    *Source
	Chunks []Chunk
	Ladder *Ladder
	// Exe is the program name put first in every command; "@sched" (the
	// default) is replaced by the agent with its own binary.
	Exe string
	// SegmentSeconds for HLS (default 4); AudioBitrate (default 128k).
	SegmentSeconds float64
	AudioBitrate   string
	// ProbeFile, when set, is a saved probe of the source (WriteSource):
	// the chunk, audio and assemble steps get --probe FILE and read it
	// instead of probing the source again.
	ProbeFile string
}

// Resource asks of the graph's tasks.
const (
	MiB              = int64(1) << 20
	chunkMemory      = 512 * MiB
	chunkGPUMemory   = 512 * MiB
	cpuChunkMillis   = 1000
	gpuChunkMillis   = 500
	cpuChunkThreads  = 1
	joinMemory       = 1024 * MiB
	defaultTaskRetry = 3
)

// ChunkPath is where BuildGraph puts rendition r's chunk i.
func ChunkPath(outDir, r string, i int) string {
	return filepath.Join(outDir, r, "chunks", fmt.Sprintf("%05d.%s", i, ChunkExt))
}

// RenditionPath is where BuildGraph puts rendition r's assembled MP4.
func RenditionPath(outDir, r string) string { return filepath.Join(outDir, r, r+".mp4") }

// AudioPath is where BuildGraph puts the encoded audio.
func AudioPath(outDir string) string { return filepath.Join(outDir, "audio", "audio.m4a") }

// BuildGraph returns the tasks of one encode (see the comment at the top of
// graph.go). It is pure: no clock, no I/O.
func BuildGraph(o GraphOptions) ([]GraphTask, error) {
	if o.Src == nil || len(o.Src.FramePTS) == 0 {
		return nil, errors.New("graph: no probed source")
	}
	if err := validPath("source", o.Source); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	if err := validPath("out dir", o.OutDir); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	if err := ValidateLadder(o.Ladder); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	if len(o.Chunks) == 0 {
		return nil, errors.New("graph: no chunks")
	}
	next := 0
	for i, c := range o.Chunks {
		if c.Index != i || c.StartFrame != next || c.Frames <= 0 {
			return nil, fmt.Errorf("graph: chunk %d does not continue the plan at frame %d", i, next)
		}
		next += c.Frames
	}
	if next != len(o.Src.FramePTS) {
		return nil, fmt.Errorf("graph: chunks cover %d frames, source has %d", next, len(o.Src.FramePTS))
	}
	exe := o.Exe
	if exe == "" {
		exe = "@sched"
	}
	seg := o.SegmentSeconds
	if seg == 0 {
		seg = 4
	}
	abr := o.AudioBitrate
	if abr == "" {
		abr = DefaultAudioBitrate
	}
	if !bitrateRE().MatchString(abr) {
		return nil, fmt.Errorf("graph: bad audio bitrate %q", abr)
	}
	retry := &GraphRetry{MaxAttempts: defaultTaskRetry, InitialBackoffMs: 2000}
	// Timeouts scale with the work: generous multiples of real time.
	titleMs := o.Src.Duration.Milliseconds()
	var tasks []GraphTask
	var audioDep []string
	hasAudio := o.Src.HasAudio
	if hasAudio {
		tasks = append(tasks, GraphTask{
			Name: "audio",
			Command: withProbe([]string{exe, "encoder", "encode-audio", "--source", o.Source, "--bitrate", abr, "--out",
				AudioPath(o.OutDir)}, o.ProbeFile),
			Resources: GraphResources{CPUMillis: 1000, MemoryBytes: chunkMemory},
			TimeoutMs: max(10*time.Minute.Milliseconds(), 2*titleMs),
			Retry:     retry,
		})
		audioDep = []string{"audio"}
	}
	type costedTask struct {
		GraphTask
		cost float64
	}
	var encs []costedTask
	costs := NewCostModel(o.Src)
	var asmNames []string
	var asms []GraphTask
	var irs []IndexedRendition
	for _, r := range o.Ladder.Renditions {
		if r.GOP == 0 {
			r.GOP = GOPFrames(o.Src)
		}
		rj, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("graph: %w", err)
		}
		_, gpuErr := BackendFor(r.Codec, true)
		useGPU := o.Ladder.Policy != PolicyCPUOnly && gpuErr == nil
		var encNames, chunkFiles []string
		for i, c := range o.Chunks {
			name := "enc-" + r.Name + "-" + strconv.Itoa(i)
			out := ChunkPath(o.OutDir, r.Name, i)
			chunkMs := ticksToDuration(c.EndPTS-c.StartPTS, o.Src.TimeBase).Milliseconds()
			mk := func(gpu bool) GraphTask {
				cmd := []string{exe, "encoder", "encode-chunk", "--source", o.Source,
					"--chunk-index", strconv.Itoa(i), "--chunk-start", strconv.Itoa(c.StartFrame),
					"--chunk-frames", strconv.Itoa(c.Frames), "--rendition-json", string(rj),
					"--gpu=" + strconv.FormatBool(gpu), "--threads", strconv.Itoa(cpuChunkThreads), "--out", out}
				cmd = withProbe(cmd, o.ProbeFile)
				t := GraphTask{Name: name, Command: cmd, Retry: retry,
					TimeoutMs: max(15*time.Minute.Milliseconds(), 100*chunkMs)}
				if gpu {
					t.Resources = GraphResources{CPUMillis: gpuChunkMillis, MemoryBytes: chunkMemory, GPUMemoryBytes: chunkGPUMemory, NVENC: 1}
				} else {
					t.Resources = GraphResources{CPUMillis: cpuChunkMillis, MemoryBytes: chunkMemory}
				}
				return t
			}
			var t GraphTask
			switch {
			case !useGPU:
				t = mk(false)
			case o.Ladder.Policy == PolicyRequireGPU:
				t = mk(true)
			default: // prefer-gpu
				t = mk(true)
				fb := mk(false)
				fb.Name = name + "-cpu" // a task's fallback needs a name of its own
				t.Fallback = &fb
				t.FallbackAfterMs = o.Ladder.GPUWait.Milliseconds()
			}
			encs = append(encs, costedTask{t, costs.Chunk(c, r)})
			encNames = append(encNames, name)
			chunkFiles = append(chunkFiles, out)
		}
		asm := "asm-" + r.Name
		rout := RenditionPath(o.OutDir, r.Name)
		cmd := withProbe([]string{exe, "encoder", "assemble", "--source", o.Source}, o.ProbeFile)
		if hasAudio {
			cmd = append(cmd, "--audio", AudioPath(o.OutDir))
		}
		cmd = append(cmd, "--out", rout)
		for i, f := range chunkFiles {
			cmd = append(cmd, "--chunk", f, "--chunk-frames", strconv.Itoa(o.Chunks[i].Frames))
		}
		asms = append(asms, GraphTask{Name: asm, Command: cmd,
			Resources: GraphResources{CPUMillis: 500, MemoryBytes: joinMemory},
			TimeoutMs: max(10*time.Minute.Milliseconds(), titleMs), Retry: retry,
			After: append(encNames, audioDep...)})
		asmNames = append(asmNames, asm)
		irs = append(irs, IndexedRendition{Name: r.Name, Path: rout, Width: r.Width, Height: r.Height})
	}
	// The scheduler dispatches a job's ready tasks in the order they were
	// added: each assemble as soon as its inputs are done (it is on the
	// critical path and cheap), then the costliest chunks first, so the
	// longest ones do not start last.
	tasks = append(tasks, asms...)
	sort.SliceStable(encs, func(a, b int) bool { return encs[a].cost > encs[b].cost })
	for _, e := range encs {
		tasks = append(tasks, e.GraphTask)
	}
	hlsDir := filepath.Join(o.OutDir, "hls")
	idx := []string{exe, "encoder", "index", "--out-dir", hlsDir, "--segment-seconds", strconv.FormatFloat(seg, 'f', -1, 64)}
	ver := []string{exe, "encoder", "verify", "--source", o.Source, "--master", filepath.Join(hlsDir, MasterPlaylist), "--out", o.OutDir}
	for _, ir := range irs {
		b, err := json.Marshal(ir)
		if err != nil {
			return nil, fmt.Errorf("graph: %w", err)
		}
		idx = append(idx, "--rendition-json", string(b))
		ver = append(ver, "--rendition-json", string(b))
	}
	tasks = append(tasks,
		GraphTask{Name: "index", Command: idx, Resources: GraphResources{CPUMillis: 500, MemoryBytes: joinMemory},
			TimeoutMs: max(10*time.Minute.Milliseconds(), titleMs), Retry: retry, After: asmNames},
		GraphTask{Name: "verify", Command: ver, Resources: GraphResources{CPUMillis: 1000, MemoryBytes: joinMemory},
			TimeoutMs: max(20*time.Minute.Milliseconds(), 10*titleMs*int64(len(irs))), Retry: retry, After: []string{"index"}})
	return tasks, nil
}

// VerifyReportFile is the name of the report the verify step writes in its
// --out directory.
const VerifyReportFile = "verify.json"

// ParseRenditionJSON decodes and validates a --rendition-json value of the
// encode-chunk step (unknown fields are errors).
func ParseRenditionJSON(s string) (Rendition, error) {
	var r Rendition
	if err := strictJSON(s, &r); err != nil {
		return r, fmt.Errorf("rendition json: %w", err)
	}
	if err := ValidateRendition(r); err != nil {
		return r, err
	}
	return r, nil
}

// ParseIndexedRenditionJSON decodes a --rendition-json value of the index
// and verify steps (unknown fields are errors).
func ParseIndexedRenditionJSON(s string) (IndexedRendition, error) {
	var r IndexedRendition
	if err := strictJSON(s, &r); err != nil {
		return r, fmt.Errorf("indexed rendition json: %w", err)
	}
	if !nameRE().MatchString(r.Name) {
		return r, fmt.Errorf("indexed rendition: bad name %q", r.Name)
	}
	if err := validPath("rendition", r.Path); err != nil {
		return r, err
	}
	return r, nil
}

// withProbe adds --probe FILE to a step's command when the graph has one.
func withProbe(cmd []string, probeFile string) []string {
	if probeFile == "" {
		return cmd
	}
	return append(cmd, "--probe", probeFile)
}
