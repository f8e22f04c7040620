//go:build !schedthin

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/encoder"
	"github.com/banyan-sched/banyan/encoder/storage"
	"github.com/spf13/cobra"
)

// The `sched encoder` commands are the functions an encode job's tasks run
// on agents ("@sched encoder STEP ..."): each maps its flags onto one
// encoder step. They are plumbing, hidden from help.

// FailpointEnv, when set to a chunk index, makes the first attempt of that
// chunk's encode fail: tests use it to check a failed chunk retries alone.
const FailpointEnv = "BANYAN_FAILPOINT_CHUNK"

// StorageRootsEnv names the directories (separated by ':') that encoder
// steps may read and write; agents set it from their --storage-root flags.
const StorageRootsEnv = "BANYAN_STORAGE_ROOTS"

func newEncoderCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "encoder", Short: "Encoder steps run by agents (plumbing)", Hidden: true}
	cmd.AddCommand(newEncoderPlanCmd(), newEncodeChunkCmd(), newEncodeAudioCmd(), newAssembleCmd(),
		newIndexCmd(), newVerifyCmd())
	traceSteps(cmd)
	return cmd
}

// checkRoots resolves each path fully (links first, then "..", see
// encoder/storage), refuses any outside the storage roots named by
// $BANYAN_STORAGE_ROOTS, and replaces each path with its resolved form, so
// ffmpeg opens exactly the file that was checked. Empty paths (optional
// flags left unset) are skipped. Without storage roots every step is
// refused: agents must be started with --storage-root.
func checkRoots(paths ...*string) error {
	env := os.Getenv(StorageRootsEnv)
	if env == "" {
		return fmt.Errorf("%w: no storage roots: start the agent with --storage-root DIR (sched dev sets defaults)",
			encoder.ErrBadInput)
	}
	roots, err := storage.NewRoots(strings.Split(env, ":"))
	if err != nil {
		return fmt.Errorf("storage roots %s: %w", env, err)
	}
	for _, p := range paths {
		if *p == "" {
			continue
		}
		real, err := roots.Resolve(*p)
		if err != nil {
			return fmt.Errorf("%w: %w", encoder.ErrBadInput, err)
		}
		*p = real
	}
	return nil
}

// checkLadder checks a ladder given as a file like any other path; the
// built-in ladder names are not paths.
func checkLadder(ladder *string) error {
	if slices.Contains(encoder.BuiltinLadders(), *ladder) {
		return nil
	}
	return checkRoots(ladder)
}

// loadSource reads the plan step's saved probe when the task names one,
// else probes the source.
func loadSource(cmd *cobra.Command, source, probe string) (*encoder.Source, error) {
	if probe == "" {
		return encoder.Probe(cmd.Context(), source)
	}
	if err := checkRoots(&probe); err != nil {
		return nil, err
	}
	return encoder.ReadSource(probe, source)
}

func newEncoderPlanCmd() *cobra.Command {
	var source, ladder, out string
	var chunk time.Duration
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Probe a title, plan its chunks and write the encode graph to $BANYAN_RESULT",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoots(&source, &out); err != nil {
				return err
			}
			if err := checkLadder(&ladder); err != nil {
				return err
			}
			opt := encoder.ChunkOptions{Target: chunk}
			if chunk > 0 {
				opt.Min, opt.Max = chunk*2/5, chunk*2
			}
			plan, notes, err := encoder.PlanEncode(cmd.Context(), source, ladder, out, opt)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Println("note: " + n)
			}
			data, err := json.Marshal(plan)
			if err != nil {
				return fmt.Errorf("encode graph: %w", err)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("create output dir: %w", err)
			}
			dest := os.Getenv("BANYAN_RESULT")
			if dest == "" {
				_, err = os.Stdout.Write(append(data, '\n'))
				return err
			}
			fmt.Printf("planned %d tasks for %s\n", len(plan.Tasks), source)
			return os.WriteFile(dest, data, 0o644)
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "the title to encode")
	cmd.Flags().StringVar(&ladder, "ladder", "default", "ladder name or file")
	cmd.Flags().StringVar(&out, "out", "", "output directory of the title")
	cmd.Flags().DurationVar(&chunk, "chunk", 10*time.Second, "target chunk length")
	return cmd
}

func newEncodeChunkCmd() *cobra.Command {
	var source, rendition, out, probe string
	var index, start, frames, threads int
	var gpu bool
	cmd := &cobra.Command{
		Use:  "encode-chunk",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoots(&source, &out); err != nil {
				return err
			}
			if fp := os.Getenv(FailpointEnv); fp == fmt.Sprint(index) && os.Getenv("BANYAN_ATTEMPT") == "1" {
				return fmt.Errorf("failpoint %s=%s: chunk %d fails its first attempt", FailpointEnv, fp, index)
			}
			r, err := encoder.ParseRenditionJSON(rendition)
			if err != nil {
				return fmt.Errorf("%w: %w", encoder.ErrBadInput, err)
			}
			src, err := loadSource(cmd, source, probe)
			if err != nil {
				return err
			}
			c, err := encoder.ChunkFromFrames(src, index, start, frames)
			if err != nil {
				return fmt.Errorf("%w: %w", encoder.ErrBadInput, err)
			}
			// The GPU the agent granted (BANYAN_GPU_INDEX, pinned by
			// CUDA_VISIBLE_DEVICES) is the one NVENC encodes on.
			device := ""
			if gpu {
				if device, err = encoder.NVENCDevice(os.Getenv); err != nil {
					return fmt.Errorf("encode chunk %d: %w", index, err)
				}
			}
			return encoder.EncodeChunk(cmd.Context(), encoder.ChunkJob{Source: source, Src: src, Chunk: c,
				Rendition: r, GPU: gpu, GPUDevice: device, Threads: threads, Out: out})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&source, "source", "", "the title")
	fl.IntVar(&index, "chunk-index", 0, "chunk number")
	fl.IntVar(&start, "chunk-start", 0, "first frame")
	fl.IntVar(&frames, "chunk-frames", 0, "frame count")
	fl.StringVar(&rendition, "rendition-json", "", "the rendition, as JSON")
	fl.BoolVar(&gpu, "gpu", false, "encode with NVENC")
	fl.IntVar(&threads, "threads", 1, "encoder threads")
	fl.StringVar(&out, "out", "", "chunk file to write")
	fl.StringVar(&probe, "probe", "", "the plan step's saved probe of the source")
	return cmd
}

func newEncodeAudioCmd() *cobra.Command {
	var source, bitrate, out, probe string
	cmd := &cobra.Command{
		Use:  "encode-audio",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoots(&source, &out); err != nil {
				return err
			}
			src, err := loadSource(cmd, source, probe)
			if err != nil {
				return err
			}
			return encoder.EncodeAudio(cmd.Context(), encoder.AudioJob{Source: source, Src: src, Out: out, Bitrate: bitrate})
		},
	}
	cmd.Flags().StringVar(&probe, "probe", "", "the plan step's saved probe of the source")
	cmd.Flags().StringVar(&source, "source", "", "the title")
	cmd.Flags().StringVar(&bitrate, "bitrate", "", "AAC bitrate")
	cmd.Flags().StringVar(&out, "out", "", "audio file to write")
	return cmd
}

func newAssembleCmd() *cobra.Command {
	var source, audio, out, probe string
	var chunks []string
	var frames []int
	cmd := &cobra.Command{
		Use:  "assemble",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoots(&source, &out, &audio); err != nil {
				return err
			}
			for i := range chunks {
				if err := checkRoots(&chunks[i]); err != nil {
					return err
				}
			}
			src, err := loadSource(cmd, source, probe)
			if err != nil {
				return err
			}
			return encoder.Assemble(cmd.Context(), encoder.AssembleJob{Source: source, Src: src, Audio: audio, Chunks: chunks,
				Frames: frames, Out: out})
		},
	}
	cmd.Flags().StringVar(&probe, "probe", "", "the plan step's saved probe of the source")
	cmd.Flags().StringVar(&source, "source", "", "the title")
	cmd.Flags().StringVar(&audio, "audio", "", "encoded audio to mux")
	cmd.Flags().StringVar(&out, "out", "", "rendition file to write")
	cmd.Flags().StringArrayVar(&chunks, "chunk", nil, "chunk files, in order (repeated)")
	cmd.Flags().IntSliceVar(&frames, "chunk-frames", nil, "each chunk's planned frame count, in order (repeated; counted from the files when absent)")
	return cmd
}

func parseIndexed(list []string) ([]encoder.IndexedRendition, error) {
	out := make([]encoder.IndexedRendition, 0, len(list))
	for _, s := range list {
		r, err := encoder.ParseIndexedRenditionJSON(s)
		if err != nil {
			return nil, err
		}
		if err := checkRoots(&r.Path); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func newIndexCmd() *cobra.Command {
	var outDir string
	var seg float64
	var renditions []string
	cmd := &cobra.Command{
		Use:  "index",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoots(&outDir); err != nil {
				return err
			}
			rs, err := parseIndexed(renditions)
			if err != nil {
				return err
			}
			return encoder.Index(cmd.Context(), encoder.IndexJob{Renditions: rs, OutDir: outDir, SegmentSeconds: seg})
		},
	}
	cmd.Flags().StringVar(&outDir, "out-dir", "", "HLS output directory")
	cmd.Flags().Float64Var(&seg, "segment-seconds", 4, "segment length")
	cmd.Flags().StringArrayVar(&renditions, "rendition-json", nil, "a rendition to index, as JSON (repeated)")
	return cmd
}

func newVerifyCmd() *cobra.Command {
	var source, master, out string
	var renditions []string
	cmd := &cobra.Command{
		Use:  "verify",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRoots(&source, &master, &out); err != nil {
				return err
			}
			rs, err := parseIndexed(renditions)
			if err != nil {
				return err
			}
			rep, err := encoder.Verify(cmd.Context(), encoder.VerifyJob{Source: source, Master: master, Renditions: rs})
			if err != nil {
				return err
			}
			data, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return fmt.Errorf("verify report: %w", err)
			}
			if err := os.WriteFile(filepath.Join(out, encoder.VerifyReportFile), data, 0o644); err != nil {
				return fmt.Errorf("write verify report: %w", err)
			}
			for _, r := range rep.Renditions {
				fmt.Printf("%s: frames %d/%d, duration %s/%s, PSNR %.2f dB, SSIM %.4f, ok=%v %s\n", r.Name, r.Frames,
					r.SourceFrames, r.Duration, r.SourceDuration, r.PSNR, r.SSIM, r.OK, strings.Join(r.Problems, "; "))
			}
			if !rep.OK {
				var bad []string
				for _, r := range rep.Renditions {
					if !r.OK {
						bad = append(bad, r.Name+": "+strings.Join(r.Problems, "; "))
					}
				}
				return fmt.Errorf("%w: %s", encoder.ErrVerifyFailed, strings.Join(bad, " | "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "the title")
	cmd.Flags().StringVar(&master, "master", "", "HLS master playlist")
	cmd.Flags().StringVar(&out, "out", "", "title output directory (verify.json goes here)")
	cmd.Flags().StringArrayVar(&renditions, "rendition-json", nil, "a rendition to verify, as JSON (repeated)")
	return cmd
}

// encoderExitCode maps an encoder step's error to its exit code, the
// scheduler's failure classes (api/failure): bad input, damaged sources and
// failed verification are not retried, tool failures are, and an NVENC
// session limit hands the chunk to its fallback without using a retry. ok is false for
// errors of no class (exit 1, retried).
func encoderExitCode(err error) (code int, ok bool) {
	var te *encoder.ToolError
	switch {
	case errors.Is(err, encoder.ErrBadInput):
		return failure.ExitBadInput, true
	case errors.Is(err, encoder.ErrDecode):
		return failure.ExitDecodeError, true
	case errors.Is(err, encoder.ErrVerifyFailed):
		return failure.ExitVerificationFailed, true
	case errors.Is(err, encoder.ErrNVENCSessionLimit):
		return failure.ExitNVENCSessionLimit, true
	case errors.As(err, &te):
		return failure.ExitEncoderError, true
	}
	return 0, false
}
