package encode

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// explain writes the findings: targets met or missed, and where the
// chunked run's extra time goes, in seconds of wall (CPU-seconds / workers)
// and as a share of the plain wall time.
func explain(r *Result) []string {
	var n []string
	w := float64(r.Workers)
	pw := r.Plain.WallS
	pct := func(s float64) float64 { return 100 * s / pw }
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	n = append(n, fmt.Sprintf("wall: chunked %.2fs vs plain (%s) %.2fs = %.3fx, target <= %.2fx: %s%s",
		r.Chunked.WallS, r.Plain.Baseline, pw, r.WallRatio, TargetWallRatio, verdict(r.Targets.WallRatioMet),
		missBy(r.WallRatio, TargetWallRatio, pw)))
	n = append(n, fmt.Sprintf("quality: max |PSNR diff| %.3f dB, target <= %.1f dB: %s", r.MaxPSNRDiffDB, TargetPSNRDiffDB, verdict(r.Targets.PSNRMet)))
	n = append(n, fmt.Sprintf("size: max video size diff %+.2f%% (all renditions %+.2f%%), target <= %.0f%%: %s",
		r.MaxSizeDiffPct, r.TotalSizeDiffPct, TargetSizeDiffPct, verdict(r.Targets.SizeMet)))

	var foreign, ours float64
	for _, m := range r.Plain.Modes {
		for i, f := range m.ForeignCPUSamples {
			foreign += f
			ours += m.CPUSamples[i]
		}
	}
	for i, f := range r.Chunked.ForeignCPUSamples {
		foreign += f
		ours += r.Chunked.CPUSamples[i]
	}
	if ours > 0 && foreign > 0.05*ours {
		n = append(n, fmt.Sprintf("WARNING: other processes used %.1f CPU-s during the timed runs (%.0f%% of ours): the machine was not quiet, walls are skewed (see foreign_cpu_samples_s)", foreign, 100*foreign/ours))
	}
	ov := r.Overhead
	var plainFF float64
	for _, m := range r.Plain.Modes {
		if m.Name == r.Plain.Baseline {
			plainFF = m.FFmpegCPUS
		}
	}
	if r.PerProcess {
		encDiff := ov.EncodeCPUS - plainFF
		n = append(n, fmt.Sprintf("slot time (%d workers x wall): chunked %.2fs = %.2f CPU + %.2f idle; plain %.2fs = %.2f CPU + %.2f idle",
			r.Workers, ov.ChunkedSlotS, r.Chunked.CPUS, ov.ChunkedIdleS, ov.PlainSlotS, r.Plain.CPUS, ov.PlainIdleS))
		n = append(n, fmt.Sprintf("where the chunked run's extra time goes (CPU-s -> wall-s at %d workers, %% of plain wall): "+
			"encode vs plain encode %+.2f -> %+.2fs (%+.1f%%); split/probe %.2f -> %.2fs (%.1f%%); index/count %.2f -> %.2fs (%.1f%%); "+
			"assemble %.2f -> %.2fs (%.1f%%); audio %.2f -> %.2fs (%.1f%%, the plain baseline encodes no audio); "+
			"accounting wrappers %.2f -> %.2fs (%.1f%%); idle difference %+.2f -> %+.2fs (%+.1f%%)",
			r.Workers,
			encDiff, encDiff/w, pct(encDiff/w),
			ov.SplitCPUS, ov.SplitCPUS/w, pct(ov.SplitCPUS/w),
			ov.IndexCPUS, ov.IndexCPUS/w, pct(ov.IndexCPUS/w),
			ov.AssembleCPUS, ov.AssembleCPUS/w, pct(ov.AssembleCPUS/w),
			ov.AudioCPUS, ov.AudioCPUS/w, pct(ov.AudioCPUS/w),
			ov.WrapperCPUS, ov.WrapperCPUS/w, pct(ov.WrapperCPUS/w),
			ov.ChunkedIdleS-ov.PlainIdleS, (ov.ChunkedIdleS-ov.PlainIdleS)/w, pct((ov.ChunkedIdleS-ov.PlainIdleS)/w)))
		n = append(n, fmt.Sprintf("split+assemble+index: %.1f%% of the chunked CPU, %.1f%% of its slot time", 100*ov.Share, 100*ov.WallShare))
	}
	st := r.Startup
	var inits []string
	keys := make([]string, 0, len(st.X264InitCPUS))
	for k := range st.X264InitCPUS {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		inits = append(inits, fmt.Sprintf("%s %.0fms", k, 1000*st.X264InitCPUS[k]))
	}
	n = append(n, fmt.Sprintf("start-up: trivial ffmpeg %.0fms wall / %.0fms CPU, ffprobe %.0fms / %.0fms, encoder open+1 frame: %s; "+
		"%d extra encoding processes -> ~%.2f CPU-s = %.2fs wall (%.1f%% of plain wall); accounting wrapper adds ~%.1fms wall per process",
		1000*st.FFmpegWallS, 1000*st.FFmpegCPUS, 1000*st.FFprobeWallS, 1000*st.FFprobeCPUS, strings.Join(inits, ", "),
		st.ExtraEncodeProcs, st.ExtraStartupCPUS, st.ExtraStartupCPUS/w, pct(st.ExtraStartupCPUS/w), 1000*st.WrapperOverheadS))
	var kf []string
	extraBytes, plainBytes := int64(0), int64(0)
	for _, rr := range r.Renditions {
		kf = append(kf, fmt.Sprintf("%s %d->%d", rr.Name, rr.KeyframesPlain, rr.KeyframesChunked))
		extraBytes += rr.ExtraKeyframeBytes
		plainBytes += rr.VideoBytesPlain
	}
	pre := 0
	for _, c := range r.Chunks {
		pre += c.PrerollFrames
	}
	kfShare := 0.0
	if plainBytes > 0 {
		kfShare = 100 * float64(extraBytes) / float64(plainBytes)
	}
	n = append(n, fmt.Sprintf("keyframes (plain->chunked): %s; extra keyframes cost ~%d bytes (%.2f%% of plain video); preroll (frames decoded before a chunk's start, per rendition): %d",
		strings.Join(kf, ", "), extraBytes, kfShare, pre))
	if r.Chunked.TailS > 0 || r.Chunked.PlanS > 0 {
		n = append(n, fmt.Sprintf("serial parts of the chunked run: plan (probe) %.2fs before the first task, %.2fs after the last chunk (assemble tail)",
			r.Chunked.PlanS, r.Chunked.TailS))
	}
	if pj := r.Projection; len(pj.Model) > 0 {
		var parts []string
		for _, a := range pj.Model {
			parts = append(parts, fmt.Sprintf("%d agents %.1fs estimated-first vs %.1fs FIFO (ideal %.1fs)", a.Agents, a.Estimated, a.FIFO, a.CostliestFirst))
		}
		n = append(n, fmt.Sprintf("dispatch order: encoder.ChunkCost ranks each rendition's chunks with Spearman %.2f or better against their measured CPU; on a modeled %d-chunk title: %s",
			pj.EstimateRankCorrelation, pj.ModelChunks, strings.Join(parts, ", ")))
	}
	if !r.Targets.WallRatioMet {
		n = append(n, "to close the gap: "+strings.Join(closers(r), "; "))
	}
	if r.HLSIndexS > 0 {
		n = append(n, fmt.Sprintf("HLS index (encoder.Index) of the chunked outputs took %.2fs more; not in the ratio (the plain baseline packages nothing either)", r.HLSIndexS))
	}
	return n
}

func missBy(ratio, target, plain float64) string {
	if ratio <= target {
		return ""
	}
	return fmt.Sprintf(" by %.1f points (%.2fs over %.2fx plain)", 100*(ratio-target), (ratio-target)*plain, target)
}

// closers lists the changes that would remove the measured overheads,
// largest first.
func closers(r *Result) []string {
	w := float64(r.Workers)
	ov := r.Overhead
	type c struct {
		s    float64
		text string
	}
	var cs []c
	if r.Reprobe && ov.SplitCPUS > 0 {
		cs = append(cs, c{ov.SplitCPUS / w, fmt.Sprintf("run without -reprobe: the farm's steps read the plan step's saved probe instead of probing the source again (%.2fs wall here)", ov.SplitCPUS/w)})
	}
	if ov.IndexCPUS > 0 {
		cs = append(cs, c{ov.IndexCPUS / w, fmt.Sprintf("count packets once (EncodeChunk's check) and let Assemble reuse the counts instead of re-running ffprobe per chunk (%.2fs wall)", ov.IndexCPUS/w)})
	}
	if ov.AudioCPUS > 0 {
		cs = append(cs, c{ov.AudioCPUS / w, fmt.Sprintf("compare like for like: the plain baseline has no audio (%.2fs wall of the gap is the audio encode)", ov.AudioCPUS/w)})
	}
	if st := r.Startup; st.ExtraStartupCPUS > 0 {
		cs = append(cs, c{st.ExtraStartupCPUS / w, fmt.Sprintf("longer chunks, or several chunks per ffmpeg process, to pay start-up fewer times (%.2fs wall)", st.ExtraStartupCPUS/w)})
	}
	if d := (ov.ChunkedIdleS - ov.PlainIdleS) / w; d > 0 {
		cs = append(cs, c{d, fmt.Sprintf("less idle: smaller chunks near the end, or start assembling each rendition while others still encode (%.2fs wall idle more than plain)", d)})
	}
	if ov.WrapperCPUS > 0 {
		cs = append(cs, c{ov.WrapperCPUS / w, fmt.Sprintf("run without -per-process (the accounting wrappers cost %.2fs wall)", ov.WrapperCPUS/w)})
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].s > cs[b].s })
	var out []string
	for _, x := range cs {
		out = append(out, x.text)
	}
	if len(out) == 0 {
		out = append(out, "no single overhead stands out; see the slot-time split")
	}
	return out
}

// WriteTable prints the result as tables.
func WriteTable(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "source %dx%d %.1fs %s, %d frames, ladder %s (CPU), %d chunks, %d workers, %d repeat(s), ffmpeg %s\n\n",
		r.Source.Width, r.Source.Height, r.Source.DurationS, r.Source.Content, r.Source.Frames, r.Ladder.Name, len(r.Chunks), r.Workers, r.Repeat, r.Machine.FFmpeg)
	fmt.Fprintln(tw, "run\tthreads\twall s\tCPU s\twall samples\t")
	for _, m := range r.Plain.Modes {
		name := "plain " + m.Name
		if m.Name == r.Plain.Baseline {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%s\t\n", name, m.Threads, m.WallS, m.CPUS, floats(m.WallSamples))
	}
	fmt.Fprintf(tw, "chunked (%s order)\t%d\t%.2f\t%.2f\t%s\t\n", r.Chunked.Order, r.Chunked.Threads, r.Chunked.WallS, r.Chunked.CPUS, floats(r.Chunked.WallSamples))
	fmt.Fprintf(tw, "ratio chunked/plain*\t\t%.3f\t%.3f\t\t\n", r.WallRatio, r.CPURatio)
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "rendition\tPSNR plain\tPSNR chunked\tdiff dB\tvideo KB plain\tchunked\tsize diff %\tkeyframes\t")
	for _, rr := range r.Renditions {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%+.3f\t%.1f\t%.1f\t%+.2f\t%d->%d\t\n", rr.Name, rr.PSNRPlain, rr.PSNRChunked, rr.PSNRDiffDB,
			float64(rr.VideoBytesPlain)/1024, float64(rr.VideoBytesChunk)/1024, rr.SizeDiffPct, rr.KeyframesPlain, rr.KeyframesChunked)
	}
	tw.Flush()
	fmt.Fprintln(w)
	ov := r.Overhead
	fmt.Fprintln(tw, "chunked CPU-s\tencode\tsplit\tindex\tassemble\taudio\twrapper\tsplit+asm+index share\tslot share\t")
	fmt.Fprintf(tw, "\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f%%\t%.1f%%\t\n", ov.EncodeCPUS, ov.SplitCPUS, ov.IndexCPUS,
		ov.AssembleCPUS, ov.AudioCPUS, ov.WrapperCPUS, 100*ov.Share, 100*ov.WallShare)
	tw.Flush()
	fmt.Fprintln(w)
	p := r.Projection
	fmt.Fprintf(w, "projection from measured task CPU (total %.2fs, largest chunk %.2fs, critical path plan+chunk+assemble %.2fs):\n",
		p.TotalCPUS, p.LargestChunkS, p.CriticalPathS)
	fmt.Fprintln(tw, "agents\testimated first s (farm)\tcostliest first s (ideal)\tFIFO s\t")
	for _, a := range p.Agents {
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t\n", a.Agents, a.Estimated, a.CostliestFirst, a.FIFO)
	}
	tw.Flush()
	fmt.Fprintf(w, "modeled title of %d chunks per rendition (drawn from the measured chunks; estimate rank correlation within a rendition >= %.2f):\n",
		p.ModelChunks, p.EstimateRankCorrelation)
	for _, a := range p.Model {
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t\n", a.Agents, a.Estimated, a.CostliestFirst, a.FIFO)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, s := range r.Notes {
		fmt.Fprintln(w, "- "+s)
	}
}

func floats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}
