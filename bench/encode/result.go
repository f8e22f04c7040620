package encode

import "github.com/banyan-sched/banyan/encoder"

// Targets from the chunked-encoding issue.
const (
	TargetWallRatio   = 1.05 // chunked wall / plain wall, at most
	TargetPSNRDiffDB  = 0.2  // |PSNR chunked - PSNR plain|, at most
	TargetSizeDiffPct = 2.0  // chunked video bytes over plain, at most
)

// Result is what the benchmark writes as JSON.
type Result struct {
	Generated  string      `json:"generated"`
	Machine    Machine     `json:"machine"`
	Source     SourceInfo  `json:"source"`
	Ladder     LadderInfo  `json:"ladder"`
	Chunks     []ChunkInfo `json:"chunks"`
	Workers    int         `json:"workers"`
	Repeat     int         `json:"repeat"`
	Reprobe    bool        `json:"reprobe"`
	PerProcess bool        `json:"per_process_accounting"`

	Plain   PlainResult   `json:"plain"`
	Chunked ChunkedResult `json:"chunked"`

	WallRatio float64 `json:"wall_ratio"` // chunked / plain baseline
	CPURatio  float64 `json:"cpu_ratio"`  // chunked / plain baseline

	Renditions []RenditionResult `json:"renditions"`
	// Worst (largest) |PSNR difference| and size difference over renditions.
	MaxPSNRDiffDB    float64 `json:"max_abs_psnr_diff_db"`
	MaxSizeDiffPct   float64 `json:"max_size_diff_pct"`
	TotalSizeDiffPct float64 `json:"total_size_diff_pct"`

	Overhead   Overhead   `json:"overhead"`
	Startup    Startup    `json:"startup"`
	Projection Projection `json:"projection"`
	// HLSIndexS is encoder.Index over the chunked outputs, timed apart: the
	// plain baseline does no packaging either, so it is not in wall_ratio.
	HLSIndexS float64 `json:"hls_index_s"`

	Targets Targets  `json:"targets"`
	Notes   []string `json:"notes"`
}

// Machine describes where it ran.
type Machine struct {
	OS         string `json:"os"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
	FFmpeg     string `json:"ffmpeg"`
}

// SourceInfo describes the source clip.
type SourceInfo struct {
	Generated bool    `json:"generated"`
	Content   string  `json:"content,omitempty"`
	Width     int     `json:"width"`
	Height    int     `json:"height"`
	Frames    int     `json:"frames"`
	DurationS float64 `json:"duration_s"`
	FrameRate string  `json:"frame_rate"`
	Keyframes int     `json:"keyframes"`
	HasAudio  bool    `json:"has_audio"`
	Bytes     int64   `json:"bytes"`
}

// LadderInfo is the ladder used (forced to CPU).
type LadderInfo struct {
	Name       string              `json:"name"`
	Renditions []encoder.Rendition `json:"renditions"`
}

// ChunkInfo is one planned chunk.
type ChunkInfo struct {
	Index         int     `json:"index"`
	StartFrame    int     `json:"start_frame"`
	Frames        int     `json:"frames"`
	DurationS     float64 `json:"duration_s"`
	PrerollFrames int     `json:"preroll_frames"` // decoded before the chunk (from the keyframe at or before it)
}

// PlainMode is one way of running the plain encodes.
type PlainMode struct {
	Name        string    `json:"name"` // sequential or parallel
	Threads     int       `json:"threads"`
	WallS       float64   `json:"wall_s"` // median over repeats
	WallSamples []float64 `json:"wall_samples_s"`
	CPUS        float64   `json:"cpu_s"` // median, RUSAGE_CHILDREN delta
	CPUSamples  []float64 `json:"cpu_samples_s"`
	// ForeignCPUSamples is CPU other processes on the machine used during
	// each run (/proc/stat busy minus ours): contention that skews walls.
	ForeignCPUSamples []float64 `json:"foreign_cpu_samples_s"`
	// FFmpegCPUS is the ffmpeg processes' own user+sys (wait4), last repeat.
	FFmpegCPUS float64 `json:"ffmpeg_cpu_s"`
	// PerRenditionCPUS is each rendition's ffmpeg user+sys, last repeat.
	PerRenditionCPUS map[string]float64 `json:"per_rendition_cpu_s,omitempty"`
}

// PlainResult holds both plain modes and the one used as the baseline.
type PlainResult struct {
	Modes    []PlainMode `json:"modes"`
	Baseline string      `json:"baseline"`
	Why      string      `json:"why"`
	WallS    float64     `json:"wall_s"`
	CPUS     float64     `json:"cpu_s"`
}

// TaskCost is one task of the chunked run with its children's CPU.
type TaskCost struct {
	Name      string  `json:"name"`
	Kind      string  `json:"kind"` // plan, audio, enc, asm
	Rendition string  `json:"rendition,omitempty"`
	Chunk     int     `json:"chunk"`
	CPUS      float64 `json:"cpu_s"`        // all its processes
	EncodeS   float64 `json:"encode_cpu_s"` // the ffmpeg encode/mux itself
	CountS    float64 `json:"count_cpu_s"`  // ffprobe -count_packets
	ProbeS    float64 `json:"probe_cpu_s"`  // ffprobe of the source
	WallS     float64 `json:"wall_s"`       // as run locally (under contention)
	Procs     int     `json:"processes"`
	// Estimate is encoder.ChunkCost of an enc task (arbitrary unit): the
	// order the farm dispatches chunks in.
	Estimate float64 `json:"estimate,omitempty"`
}

// ChunkedResult is Banyan's chunked pipeline run locally.
type ChunkedResult struct {
	Threads           int         `json:"threads_per_chunk"`
	Order             string      `json:"order"` // of the last repeat: estimated or measured costs
	WallS             float64     `json:"wall_s"`
	WallSamples       []float64   `json:"wall_samples_s"`
	CPUS              float64     `json:"cpu_s"`
	CPUSamples        []float64   `json:"cpu_samples_s"`
	ForeignCPUSamples []float64   `json:"foreign_cpu_samples_s"`
	PlanS             float64     `json:"plan_s"`    // probe + PlanChunks before the first task
	TailS             float64     `json:"tail_s"`    // from the last chunk's end to the end
	Processes         int         `json:"processes"` // ffmpeg + ffprobe runs, last repeat
	Tasks             []TaskCost  `json:"tasks"`     // last repeat
	Timeline          []JobTiming `json:"timeline"`  // last repeat
}

// RenditionResult compares one rendition's two outputs.
type RenditionResult struct {
	Name             string  `json:"name"`
	PSNRPlain        float64 `json:"psnr_plain_db"`
	PSNRChunked      float64 `json:"psnr_chunked_db"`
	PSNRDiffDB       float64 `json:"psnr_diff_db"` // chunked - plain
	SSIMPlain        float64 `json:"ssim_plain"`
	SSIMChunked      float64 `json:"ssim_chunked"`
	VideoBytesPlain  int64   `json:"video_bytes_plain"`
	VideoBytesChunk  int64   `json:"video_bytes_chunked"`
	SizeDiffPct      float64 `json:"size_diff_pct"` // video bytes, chunked vs plain
	FileBytesPlain   int64   `json:"file_bytes_plain"`
	FileBytesChunked int64   `json:"file_bytes_chunked"` // includes the audio track
	KeyframesPlain   int     `json:"keyframes_plain"`
	KeyframesChunked int     `json:"keyframes_chunked"`
	// ExtraKeyframeBytes estimates what the extra keyframes cost: their
	// count times (mean keyframe size - mean other frame size).
	ExtraKeyframeBytes int64 `json:"extra_keyframe_bytes"`
}

// Overhead splits the chunked run's CPU (last repeat, per process).
type Overhead struct {
	EncodeCPUS   float64 `json:"encode_cpu_s"`   // chunk ffmpeg runs
	SplitCPUS    float64 `json:"split_cpu_s"`    // probes of the source (plan step and per task)
	IndexCPUS    float64 `json:"index_cpu_s"`    // ffprobe -count_packets (after each chunk and in assemble)
	AssembleCPUS float64 `json:"assemble_cpu_s"` // concat + mux ffmpeg
	AudioCPUS    float64 `json:"audio_cpu_s"`    // AAC once (the plain baseline has no audio)
	WrapperCPUS  float64 `json:"wrapper_cpu_s"`  // accounting wrappers (RUSAGE_CHILDREN - sum of processes)
	// Share is (split + index + assemble) / chunked CPU; WallShare is the
	// same processes' wall time over workers x wall.
	Share     float64 `json:"split_assemble_index_share"`
	WallShare float64 `json:"split_assemble_index_wall_share"`
	// EncodeVsPlain is chunk-encode CPU / plain ffmpeg CPU: start-up, extra
	// keyframes, preroll and threading differences together.
	EncodeVsPlain float64 `json:"encode_cpu_vs_plain"`
	// Slot-time (workers x wall) accounting, seconds.
	ChunkedSlotS float64 `json:"chunked_slot_s"`
	ChunkedIdleS float64 `json:"chunked_idle_s"`
	PlainSlotS   float64 `json:"plain_slot_s"`
	PlainIdleS   float64 `json:"plain_idle_s"`
}

// Startup is measured with trivial runs.
type Startup struct {
	FFmpegWallS  float64 `json:"ffmpeg_trivial_wall_s"`
	FFmpegCPUS   float64 `json:"ffmpeg_trivial_cpu_s"`
	FFprobeWallS float64 `json:"ffprobe_trivial_wall_s"`
	FFprobeCPUS  float64 `json:"ffprobe_trivial_cpu_s"`
	// X264InitCPUS: one-frame encode with each rendition's arguments minus
	// the trivial run (encoder open, lookahead, one frame).
	X264InitCPUS     map[string]float64 `json:"x264_init_cpu_s"`
	WrapperOverheadS float64            `json:"wrapper_overhead_wall_s"`
	// ExtraEncodeProcs is how many more encoding ffmpeg runs the chunked
	// pipeline makes than the plain one; ExtraStartupCPUS their start-up.
	ExtraEncodeProcs int     `json:"extra_encode_processes"`
	ExtraStartupCPUS float64 `json:"extra_startup_cpu_s"`
}

// AgentProjection is the projected wall time on a number of agents under
// three dispatch orders of the chunks: costliest first by the measured
// cost (the ideal, known only afterwards), costliest first by
// encoder.ChunkCost (what the farm does) and FIFO (rendition by rendition,
// chunk by chunk: a scheduler that knows nothing of cost).
type AgentProjection struct {
	Agents         int     `json:"agents"`
	CostliestFirst float64 `json:"costliest_first_s"`
	Estimated      float64 `json:"estimated_first_s"`
	FIFO           float64 `json:"fifo_s"`
}

// Projection is from the measured per-task CPU (one task per agent slot,
// single-threaded, at this machine's per-core speed).
type Projection struct {
	TotalCPUS     float64           `json:"total_cpu_s"`
	LargestChunkS float64           `json:"largest_chunk_s"`
	CriticalPathS float64           `json:"critical_path_s"` // plan + largest chunk + its assemble
	Agents        []AgentProjection `json:"agents"`
	// EstimateRankCorrelation is the lowest, over the renditions, of
	// Spearman's rank correlation between the rendition's chunks'
	// encoder.ChunkCost and their measured CPU (1: same order).
	EstimateRankCorrelation float64 `json:"estimate_rank_correlation"`
	// Model projects a longer title of ModelChunks chunks per rendition,
	// each drawn (seeded) from this run's measured chunks of the rendition
	// with its estimate: a 30 s source has too few chunks for the dispatch
	// order to matter on 8 or more agents.
	ModelChunks int               `json:"model_chunks_per_rendition"`
	Model       []AgentProjection `json:"model_agents"`
}

// Targets reports against the targets.
type Targets struct {
	WallRatioMax   float64 `json:"wall_ratio_max"`
	WallRatioMet   bool    `json:"wall_ratio_met"`
	PSNRDiffMaxDB  float64 `json:"psnr_diff_max_db"`
	PSNRMet        bool    `json:"psnr_met"`
	SizeDiffMaxPct float64 `json:"size_diff_max_pct"`
	SizeMet        bool    `json:"size_met"`
}
