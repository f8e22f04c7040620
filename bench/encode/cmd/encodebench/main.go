// Command encodebench runs the encoder benchmark of the chunked-encoding
// issue (package bench/encode): a ladder encoded plainly and through
// Banyan's chunked pipeline on this machine. It prints tables and writes
// JSON.
//
//	go run ./bench/encode/cmd/encodebench                      # 720p 30 s mix, demo ladder
//	go run ./bench/encode/cmd/encodebench -input clip.mp4 -ladder default -repeat 3
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/banyan-sched/banyan/bench/encode"
	"github.com/banyan-sched/banyan/encoder"
)

func main() {
	encode.MaybeRunWrapper()
	var cfg encode.Config
	var size, out string
	var quiet bool
	flag.StringVar(&cfg.Input, "input", "", "source clip (default: generate one)")
	flag.StringVar(&size, "size", "1280x720", "generated source size WxH")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "generated source length")
	flag.IntVar(&cfg.FPS, "fps", 30, "generated source frame rate")
	flag.StringVar(&cfg.Content, "content", encode.ContentMix, "generated content: mix (testsrc2, mandelbrot, life, noise) or testsrc2")
	flag.DurationVar(&cfg.GOP, "source-gop", 2*time.Second, "generated source keyframe interval")
	flag.StringVar(&cfg.Ladder, "ladder", "demo", "ladder: built-in name ("+strings.Join(encoder.BuiltinLadders(), ", ")+") or file; forced to CPU")
	flag.DurationVar(&cfg.Chunk.Target, "chunk-target", 0, "chunk target length (default encoder's 10s)")
	flag.DurationVar(&cfg.Chunk.Min, "chunk-min", 0, "chunk minimum length (default encoder's)")
	flag.DurationVar(&cfg.Chunk.Max, "chunk-max", 0, "chunk maximum length (default encoder's)")
	flag.IntVar(&cfg.Workers, "workers", 0, "chunk worker pool (default GOMAXPROCS)")
	flag.IntVar(&cfg.ChunkThreads, "chunk-threads", 1, "encoder threads per chunk (the graph uses 1)")
	flag.IntVar(&cfg.PlainThreads, "plain-threads", 0, "encoder threads per plain run (default workers)")
	flag.IntVar(&cfg.Repeat, "repeat", 1, "timed runs of each pipeline; medians are reported")
	flag.BoolVar(&cfg.Reprobe, "reprobe", false, "every step probes the source itself (the farm's steps read the plan step's saved probe instead)")
	flag.BoolVar(&cfg.PerProcess, "per-process", true, "per-process rusage through an accounting wrapper (needed for per-chunk costs)")
	flag.BoolVar(&cfg.Index, "index", true, "also time HLS indexing of the chunked outputs (not in the ratio)")
	flag.StringVar(&cfg.WorkDir, "work", "", "work directory (default: a temporary one, removed)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the temporary work directory")
	flag.StringVar(&out, "out", filepath.Join("bench", "results", "encode.json"), "JSON result file")
	flag.BoolVar(&quiet, "q", false, "no progress lines")
	flag.Parse()
	w, h, err := parseSize(size)
	if err != nil {
		fatal(err)
	}
	cfg.Width, cfg.Height = w, h
	if !quiet {
		cfg.Log = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := encode.Run(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	encode.WriteTable(os.Stdout, res)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", out)
}

func parseSize(s string) (int, int, error) {
	a, b, ok := strings.Cut(strings.ToLower(s), "x")
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 {
		return 0, 0, fmt.Errorf("bad -size %q (want even WxH, e.g. 1280x720)", s)
	}
	return w, h, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "encodebench:", err)
	os.Exit(1)
}
