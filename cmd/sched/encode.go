//go:build !schedthin

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/cmd/sched/jobfile"
	"github.com/banyan-sched/banyan/encoder"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// encodeFlags are the flags of `sched encode`.
type encodeFlags struct {
	pool, ladder, out, class, manifest string
	priority                           int32
	maxWait, chunk                     time.Duration
	noWatch                            bool
	giveUp                             time.Duration
}

// title is one input to encode, with everything resolved.
type title struct {
	name, input, ladder, out string
	priority                 int32
}

func newEncodeCmd(g *globals) *cobra.Command {
	f := &encodeFlags{}
	cmd := &cobra.Command{
		Use:   "encode INPUT... | --manifest FILE",
		Short: "Encode titles on the farm: split, encode chunks in parallel, assemble, index, verify",
		Long: `Encode one or more titles. Each becomes a job whose first task probes the
source and plans its chunks; its result fans the job out into one encode
task per chunk and rendition, an assemble per rendition, then index and
verify. Paths must be visible to the agents (a shared filesystem, or this
host under sched dev) and inside the agents' storage roots.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.giveUp <= 0 {
				return usageError{fmt.Sprintf("--give-up-after %s: want a positive duration", f.giveUp)}
			}
			titles, spec, err := f.titles(args)
			if err != nil {
				return err
			}
			specs := make([]*pb.JobSpec, len(titles))
			for i, t := range titles {
				specs[i] = encodeJob(t, spec, f.chunk)
			}
			c, err := dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			resp, err := c.jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: specs})
			cancel()
			if err != nil {
				return fmt.Errorf("submit encode: %w", err)
			}
			if g.output == "json" && f.noWatch {
				return printJSON(os.Stdout, resp)
			}
			ids := make([]string, len(resp.Jobs))
			for i, j := range resp.Jobs {
				ids[i] = j.Id
				if g.output != "json" {
					fmt.Printf("%s\t%s -> %s\n", j.Id, titles[i].input, titles[i].out)
				}
			}
			if f.noWatch {
				return nil
			}
			return watchEncodes(cmd.Context(), c, g, ids, titles, f.giveUp)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.pool, "pool", "", "pool to run in (default: the default pool)")
	fl.StringVar(&f.ladder, "ladder", "default", "ladder name (default, demo, test) or a ladder file")
	fl.StringVar(&f.out, "out", "", "output directory (one subdirectory per title)")
	fl.Int32Var(&f.priority, "priority", 0, "priority inside the class")
	fl.StringVar(&f.class, "class", "batch", "latency, batch or opportunistic")
	fl.DurationVar(&f.maxWait, "max-wait", 0, "for opportunistic work: how long it may wait (default 1h)")
	fl.DurationVar(&f.chunk, "chunk", 10*time.Second, "target chunk length")
	fl.StringVar(&f.manifest, "manifest", "", "a studio delivery: YAML with titles (and defaults for the flags)")
	fl.BoolVar(&f.noWatch, "no-watch", false, "submit and return without watching")
	fl.DurationVar(&f.giveUp, "give-up-after", watchLostAfter, "exit 3 after no server answered for this long")
	return cmd
}

// jobDefaults are the job-level settings shared by every title.
type jobDefaults struct {
	pool     string
	class    pb.JobClass
	maxWait  time.Duration
	priority int32
}

func (f *encodeFlags) titles(args []string) ([]title, jobDefaults, error) {
	d := jobDefaults{pool: f.pool, maxWait: f.maxWait, priority: f.priority}
	class := f.class
	var titles []title
	if f.manifest != "" {
		if len(args) > 0 {
			return nil, d, usageError{"give inputs or --manifest, not both"}
		}
		m, err := readManifest(f.manifest)
		if err != nil {
			return nil, d, err
		}
		if m.Pool != "" {
			d.pool = m.Pool
		}
		if m.Class != "" {
			class = m.Class
		}
		if m.Priority != 0 {
			d.priority = m.Priority
		}
		if m.MaxWait != "" {
			if d.maxWait, err = time.ParseDuration(m.MaxWait); err != nil {
				return nil, d, fmt.Errorf("%s: max_wait: %w", f.manifest, err)
			}
		}
		ladder, out := firstNonEmpty(m.Ladder, f.ladder), firstNonEmpty(m.Out, f.out)
		for i, t := range m.Titles {
			if t.Input == "" {
				return nil, d, fmt.Errorf("%s: title %d has no input", f.manifest, i+1)
			}
			prio := d.priority
			if t.Priority != nil {
				prio = *t.Priority
			}
			titles = append(titles, title{name: t.Name, input: t.Input, ladder: firstNonEmpty(t.Ladder, ladder),
				out: firstNonEmpty(t.Out, out), priority: prio})
		}
	} else {
		for _, in := range args {
			titles = append(titles, title{input: in, ladder: f.ladder, out: f.out, priority: d.priority})
		}
	}
	if len(titles) == 0 {
		return nil, d, usageError{"nothing to encode: give INPUT files or --manifest"}
	}
	var err error
	if d.class, err = jobfile.ParseClass(class); err != nil {
		return nil, d, usageError{"--class: " + err.Error()}
	}
	if d.maxWait != 0 && d.class != pb.JobClass_JOB_CLASS_OPPORTUNISTIC {
		return nil, d, usageError{"--max-wait applies to --class opportunistic only"}
	}
	for i := range titles {
		if err := titles[i].resolve(); err != nil {
			return nil, d, err
		}
	}
	return titles, d, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// resolve makes the paths absolute, checks the input exists and names the
// title; the output of a title is OUT/NAME.
func (t *title) resolve() error {
	in, err := filepath.Abs(t.input)
	if err != nil {
		return fmt.Errorf("input %s: %w", t.input, err)
	}
	st, err := os.Stat(in)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("input %s: not a regular file", t.input)
	}
	t.input = in
	if t.name == "" {
		t.name = strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
	}
	if t.out == "" {
		return usageError{"--out is required (the directory the renditions go to)"}
	}
	out, err := filepath.Abs(t.out)
	if err != nil {
		return fmt.Errorf("out %s: %w", t.out, err)
	}
	t.out = filepath.Join(out, sanitizeName(t.name))
	if _, err := os.Stat(t.ladder); err == nil {
		if t.ladder, err = filepath.Abs(t.ladder); err != nil {
			return fmt.Errorf("ladder: %w", err)
		}
	}
	return nil
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	if b.Len() == 0 {
		return "title"
	}
	return b.String()
}

// encodeJob is a title's job: just the plan step, whose result adds the rest.
func encodeJob(t title, d jobDefaults, chunk time.Duration) *pb.JobSpec {
	return &pb.JobSpec{Name: "encode " + t.name, Pool: d.pool, Class: d.class, Priority: t.priority,
		MaxWaitMs: d.maxWait.Milliseconds(), IdempotencyKey: randomKey(),
		Tasks: []*pb.TaskSpec{{
			Name: "plan",
			Command: []string{"@sched", "encoder", "plan", "--source", t.input, "--ladder", t.ladder, "--out", t.out,
				"--chunk", chunk.String()},
			Resources: &pb.Resources{CpuMillis: 500, MemoryBytes: 256 << 20},
			TimeoutMs: (10 * time.Minute).Milliseconds(),
			Retry:     &pb.RetryPolicy{MaxAttempts: 2, InitialBackoffMs: 1000},
		}}}
}

// watchEncodes follows the jobs until all end, each with followJob (so an
// encode survives a server restart or a leader change like `job watch`
// does), drawing one progress line per title on a terminal, then prints
// the per-stage timing of each.
func watchEncodes(ctx context.Context, c *client, g *globals, ids []string, titles []title, giveUp time.Duration) error {
	interactive := term.IsTerminal(int(os.Stderr.Fd())) && g.output != "json"
	start := time.Now()
	board := &encodeBoard{c: c, names: make([]string, len(ids)), jobs: make([]*pb.Job, len(ids)),
		tasks: make([][]*pb.Task, len(ids)), fetched: make([]time.Time, len(ids))}
	for i := range titles {
		board.names[i] = titles[i].name
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			final, err := followJob(ctx, g, id, giveUp, true, func(j *pb.Job) error {
				if interactive {
					board.update(ctx, i, j)
				}
				return nil
			})
			if err != nil {
				errs[i] = err
				cancel() // one title lost: stop following the others
				return
			}
			board.final(i, final)
			if interactive {
				board.draw()
			}
		}()
	}
	wg.Wait()
	// The first error that is not the cancel of a title that was lost.
	var failed error
	for _, err := range errs {
		if err != nil && (failed == nil || errors.Is(failed, context.Canceled)) {
			failed = err
		}
	}
	if failed != nil {
		return failed
	}
	jobs := board.jobs
	if g.output == "json" {
		for _, j := range jobs {
			if err := printJSON(os.Stdout, j); err != nil {
				return err
			}
		}
	} else {
		fmt.Printf("\nwall time %s for %d title(s)\n", time.Since(start).Round(time.Millisecond), len(jobs))
		for i, j := range jobs {
			fmt.Printf("\n%s (%s): %s, output in %s\n", titles[i].name, j.Id, jobStateName(j.State), titles[i].out)
			if j.Reason != "" {
				fmt.Printf("  reason: %s\n", j.Reason)
			}
			printPlanNotes(os.Stdout, j)
			printStages(os.Stdout, j)
			printVerification(os.Stdout, titles[i].out)
		}
	}
	var unsuccessful []string
	for _, j := range jobs {
		if j.State != pb.JobState_JOB_STATE_SUCCEEDED {
			unsuccessful = append(unsuccessful, j.Id+" "+jobStateName(j.State))
		}
	}
	if len(unsuccessful) > 0 {
		return jobFailedError{"encode failed: " + strings.Join(unsuccessful, ", ")}
	}
	return nil
}

// encodeBoard holds the latest view of each followed encode and draws their
// progress lines on stderr. Its methods are safe for concurrent use.
type encodeBoard struct {
	c     *client
	mu    sync.Mutex
	names []string
	jobs  []*pb.Job
	// tasks are the tasks of each job as last fetched (the stream carries
	// counts only), for the stage shown; fetched is when.
	tasks   [][]*pb.Task
	fetched []time.Time
	drawn   int
}

// stageFetchEvery bounds how often a progress line fetches its job's tasks.
const stageFetchEvery = 250 * time.Millisecond

// update records job i's new view and redraws. It fetches the job's tasks
// (for the stage shown) at most every stageFetchEvery, from the server
// the encode was submitted to; when that fails the line keeps its last
// stage: following the job does not depend on it.
func (b *encodeBoard) update(ctx context.Context, i int, j *pb.Job) {
	b.mu.Lock()
	fetch := time.Since(b.fetched[i]) >= stageFetchEvery && !jobFinal(j.State)
	if fetch {
		b.fetched[i] = time.Now()
	}
	b.mu.Unlock()
	var tasks []*pb.Task
	if fetch {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if full, err := b.c.jobs.GetJob(cctx, &pb.GetJobRequest{Id: j.Id, WithTasks: true}); err == nil {
			tasks = full.Tasks
		}
		cancel()
	}
	b.mu.Lock()
	b.jobs[i] = j
	if tasks != nil {
		b.tasks[i] = tasks
	}
	b.mu.Unlock()
	b.draw()
}

// final records job i's final view, with its tasks.
func (b *encodeBoard) final(i int, j *pb.Job) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.jobs[i], b.tasks[i] = j, j.Tasks
}

// draw redraws every title's progress line in place.
func (b *encodeBoard) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn > 0 {
		fmt.Fprintf(os.Stderr, "\033[%dA", b.drawn)
	}
	for i, j := range b.jobs {
		line := fmt.Sprintf("%-24.24s waiting for the server", b.names[i])
		if j != nil {
			line = progressLine(b.names[i], j, b.tasks[i])
		}
		fmt.Fprintf(os.Stderr, "\r\033[K%s\n", line)
	}
	b.drawn = len(b.jobs)
}

func jobFinal(s pb.JobState) bool {
	return s == pb.JobState_JOB_STATE_SUCCEEDED || s == pb.JobState_JOB_STATE_FAILED || s == pb.JobState_JOB_STATE_CANCELLED
}

// progressLine is a title's progress: tasks done of the job's tasks so far
// (the total grows as the plan step fans the job out) and the stage of the
// first running task among tasks.
func progressLine(name string, j *pb.Job, tasks []*pb.Task) string {
	c := j.Counts
	done := doneCount(c) // tasks replaced by their fallback are done
	total := c.GetTotal()
	const width = 30
	fill := 0
	if total > 0 {
		fill = int(done) * width / int(total)
	}
	stage := "plan"
	for _, t := range tasks {
		if t.State == pb.TaskState_TASK_STATE_RUNNING || t.State == pb.TaskState_TASK_STATE_ASSIGNED {
			stage = stageOf(t.Name)
			break
		}
	}
	if jobFinal(j.State) {
		stage = jobStateName(j.State)
	}
	return fmt.Sprintf("%-24.24s [%s%s] %4d/%-4d %s", name, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		done, total, stage)
}

// stageOf names a task's stage from its name: "enc-720p-3" -> "enc".
func stageOf(name string) string {
	if i := strings.IndexByte(name, '-'); i > 0 {
		return name[:i]
	}
	return name
}

// printStages prints, per stage, how many tasks it had, its wall time (first
// start to last finish) and the sum of its tasks' run times.
func printStages(w io.Writer, j *pb.Job) {
	type agg struct {
		n              int
		first, last    int64
		busy           time.Duration
		attempts, lost int
	}
	stages := map[string]*agg{}
	var order []string
	for _, t := range j.Tasks {
		st := stageOf(t.Name)
		a := stages[st]
		if a == nil {
			a = &agg{}
			stages[st] = a
			order = append(order, st)
		}
		a.n++
		for _, at := range t.Attempts {
			a.attempts++
			if at.StartedUnixMs == 0 || at.FinishedUnixMs == 0 {
				continue
			}
			if a.first == 0 || at.StartedUnixMs < a.first {
				a.first = at.StartedUnixMs
			}
			a.last = max(a.last, at.FinishedUnixMs)
			a.busy += time.Duration(at.FinishedUnixMs-at.StartedUnixMs) * time.Millisecond
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return stages[order[a]].first < stages[order[b]].first })
	tw := newTableTo(w)
	fmt.Fprintln(tw, "  STAGE\tTASKS\tATTEMPTS\tWALL\tTASK TIME")
	for _, st := range order {
		a := stages[st]
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\n", st, a.n, a.attempts,
			(time.Duration(a.last-a.first) * time.Millisecond).Round(time.Millisecond), a.busy.Round(time.Millisecond))
	}
	_ = tw.Flush()
}

// printPlanNotes prints what the plan step said about the source and the
// ladder (rungs dropped or resized, tone mapping, deinterlacing, audio),
// from the "note: " lines of its output.
func printPlanNotes(w io.Writer, j *pb.Job) {
	for _, t := range j.Tasks {
		if t.Name != "plan" || len(t.Attempts) == 0 {
			continue
		}
		for _, l := range strings.Split(t.Attempts[len(t.Attempts)-1].StdoutTail, "\n") {
			if n, ok := strings.CutPrefix(strings.TrimSpace(l), "note: "); ok {
				fmt.Fprintf(w, "  %s\n", n)
			}
		}
	}
}

// printVerification prints the verify step's report when this host can
// read it (always under sched dev; with a shared filesystem elsewhere).
func printVerification(w io.Writer, outDir string) {
	data, err := os.ReadFile(filepath.Join(outDir, encoder.VerifyReportFile))
	if err != nil {
		return
	}
	var rep encoder.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		fmt.Fprintf(w, "  verification report unreadable: %v\n", err)
		return
	}
	verdict := "PASSED"
	if !rep.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "  verification %s:\n", verdict)
	for _, r := range rep.Renditions {
		fmt.Fprintf(w, "    %-6s frames %d/%d  duration %s/%s  PSNR %.2f dB  SSIM %.4f  %s\n", r.Name, r.Frames,
			r.SourceFrames, r.Duration, r.SourceDuration, r.PSNR, r.SSIM, strings.Join(r.Problems, "; "))
	}
	fmt.Fprintf(w, "  HLS: %s\n", filepath.Join(outDir, "hls", "master.m3u8"))
}
