// Package encode is the encoder benchmark of the chunked-encoding issue: the
// same ladder encoded plainly (one ffmpeg per rendition over the whole
// file) and through Banyan's chunked pipeline (PlanChunks, EncodeChunk per
// rendition and chunk on a local worker pool, EncodeAudio once, Assemble
// per rendition) on this machine, compared for wall time, CPU, quality and
// size, with the per-chunk costs projected onto larger farms.
package encode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/banyan-sched/banyan/encoder"
)

// Config is a benchmark run.
type Config struct {
	Input    string        // source clip; "" generates one
	Width    int           // generated source size
	Height   int           //
	Duration time.Duration // generated source length
	FPS      int           // generated source frame rate
	Content  string        // ContentMix or ContentTestsrc2
	GOP      time.Duration // generated source keyframe interval

	Ladder      string          // built-in name or file (forced to CPU)
	LadderValue *encoder.Ladder // overrides Ladder when set
	Chunk       encoder.ChunkOptions

	Workers      int  // chunk worker pool size (default GOMAXPROCS)
	ChunkThreads int  // encoder threads per chunk (default 1, as BuildGraph)
	PlainThreads int  // encoder threads per plain run (default Workers)
	Repeat       int  // timed runs of each pipeline (median reported)
	Reprobe      bool // every step probes the source itself (the farm reads the plan's saved probe)
	PerProcess   bool // per-process rusage through the accounting wrapper
	Index        bool // also time encoder.Index (HLS) over the chunked outputs

	WorkDir string    // "" for a temporary directory
	Keep    bool      // keep WorkDir
	Log     io.Writer // progress; nil for none
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Width == 0 {
		c.Width = 1280
	}
	if c.Height == 0 {
		c.Height = 720
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.FPS == 0 {
		c.FPS = 30
	}
	if c.Content == "" {
		c.Content = ContentMix
	}
	if c.GOP == 0 {
		c.GOP = 2 * time.Second
	}
	if c.Ladder == "" {
		c.Ladder = "demo"
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.ChunkThreads <= 0 {
		c.ChunkThreads = 1
	}
	if c.PlainThreads <= 0 {
		c.PlainThreads = c.Workers
	}
	if c.Repeat <= 0 {
		c.Repeat = 1
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.Defaults()
	logf := func(f string, a ...any) { fmt.Fprintf(cfg.Log, f+"\n", a...) }
	realFFmpeg, realFFprobe := encoder.FFmpeg, encoder.FFprobe
	if _, err := exec.LookPath(realFFmpeg); err != nil {
		return nil, fmt.Errorf("ffmpeg: %w", err)
	}
	if _, err := exec.LookPath(realFFprobe); err != nil {
		return nil, fmt.Errorf("ffprobe: %w", err)
	}

	dir := cfg.WorkDir
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "encodebench-"); err != nil {
			return nil, err
		}
		if !cfg.Keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}

	ladder, err := loadLadder(cfg)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Generated:  time.Now().UTC().Format(time.RFC3339),
		Machine:    Machine{OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), FFmpeg: ffmpegVersion(realFFmpeg)},
		Ladder:     LadderInfo{Name: ladder.Name, Renditions: ladder.Renditions},
		Workers:    cfg.Workers,
		Repeat:     cfg.Repeat,
		Reprobe:    cfg.Reprobe,
		PerProcess: cfg.PerProcess,
	}

	// The source.
	source := cfg.Input
	if source == "" {
		source = filepath.Join(dir, "source.mp4")
		gop := max(int(math.Round(cfg.GOP.Seconds()*float64(cfg.FPS))), 1)
		logf("generating %dx%d %v %s source (keyframe every %d frames)", cfg.Width, cfg.Height, cfg.Duration, cfg.Content, gop)
		if err := generateSource(ctx, realFFmpeg, source, cfg.Content, cfg.Width, cfg.Height, cfg.FPS, cfg.Duration, gop); err != nil {
			return nil, err
		}
		res.Source.Generated, res.Source.Content = true, cfg.Content
	} else if source, err = filepath.Abs(source); err != nil {
		return nil, err
	}
	src, err := encoder.Probe(ctx, source)
	if err != nil {
		return nil, err
	}
	res.Source.Width, res.Source.Height, res.Source.Frames = src.Width, src.Height, src.FrameCount
	res.Source.DurationS, res.Source.FrameRate = src.Duration.Seconds(), src.FrameRate.String()
	res.Source.Keyframes, res.Source.HasAudio = len(src.Keyframes), src.HasAudio
	if st, err := os.Stat(source); err == nil {
		res.Source.Bytes = st.Size()
	}
	chunks, err := encoder.PlanChunks(src, cfg.Chunk)
	if err != nil {
		return nil, err
	}
	for _, c := range chunks {
		key := 0
		for _, k := range src.Keyframes {
			if k <= c.StartFrame {
				key = max(key, k)
			}
		}
		res.Chunks = append(res.Chunks, ChunkInfo{Index: c.Index, StartFrame: c.StartFrame, Frames: c.Frames,
			DurationS: encoder.ChunkDuration(src, c).Seconds(), PrerollFrames: c.StartFrame - key})
	}
	logf("source: %dx%d, %d frames, %.2fs, %d keyframes, audio %v; %d chunks x %d renditions; %d workers",
		src.Width, src.Height, src.FrameCount, src.Duration.Seconds(), len(src.Keyframes), src.HasAudio, len(chunks), len(ladder.Renditions), cfg.Workers)
	warmCache(source)

	// Start-up costs, measured directly (not through the wrapper).
	res.Startup = measureStartup(ctx, realFFmpeg, realFFprobe, ladder, src, cfg.ChunkThreads)

	var acct *accounting
	if cfg.PerProcess {
		if acct, err = installWrapper(&encoder.FFmpeg, &encoder.FFprobe); err != nil {
			return nil, err
		}
		defer acct.close()
		res.Startup.WrapperOverheadS = math.Max(0, medianRun(ctx, 5, encoder.FFmpeg, trivialFFmpeg())-res.Startup.FFmpegWallS)
	}
	logPath := func(name string) string {
		if acct == nil {
			return ""
		}
		return acct.startLog(name)
	}

	modes := []PlainMode{{Name: "sequential", Threads: cfg.PlainThreads}, {Name: "parallel", Threads: cfg.PlainThreads}}
	var plainRecs [2][]Record
	var plainOut [2]map[string]string
	var lastChunked *chunkedRun
	var chunkRecs []Record
	for rep := 0; rep < cfg.Repeat; rep++ {
		for mi := range modes {
			m := &modes[mi]
			pdir := filepath.Join(dir, fmt.Sprintf("rep%d", rep), "plain-"+m.Name)
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				return nil, err
			}
			lp := logPath(fmt.Sprintf("plain-%s-%d", m.Name, rep))
			pr, err := runPlain(ctx, src, source, ladder, pdir, m.Name == "parallel", m.Threads)
			if err != nil {
				return nil, fmt.Errorf("plain %s: %w", m.Name, err)
			}
			m.WallSamples = append(m.WallSamples, pr.wall)
			m.CPUSamples = append(m.CPUSamples, pr.cpu)
			m.ForeignCPUSamples = append(m.ForeignCPUSamples, pr.foreign)
			plainOut[mi] = pr.outputs
			if lp != "" {
				if plainRecs[mi], err = readLog(lp); err != nil {
					return nil, err
				}
			}
			logf("rep %d plain %-10s wall %6.2fs cpu %6.2fs (other processes %.2fs)", rep+1, m.Name, pr.wall, pr.cpu, pr.foreign)
		}
		cdir := filepath.Join(dir, fmt.Sprintf("rep%d", rep), "chunked")
		lp := logPath(fmt.Sprintf("chunked-%d", rep))
		cr, err := runChunked(ctx, &cfg, source, ladder, cdir)
		if err != nil {
			return nil, fmt.Errorf("chunked: %w", err)
		}
		res.Chunked.WallSamples = append(res.Chunked.WallSamples, cr.wall)
		res.Chunked.CPUSamples = append(res.Chunked.CPUSamples, cr.cpu)
		res.Chunked.ForeignCPUSamples = append(res.Chunked.ForeignCPUSamples, cr.foreign)
		lastChunked = cr
		if lp != "" {
			if chunkRecs, err = readLog(lp); err != nil {
				return nil, err
			}
		}
		logf("rep %d chunked (%s order) wall %6.2fs cpu %6.2fs (other processes %.2fs)", rep+1, cr.order, cr.wall, cr.cpu, cr.foreign)
	}

	// Plain: pick the baseline.
	for mi := range modes {
		m := &modes[mi]
		m.WallS, m.CPUS = median(m.WallSamples), median(m.CPUSamples)
		m.PerRenditionCPUS = map[string]float64{}
		for _, r := range plainRecs[mi] {
			m.FFmpegCPUS += r.CPU()
			for _, rd := range ladder.Renditions {
				if r.Target == plainOut[mi][rd.Name] {
					m.PerRenditionCPUS[rd.Name] += r.CPU()
				}
			}
		}
	}
	base := 0
	if modes[1].WallS < modes[0].WallS {
		base = 1
	}
	res.Plain = PlainResult{Modes: modes, Baseline: modes[base].Name, WallS: modes[base].WallS, CPUS: modes[base].CPUS,
		Why: "the faster of the two plain modes on this machine (the stronger baseline an operator would pick)"}

	// Chunked.
	cr := lastChunked
	ch := &res.Chunked
	ch.Threads, ch.Order = cfg.ChunkThreads, cr.order
	ch.WallS, ch.CPUS = median(ch.WallSamples), median(ch.CPUSamples)
	ch.PlanS = cr.planEnd
	lastChunkEnd := 0.0
	jobWall := map[string]float64{}
	for _, j := range cr.jobs {
		jobWall[j.Name] = j.EndS - j.StartS
		if strings.HasPrefix(j.Name, "enc-") {
			lastChunkEnd = max(lastChunkEnd, j.EndS)
		}
	}
	ch.TailS = cr.wall - lastChunkEnd
	ch.Timeline = cr.jobs
	ch.Processes = len(chunkRecs)
	ch.Tasks = attribute(cr, ladder, source, chunkRecs)
	for i := range ch.Tasks {
		ch.Tasks[i].WallS = jobWall[ch.Tasks[i].Name]
		if ch.Tasks[i].Name == "plan" {
			ch.Tasks[i].WallS = cr.planEnd
		}
		if !cfg.PerProcess && ch.Tasks[i].CPUS == 0 {
			ch.Tasks[i].CPUS = ch.Tasks[i].WallS // no per-process rusage: wall as the cost
		}
	}
	res.WallRatio = ch.WallS / res.Plain.WallS
	res.CPURatio = ch.CPUS / res.Plain.CPUS

	// Overheads.
	ov := &res.Overhead
	var sumRec, ovWall float64
	for _, t := range ch.Tasks {
		switch t.Kind {
		case "enc":
			ov.EncodeCPUS += t.EncodeS
		case "asm":
			ov.AssembleCPUS += t.EncodeS
		case "audio":
			ov.AudioCPUS += t.EncodeS
		}
		ov.SplitCPUS += t.ProbeS
		ov.IndexCPUS += t.CountS
	}
	for _, r := range chunkRecs {
		sumRec += r.CPU()
		if r.Tool == "ffprobe" || strings.HasSuffix(r.Target, ".mp4.part") {
			ovWall += r.WallS
		}
	}
	lastCPU := ch.CPUSamples[len(ch.CPUSamples)-1]
	if cfg.PerProcess {
		ov.WrapperCPUS = math.Max(0, lastCPU-sumRec)
	}
	if lastCPU > 0 {
		ov.Share = (ov.SplitCPUS + ov.IndexCPUS + ov.AssembleCPUS) / lastCPU
	}
	ov.WallShare = ovWall / (float64(cfg.Workers) * cr.wall)
	if pc := modes[base].FFmpegCPUS; pc > 0 {
		ov.EncodeVsPlain = ov.EncodeCPUS / pc
	}
	ov.ChunkedSlotS = float64(cfg.Workers) * ch.WallS
	ov.ChunkedIdleS = ov.ChunkedSlotS - ch.CPUS
	ov.PlainSlotS = float64(cfg.Workers) * res.Plain.WallS
	ov.PlainIdleS = ov.PlainSlotS - res.Plain.CPUS
	res.Startup.ExtraEncodeProcs = (len(chunks) - 1) * len(ladder.Renditions)
	var initSum float64
	for _, v := range res.Startup.X264InitCPUS {
		initSum += v
	}
	if n := len(res.Startup.X264InitCPUS); n > 0 {
		res.Startup.ExtraStartupCPUS = float64(len(chunks)-1) * (initSum + float64(n)*res.Startup.FFmpegCPUS)
	}

	// Projection from the measured task costs.
	res.Projection = project(ch.Tasks, cfg.Workers)

	// Quality and size.
	logf("comparing outputs (PSNR/SSIM against the scaled source)")
	if res.Renditions, err = compareOutputs(ctx, cfg.Workers, realFFprobe, source, src, ladder, plainOut[base], cr.outputs); err != nil {
		return nil, err
	}
	var tp, tc int64
	for _, r := range res.Renditions {
		res.MaxPSNRDiffDB = max(res.MaxPSNRDiffDB, math.Abs(r.PSNRDiffDB))
		res.MaxSizeDiffPct = max(res.MaxSizeDiffPct, r.SizeDiffPct)
		tp += r.VideoBytesPlain
		tc += r.VideoBytesChunk
	}
	if tp > 0 {
		res.TotalSizeDiffPct = 100 * float64(tc-tp) / float64(tp)
	}

	if cfg.Index {
		var irs []encoder.IndexedRendition
		for _, rd := range ladder.Renditions {
			irs = append(irs, encoder.IndexedRendition{Name: rd.Name, Path: cr.outputs[rd.Name], Width: rd.Width, Height: rd.Height})
		}
		t := time.Now()
		if err := encoder.Index(ctx, encoder.IndexJob{Renditions: irs, OutDir: filepath.Join(dir, "hls")}); err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		res.HLSIndexS = time.Since(t).Seconds()
	}

	res.Targets = Targets{
		WallRatioMax: TargetWallRatio, WallRatioMet: res.WallRatio <= TargetWallRatio,
		PSNRDiffMaxDB: TargetPSNRDiffDB, PSNRMet: res.MaxPSNRDiffDB <= TargetPSNRDiffDB,
		SizeDiffMaxPct: TargetSizeDiffPct, SizeMet: res.MaxSizeDiffPct <= TargetSizeDiffPct,
	}
	res.Notes = explain(res)
	return res, nil
}

func loadLadder(cfg Config) (*encoder.Ladder, error) {
	l := cfg.LadderValue
	if l == nil {
		var err error
		if l, err = encoder.LoadLadder(cfg.Ladder); err != nil {
			return nil, err
		}
	}
	cp := *l
	cp.Renditions = append([]encoder.Rendition(nil), l.Renditions...)
	cp.Policy, cp.GPUWait = encoder.PolicyCPUOnly, 0 // forced to CPU
	if err := encoder.ValidateLadder(&cp); err != nil {
		return nil, err
	}
	return &cp, nil
}

// attribute turns the chunked run's process records into per-task costs.
// Probes of the source made by the steps themselves (Reprobe) cannot be
// told apart (same arguments), so each probing task gets an equal share.
func attribute(cr *chunkedRun, ladder *encoder.Ladder, source string, recs []Record) []TaskCost {
	var tasks []TaskCost
	idx := map[string]int{}
	add := func(t TaskCost) {
		idx[t.Name] = len(tasks)
		tasks = append(tasks, t)
	}
	add(TaskCost{Name: "plan", Kind: "plan", Chunk: -1})
	if cr.audio != "" {
		add(TaskCost{Name: "audio", Kind: "audio", Chunk: -1})
	}
	costs := encoder.NewCostModel(cr.src)
	for _, rd := range ladder.Renditions {
		for _, c := range cr.chunks {
			add(TaskCost{Name: "enc-" + rd.Name + "-" + strconv.Itoa(c.Index), Kind: "enc", Rendition: rd.Name, Chunk: c.Index,
				Estimate: costs.Chunk(c, rd)})
		}
	}
	asmOf := map[string]string{}
	for _, rd := range ladder.Renditions {
		add(TaskCost{Name: "asm-" + rd.Name, Kind: "asm", Rendition: rd.Name, Chunk: -1})
		asmOf[cr.outputs[rd.Name]+".part"] = "asm-" + rd.Name
	}
	chunkAsm := map[string]string{}
	for f, name := range cr.chunkOut {
		// enc-<r>-<i>: the rendition is between the first and last dash.
		r := strings.TrimPrefix(name[:strings.LastIndex(name, "-")], "enc-")
		chunkAsm[f] = "asm-" + r
	}
	var planEndNS int64
	if len(recs) > 0 {
		// The plan step's probe is the earliest work of the run.
		first := recs[0].StartNS
		for _, r := range recs {
			first = min(first, r.StartNS)
		}
		planEndNS = first + int64(cr.planEnd*1e9)
	}
	var sharedProbe float64
	for _, r := range recs {
		c := r.CPU()
		var t *TaskCost
		switch {
		case r.Target == source && r.StartNS < planEndNS:
			t = &tasks[idx["plan"]]
			t.ProbeS += c
		case r.Target == source:
			sharedProbe += c
			continue
		case strings.HasSuffix(r.Target, ".part") && cr.chunkOut[strings.TrimSuffix(r.Target, ".part")] != "":
			t = &tasks[idx[cr.chunkOut[strings.TrimSuffix(r.Target, ".part")]]]
			if r.Tool == "ffprobe" {
				t.CountS += c
			} else {
				t.EncodeS += c
			}
		case chunkAsm[r.Target] != "":
			t = &tasks[idx[chunkAsm[r.Target]]]
			t.CountS += c
		case asmOf[r.Target] != "":
			t = &tasks[idx[asmOf[r.Target]]]
			t.EncodeS += c
		case cr.audio != "" && r.Target == cr.audio+".part":
			t = &tasks[idx["audio"]]
			t.EncodeS += c
		default:
			continue
		}
		t.Procs++
	}
	if sharedProbe > 0 {
		n := len(tasks) - 1 // every task but plan probes
		for i := range tasks {
			if tasks[i].Kind != "plan" {
				tasks[i].ProbeS += sharedProbe / float64(n)
			}
		}
	}
	for i := range tasks {
		tasks[i].CPUS = tasks[i].EncodeS + tasks[i].CountS + tasks[i].ProbeS
	}
	return tasks
}

// modelChunks is the modeled title's chunks per rendition: the model
// system's 31.
const modelChunks = 31

// project builds the farm's task graph (plan; audio and chunks after plan;
// assemble after its chunks and audio) from measured costs and list-
// schedules it on this machine's worker count (a contention-free estimate
// of the local chunked wall) and on 8, 31 and 100 agents; then the same
// for a modeled title of modelChunks chunks per rendition.
func project(tasks []TaskCost, workers int) Projection {
	p := Projection{ModelChunks: modelChunks}
	for _, t := range tasks {
		p.TotalCPUS += t.CPUS
		if t.Kind == "enc" {
			p.LargestChunkS = max(p.LargestChunkS, t.CPUS)
		}
	}
	// Within each rendition: across renditions resolution alone would
	// make the estimate look good.
	rends, chunks := chunksByRendition(tasks)
	for i, r := range rends {
		var est, got []float64
		for _, t := range chunks[r] {
			est, got = append(est, t.Estimate), append(got, t.CPUS)
		}
		if rho := Spearman(est, got); i == 0 || rho < p.EstimateRankCorrelation {
			p.EstimateRankCorrelation = rho
		}
	}
	sim, estOrder := farmGraph(tasks)
	p.CriticalPathS = CriticalPath(sim)
	for _, n := range []int{workers, 8, 31, 100} {
		p.Agents = append(p.Agents, AgentProjection{Agents: n, CostliestFirst: ListSchedule(sim, n, CostliestFirst(sim)),
			Estimated: ListSchedule(sim, n, estOrder), FIFO: ListSchedule(sim, n, FIFO(sim))})
	}
	model := modelTitle(tasks, modelChunks)
	msim, mest := farmGraph(model)
	for _, n := range []int{8, 31, 100} {
		p.Model = append(p.Model, AgentProjection{Agents: n, CostliestFirst: ListSchedule(msim, n, CostliestFirst(msim)),
			Estimated: ListSchedule(msim, n, mest), FIFO: ListSchedule(msim, n, FIFO(msim))})
	}
	return p
}

// farmGraph turns task costs (plan, audio, enc per rendition and chunk,
// asm per rendition) into the farm's graph, and returns with it the order
// the farm dispatches in (encoder.BuildGraph's): plan, audio and the
// assembles whenever they are ready, chunks by decreasing estimate.
func farmGraph(tasks []TaskCost) ([]SimTask, []int) {
	sim := make([]SimTask, len(tasks))
	pos := map[string]int{}
	for i, t := range tasks {
		pos[t.Name] = i
		sim[i] = SimTask{Name: t.Name, Cost: t.CPUS}
	}
	var first, encs []int
	for i, t := range tasks {
		switch t.Kind {
		case "audio", "enc":
			if pl, ok := pos["plan"]; ok {
				sim[i].Deps = []int{pl}
			}
		case "asm":
			for j, u := range tasks {
				if u.Kind == "audio" || (u.Kind == "enc" && u.Rendition == t.Rendition) {
					sim[i].Deps = append(sim[i].Deps, j)
				}
			}
		}
		if t.Kind == "enc" {
			encs = append(encs, i)
		} else {
			first = append(first, i)
		}
	}
	sort.SliceStable(encs, func(a, b int) bool { return tasks[encs[a]].Estimate > tasks[encs[b]].Estimate })
	return sim, append(first, encs...)
}

// chunksByRendition groups the enc tasks by rendition, renditions in the
// order they first appear.
func chunksByRendition(tasks []TaskCost) ([]string, map[string][]TaskCost) {
	var rends []string
	by := map[string][]TaskCost{}
	for _, t := range tasks {
		if t.Kind != "enc" {
			continue
		}
		if _, ok := by[t.Rendition]; !ok {
			rends = append(rends, t.Rendition)
		}
		by[t.Rendition] = append(by[t.Rendition], t)
	}
	return rends, by
}

// modelTitle is a title of n chunks per rendition, each drawn with a fixed
// seed from the measured chunks of its rendition (cost and estimate
// together); audio and assembles scale with the title's length.
func modelTitle(tasks []TaskCost, n int) []TaskCost {
	rng := rand.New(rand.NewPCG(31, 100))
	rends, byRend := chunksByRendition(tasks)
	srcChunks := 0
	for _, r := range rends {
		for _, t := range byRend[r] {
			srcChunks = max(srcChunks, t.Chunk+1)
		}
	}
	if srcChunks == 0 {
		return nil
	}
	scale := float64(n) / float64(srcChunks)
	var out []TaskCost
	for _, t := range tasks {
		if t.Kind == "plan" || t.Kind == "audio" {
			if t.Kind == "audio" {
				t.CPUS *= scale
			}
			out = append(out, t)
		}
	}
	for _, r := range rends {
		for i := 0; i < n; i++ {
			d := byRend[r][rng.IntN(len(byRend[r]))]
			d.Name, d.Chunk = "enc-"+r+"-"+strconv.Itoa(i), i
			out = append(out, d)
		}
	}
	for _, t := range tasks {
		if t.Kind == "asm" {
			t.CPUS *= scale
			out = append(out, t)
		}
	}
	return out
}

// compareOutputs measures PSNR/SSIM of both outputs of every rendition
// against the source scaled to it, and their video sizes and keyframes.
func compareOutputs(ctx context.Context, workers int, ffprobe, source string, src *encoder.Source, ladder *encoder.Ladder, plain, chunked map[string]string) ([]RenditionResult, error) {
	out := make([]RenditionResult, len(ladder.Renditions))
	type item struct {
		i       int
		chunked bool
	}
	var items []item
	for i, rd := range ladder.Renditions {
		out[i].Name = rd.Name
		items = append(items, item{i, false}, item{i, true})
	}
	errs := make([]error, len(items))
	perKey := make([]float64, len(out)) // chunked: mean keyframe - mean other frame bytes
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(workers, 1))
	for k, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rd := ladder.Renditions[it.i]
			path := plain[rd.Name]
			if it.chunked {
				path = chunked[rd.Name]
			}
			q, err := encoder.Compare(ctx, path, source, encoder.ReferenceFilter(src, rd))
			if err != nil {
				errs[k] = err
				return
			}
			ps, err := packetStats(ctx, ffprobe, path)
			if err != nil {
				errs[k] = err
				return
			}
			var fb int64
			if st, err := os.Stat(path); err == nil {
				fb = st.Size()
			}
			r := &out[it.i]
			if it.chunked {
				r.PSNRChunked, r.SSIMChunked, r.VideoBytesChunk, r.FileBytesChunked, r.KeyframesChunked = q.PSNR, q.SSIM, ps.bytes, fb, ps.keys
				perKey[it.i] = ps.keyMean - ps.otherMean
			} else {
				r.PSNRPlain, r.SSIMPlain, r.VideoBytesPlain, r.FileBytesPlain, r.KeyframesPlain = q.PSNR, q.SSIM, ps.bytes, fb, ps.keys
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i := range out {
		r := &out[i]
		r.PSNRDiffDB = r.PSNRChunked - r.PSNRPlain
		if r.VideoBytesPlain > 0 {
			r.SizeDiffPct = 100 * float64(r.VideoBytesChunk-r.VideoBytesPlain) / float64(r.VideoBytesPlain)
		}
		r.ExtraKeyframeBytes = int64(perKey[i] * float64(r.KeyframesChunked-r.KeyframesPlain))
	}
	return out, nil
}

type pktStats struct {
	bytes              int64
	keys               int
	keyMean, otherMean float64
}

// packetStats sums the video packet sizes and counts keyframe packets.
func packetStats(ctx context.Context, ffprobe, path string) (pktStats, error) {
	b, err := exec.CommandContext(ctx, ffprobe, "-hide_banner", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "packet=size,flags", "-of", "csv=p=0", "file:"+path).Output()
	if err != nil {
		return pktStats{}, fmt.Errorf("packets of %s: %w", path, err)
	}
	var s pktStats
	var keyBytes, otherBytes int64
	others := 0
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(strings.TrimSpace(l), ",")
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		s.bytes += n
		if strings.Contains(f[1], "K") {
			s.keys++
			keyBytes += n
		} else {
			others++
			otherBytes += n
		}
	}
	if s.keys > 0 {
		s.keyMean = float64(keyBytes) / float64(s.keys)
	}
	if others > 0 {
		s.otherMean = float64(otherBytes) / float64(others)
	}
	return s, nil
}

func trivialFFmpeg() []string {
	return []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:r=1:d=1",
		"-frames:v", "1", "-f", "null", "-"}
}

// runOnce runs a tool and returns its wall and user+sys seconds.
func runOnce(ctx context.Context, tool string, args []string) (wall, cpu float64, err error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	var e bytes.Buffer
	cmd.Stderr = &e
	t := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v: %s", tool, err, strings.TrimSpace(e.String()))
	}
	wall = time.Since(t).Seconds()
	cpu = cmd.ProcessState.UserTime().Seconds() + cmd.ProcessState.SystemTime().Seconds()
	return wall, cpu, nil
}

// medianRun is the median wall of n runs (0 on error).
func medianRun(ctx context.Context, n int, tool string, args []string) float64 {
	var w []float64
	for i := 0; i < n; i++ {
		wall, _, err := runOnce(ctx, tool, args)
		if err != nil {
			return 0
		}
		w = append(w, wall)
	}
	return median(w)
}

func medianRunCPU(ctx context.Context, n int, tool string, args []string) (wall, cpu float64) {
	var w, c []float64
	for i := 0; i < n; i++ {
		wa, cp, err := runOnce(ctx, tool, args)
		if err != nil {
			return 0, 0
		}
		w, c = append(w, wa), append(c, cp)
	}
	return median(w), median(c)
}

// measureStartup times trivial ffmpeg/ffprobe runs and each rendition's
// encoder start-up (a one-frame encode with its arguments).
func measureStartup(ctx context.Context, ffmpeg, ffprobe string, ladder *encoder.Ladder, src *encoder.Source, threads int) Startup {
	var s Startup
	s.FFmpegWallS, s.FFmpegCPUS = medianRunCPU(ctx, 5, ffmpeg, trivialFFmpeg())
	s.FFprobeWallS, s.FFprobeCPUS = medianRunCPU(ctx, 5, ffprobe, []string{"-hide_banner", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:r=1:d=1"})
	s.X264InitCPUS = map[string]float64{}
	for _, rd := range ladder.Renditions {
		b, err := encoder.BackendFor(rd.Codec, false)
		if err != nil {
			continue
		}
		r := rd
		if r.GOP == 0 {
			r.GOP = encoder.GOPFrames(src)
		}
		a := []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error", "-f", "lavfi", "-i",
			"color=c=gray:s=" + strconv.Itoa(rd.Width) + "x" + strconv.Itoa(rd.Height) + ":r=30:d=1", "-frames:v", "1"}
		a = append(a, b.Args(r, threads)...)
		a = append(a, "-f", "null", "-")
		_, c := medianRunCPU(ctx, 3, ffmpeg, a)
		s.X264InitCPUS[rd.Name] = math.Max(0, c-s.FFmpegCPUS)
	}
	return s
}

// warmCache reads the source once so that no timed run pays the disk.
func warmCache(path string) {
	if f, err := os.Open(path); err == nil {
		_, _ = io.Copy(io.Discard, f)
		f.Close()
	}
}

func ffmpegVersion(ffmpeg string) string {
	b, err := exec.Command(ffmpeg, "-hide_banner", "-version").Output()
	if err != nil {
		return ""
	}
	l := strings.SplitN(string(b), "\n", 2)[0]
	if f := strings.Fields(l); len(f) >= 3 {
		return f[2]
	}
	return l
}
