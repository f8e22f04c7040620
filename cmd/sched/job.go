package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/limits"
	"github.com/banyan-sched/banyan/api/taskarray"
	"github.com/banyan-sched/banyan/cmd/internal/helperwire"
	"github.com/banyan-sched/banyan/cmd/sched/jobfile"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Submit and inspect jobs"}
	cmd.AddCommand(newJobSubmitCmd(g), newJobListCmd(g), newJobShowCmd(g), newJobCancelCmd(g), newJobWatchCmd(g), newJobGCCmd(g), newJobLogsCmd(g))
	return cmd
}

func newJobSubmitCmd(g *globals) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "submit FILE",
		Short: "Submit the job (or batch of jobs) in a YAML or JSON file; - reads standard input",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.call != nil && (watch || args[0] == "-" || processPath(g.callPath(args[0]))) {
				return errDeclined // a watch, standard input or the like: the front runs it itself
			}
			specs, err := readJobs(g.callPath(args[0]), args[0])
			if err != nil {
				return err
			}
			phases.markNow("read")
			// Each job gets an idempotency key, so the client's retries
			// during a leader election never submit a job twice. The
			// front's seed, when it hands a call on, keeps them the same
			// in the process that runs it again.
			newKey := randomKey
			if seed := g.getenv(helperwire.EnvSeed); seed != "" {
				newKey = seededKeys(seed)
			}
			for _, s := range specs {
				if s.IdempotencyKey == "" {
					s.IdempotencyKey = newKey()
				}
			}
			c, ctx, done, err := connect(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			phases.markNow("dial")
			if err := expandArraysFor(ctx, c, specs); err != nil {
				return err
			}
			batches, err := submitBatches(specs, submitBatchBytes)
			if err != nil {
				return err
			}
			resp := &pb.SubmitJobsResponse{}
			for _, batch := range batches {
				r, err := c.jobs.SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: batch})
				if err != nil {
					if len(resp.Jobs) == 0 {
						return fmt.Errorf("submit: %w", err)
					}
					// The jobs of the calls before stay submitted: say which.
					if perr := printSubmitted(cmd.OutOrStdout(), g, resp); perr != nil {
						return perr
					}
					return fmt.Errorf("submit: %d of %d jobs submitted (listed above), then: %w", len(resp.Jobs), len(specs), err)
				}
				resp.Jobs, resp.Existing = append(resp.Jobs, r.Jobs...), append(resp.Existing, r.Existing...)
			}
			phases.markNow("rpc")
			if err := printSubmitted(cmd.OutOrStdout(), g, resp); err != nil {
				return err
			}
			phases.markNow("print")
			if watch && len(resp.Jobs) == 1 {
				return watchJob(cmd, g, resp.Jobs[0].Id, watchLostAfter)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "watch the job until it ends (single job)")
	return cmd
}

// expandArraysFor sends arrays (task specs with a count) as they are to a
// server that lists every feature they need (taskarray.Needs), and expands
// them here for an older one, which would take each array as one task or
// refuse an after list that names one. Only a file that holds an array
// costs the extra Version call. Before it expands, it checks what the
// newer server would: a few names in after lists may stand for millions
// of dependencies, which written out here would exhaust this process's
// memory before any server could refuse them.
func expandArraysFor(ctx context.Context, c *client, specs []*pb.JobSpec) error {
	if !taskarray.InJobs(specs) {
		return nil
	}
	v, err := c.cluster.Version(ctx, &pb.VersionRequest{})
	if err != nil {
		return fmt.Errorf("ask the server whether it expands task arrays: %w", err)
	}
	if taskarray.Serves(v.Features, taskarray.Needs(specs)) {
		return nil
	}
	for _, s := range specs {
		if err := taskarray.CheckAfter(s.Tasks); err != nil {
			return fmt.Errorf("job %s: %w", s.Name, err)
		}
	}
	taskarray.ExpandJobs(specs)
	return nil
}

// printSubmitted prints the jobs a submit made, or found already made.
func printSubmitted(w io.Writer, g *globals, resp *pb.SubmitJobsResponse) error {
	if g.output == "json" {
		return printJSON(w, resp)
	}
	for i, j := range resp.Jobs {
		note := ""
		if resp.Existing[i] {
			note = " (existing job with the same idempotency key)"
		}
		if _, err := fmt.Fprintf(w, "%s\t%s\t%d tasks%s\n", j.Id, j.Name, j.Counts.GetTotal(), note); err != nil {
			return err
		}
	}
	return nil
}

// submitBatchBytes bounds the jobs of one SubmitJobs call, encoded: half
// the smallest message a server can be configured to take
// (limits.MinMessageSize), so that a file of more jobs than one message
// holds goes in as several calls.
const submitBatchBytes = limits.MinMessageSize / 2

// submitBatches splits specs, in order, into runs of whole jobs of at most
// budget bytes encoded and limits.SubmitTasks tasks each, arrays counted
// expanded (a job alone may fill a run). A job larger than a server takes
// (limits.JobSpecBytes, which it checks after filling in names and default
// asks, so never less than here) is refused here, naming it, before
// anything is sent.
func submitBatches(specs []*pb.JobSpec, budget int) ([][]*pb.JobSpec, error) {
	var out [][]*pb.JobSpec
	var run []*pb.JobSpec
	size, tasks := 0, int64(0)
	for i, spec := range specs {
		n, t := spec.SizeVT(), taskarray.Tasks(spec.Tasks)
		if n > limits.JobSpecBytes {
			return nil, fmt.Errorf("job %s: %d tasks make a job spec of %d bytes, more than the limit of %d (%s) per job; split it into several jobs",
				jobfile.Label(spec.Name, i), t, n, limits.JobSpecBytes, limits.FormatBytes(limits.JobSpecBytes))
		}
		if len(run) > 0 && (size+n > budget || tasks+t > limits.SubmitTasks) {
			out, run, size, tasks = append(out, run), nil, 0, 0
		}
		run, size, tasks = append(run, spec), size+n, tasks+t
	}
	if len(run) > 0 {
		out = append(out, run)
	}
	return out, nil
}

// readJobs reads the jobs of the file at path, which the caller named
// as given ("-": standard input).
func readJobs(path, given string) ([]*pb.JobSpec, error) {
	if given != "-" {
		if path == given {
			return jobfile.ReadFile(path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				pe.Path = given // as the caller named it, as jobfile.ReadFile says
			}
			return nil, fmt.Errorf("read job file: %w", err)
		}
		specs, err := jobfile.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", given, err)
		}
		return specs, nil
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	specs, err := jobfile.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	return specs, nil
}

func randomKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "cli-" + hex.EncodeToString(b[:])
}

// seededKeys returns a source of idempotency keys derived from seed: the
// same seed gives the same keys in the same order (helperwire.EnvSeed).
func seededKeys(seed string) func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("cli-%s-%d", seed, n)
	}
}

func newJobListCmd(g *globals) *cobra.Command {
	var poolName, stateName string
	var limit int32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usageError{fmt.Sprintf("--limit %d: want 0 (all) or more", limit)}
			}
			req := &pb.ListJobsRequest{Pool: poolName, Limit: limit}
			if stateName != "" {
				v, ok := pb.JobState_value["JOB_STATE_"+strings.ToUpper(stateName)]
				if !ok {
					return usageError{fmt.Sprintf("--state %q: use queued, running, succeeded, failed or cancelled", stateName)}
				}
				req.State = pb.JobState(v)
			}
			return runCall(cmd, g, "list jobs", func(ctx context.Context, c *client) (*pb.ListJobsResponse, error) {
				return c.jobs.ListJobs(ctx, req)
			}, func(resp *pb.ListJobsResponse) error {
				w := newTable()
				fmt.Fprintln(w, "ID\tNAME\tPOOL\tCLASS\tPRIO\tSTATE\tTASKS\tDONE\tRUNNING\tQUEUED\tBLOCKED\tSUBMITTED")
				for _, j := range resp.Jobs {
					c := j.Counts
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", j.Id, j.Name, j.Pool, className(j.Class),
						j.Priority, jobStateName(j.State), c.GetTotal(), doneCount(c),
						c.GetRunning(), c.GetQueued(), c.GetBlocked(), fmtTime(j.SubmittedUnixMs))
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&poolName, "pool", "", "only jobs of this pool")
	cmd.Flags().StringVar(&stateName, "state", "", "only jobs in this state")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many jobs (0 = all)")
	return cmd
}

func newJobShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a job, its tasks and every attempt's timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "show job", func(ctx context.Context, c *client) (*pb.Job, error) {
				return getJobWithTasks(ctx, c.jobs, args[0])
			}, func(j *pb.Job) error {
				printJob(os.Stdout, j)
				return nil
			})
		},
	}
}

// getJobWithTasks reads a job with all its tasks in one call, as one
// consistent view; when they are more than the server sends in one message
// (ResourceExhausted), it reads the job and then its tasks a page at a
// time (ListTasks), each page as it is when read.
func getJobWithTasks(ctx context.Context, jobs pb.JobServiceClient, id string) (*pb.Job, error) {
	job, err := jobs.GetJob(ctx, &pb.GetJobRequest{Id: id, WithTasks: true})
	if status.Code(err) != codes.ResourceExhausted {
		return job, err
	}
	if job, err = jobs.GetJob(ctx, &pb.GetJobRequest{Id: id}); err != nil {
		return nil, err
	}
	for {
		page, err := jobs.ListTasks(ctx, &pb.ListTasksRequest{JobId: id, Offset: int32(len(job.Tasks))})
		if err != nil {
			return nil, fmt.Errorf("tasks from %d on: %w", len(job.Tasks), err)
		}
		job.Tasks = append(job.Tasks, page.Tasks...)
		if len(page.Tasks) == 0 || len(job.Tasks) >= int(page.Total) {
			return job, nil
		}
	}
}

// doneCount is how many of a job's tasks are over: succeeded, replaced by
// their fallback, failed or cancelled.
func doneCount(c *pb.TaskCounts) int32 {
	return c.GetSucceeded() + c.GetReplaced() + c.GetFailed() + c.GetCancelled()
}

// printJob prints a job, its counts and every attempt of its tasks. A task
// that a fallback took over shows as replaced, naming the fallback; each
// attempt that did not succeed shows its failure class.
func printJob(out io.Writer, j *pb.Job) {
	c := j.Counts
	fmt.Fprintf(out, "Job %s %s\n", j.Id, j.Name)
	fmt.Fprintf(out, "  pool %s, class %s, priority %d, state %s\n", j.Pool, className(j.Class), j.Priority, jobStateName(j.State))
	if j.Reason != "" {
		fmt.Fprintf(out, "  reason: %s\n", j.Reason)
	}
	fmt.Fprintf(out, "  submitted %s, finished %s, took %s\n", fmtTime(j.SubmittedUnixMs), fmtTime(j.FinishedUnixMs),
		fmtDur(j.SubmittedUnixMs, j.FinishedUnixMs))
	if sub := j.GetSubmitter(); sub != nil {
		fmt.Fprintf(out, "  submitted by %s (accessor %s)\n", sub.Name, sub.AccessorId)
	}
	if j.TraceId != "" {
		fmt.Fprintf(out, "  trace: %s\n", j.TraceId)
	}
	fmt.Fprintf(out, "  tasks: %d total, %d waiting, %d queued (%d blocked), %d running, %d succeeded, "+
		"%d replaced by fallback, %d failed, %d cancelled\n\n", c.GetTotal(), c.GetWaiting(), c.GetQueued(), c.GetBlocked(),
		c.GetRunning(), c.GetSucceeded(), c.GetReplaced(), c.GetFailed(), c.GetCancelled())
	waits := newWaitNotes(j.Tasks) // also the task a fallback's id names
	w := newTableTo(out)
	fmt.Fprintln(w, "TASK\tSTATE\tATTEMPT\tAGENT\tQUEUED\tPLACED\tSTARTED\tFINISHED\tOUTCOME\tCLASS\tEXIT\tNOTE")
	for _, t := range j.Tasks {
		state, replaced := taskStateLabel(t), ""
		if t.ReplacedBy != "" {
			replaced = "replaced by " + orDash(waits.byID[t.ReplacedBy].GetName())
		}
		for i, a := range t.Attempts {
			note := a.Error
			if i == len(t.Attempts)-1 && replaced != "" {
				note = joinNote(note, replaced)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Name, state, a.Number,
				orDash(a.AgentId), fmtTime(a.QueuedUnixMs), fmtTime(a.PlacedUnixMs), fmtTime(a.StartedUnixMs),
				fmtTime(a.FinishedUnixMs), orDash(a.Outcome), orDash(a.FailureClass), a.ExitCode, note)
		}
		switch {
		case t.State == pb.TaskState_TASK_STATE_QUEUED: // the pending attempt, not placed yet
			fmt.Fprintf(w, "%s\t%s\t%d\t-\t%s\t-\t-\t-\t-\t-\t-\t%s\n", t.Name, state,
				lastAttempt(t)+1, fmtTime(t.QueuedUnixMs), t.BlockedReason)
		case t.State == pb.TaskState_TASK_STATE_WAITING && len(t.Attempts) == 0:
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", t.Name, state, waits.note(t))
		case len(t.Attempts) == 0:
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", t.Name, state, replaced)
		}
	}
	_ = w.Flush()
}

// waitNotes says what waiting tasks of one job still wait for; it indexes
// the job's tasks by name and by id.
type waitNotes struct {
	byName, byID map[string]*pb.Task
}

func newWaitNotes(tasks []*pb.Task) waitNotes {
	w := waitNotes{byName: make(map[string]*pb.Task, len(tasks)), byID: make(map[string]*pb.Task, len(tasks))}
	for _, t := range tasks {
		w.byName[t.Name], w.byID[t.Id] = t, t
	}
	return w
}

// waitShown is how many of the tasks a waiting task waits for its note
// names.
const waitShown = 3

// note is "waits for N of M: NAME, ..." for a waiting task: the tasks of
// its after list (or the fallbacks that took their place) that have not
// succeeded, the first waitShown by name.
func (w waitNotes) note(t *pb.Task) string {
	after := t.GetSpec().GetAfter()
	var open []string
	n := 0
	for _, dep := range after {
		d, name := w.byName[dep], dep
		for seen := 0; d != nil && d.ReplacedBy != "" && seen < len(w.byID); seen++ {
			d = w.byID[d.ReplacedBy]
		}
		if d != nil {
			name = d.Name
		}
		if d != nil && d.State == pb.TaskState_TASK_STATE_SUCCEEDED {
			continue
		}
		if n++; n <= waitShown {
			open = append(open, name)
		}
	}
	if n == 0 {
		return ""
	}
	if n > waitShown {
		open = append(open, "…")
	}
	return fmt.Sprintf("waits for %d of %d: %s", n, len(after), strings.Join(open, ", "))
}

// taskStateLabel names a task's state for people: a failed task that its
// fallback took over is "replaced", not "failed".
func taskStateLabel(t *pb.Task) string {
	if t.State == pb.TaskState_TASK_STATE_FAILED && t.ReplacedBy != "" {
		return "replaced"
	}
	return taskStateName(t.State)
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newJobCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job: queued tasks are dropped, running ones stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "cancel job", func(ctx context.Context, c *client) (*pb.Job, error) {
				return c.jobs.CancelJob(ctx, &pb.CancelJobRequest{Id: args[0]})
			}, func(j *pb.Job) error {
				fmt.Printf("%s %s\n", j.Id, jobStateName(j.State))
				return nil
			})
		},
	}
}

func newJobWatchCmd(g *globals) *cobra.Command {
	var giveUp time.Duration
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Show a progress bar until the job ends (exit 0 succeeded, 1 failed or cancelled, 3 lost track)",
		Long: "Show a progress bar until the job ends. The watch follows the job across server restarts and\n" +
			"leader changes (every server serves it; SCHED_ADDR may list several). Exit codes: 0 the job\n" +
			"succeeded, 1 it failed or was cancelled, 3 the watch could not reach any server for\n" +
			"--give-up-after.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if giveUp <= 0 {
				return usageError{fmt.Sprintf("--give-up-after %s: want a positive duration", giveUp)}
			}
			return watchJob(cmd, g, args[0], giveUp)
		},
	}
	cmd.Flags().DurationVar(&giveUp, "give-up-after", watchLostAfter, "exit 3 after no server answered for this long")
	return cmd
}

// watchJob follows a job until it ends (followJob: across restarts and
// leader changes), drawing a progress bar on a terminal whose total grows
// as the job fans out.
func watchJob(cmd *cobra.Command, g *globals, id string, giveUp time.Duration) error {
	var bar *progressbar.ProgressBar
	interactive := term.IsTerminal(int(os.Stderr.Fd()))
	last, err := followJob(cmd.Context(), g, id, giveUp, false, func(j *pb.Job) error {
		if g.output == "json" {
			return printJSON(os.Stdout, j)
		}
		if !interactive {
			return nil
		}
		bar = drawProgress(bar, j)
		return nil
	})
	if err != nil {
		return err
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
	if g.output != "json" {
		fmt.Printf("%s %s in %s\n", last.Id, jobStateName(last.State), fmtDur(last.SubmittedUnixMs, last.FinishedUnixMs))
	}
	if last.State != pb.JobState_JOB_STATE_SUCCEEDED {
		msg := fmt.Sprintf("job %s %s", last.Id, jobStateName(last.State))
		if last.Reason != "" {
			msg += ": " + last.Reason
		}
		return jobFailedError{msg}
	}
	return nil
}

// drawProgress draws job j on bar, making the bar at the first update. Its
// total follows the job's: a fan-out adds tasks while the job runs.
func drawProgress(bar *progressbar.ProgressBar, j *pb.Job) *progressbar.ProgressBar {
	total := max(int(j.Counts.GetTotal()), 1)
	if bar == nil {
		bar = progressbar.NewOptions(total, progressbar.OptionSetDescription(j.Id),
			progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(0))
	} else if total != bar.GetMax() {
		bar.ChangeMax(total)
	}
	_ = bar.Set(int(doneCount(j.Counts)))
	bar.Describe(fmt.Sprintf("%s %s running=%d queued=%d", j.Id, jobStateName(j.State),
		j.Counts.GetRunning(), j.Counts.GetQueued()))
	return bar
}

func isJobFinal(s pb.JobState) bool {
	return s == pb.JobState_JOB_STATE_SUCCEEDED || s == pb.JobState_JOB_STATE_FAILED || s == pb.JobState_JOB_STATE_CANCELLED
}

func className(c pb.JobClass) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "JOB_CLASS_"))
}

func jobStateName(s pb.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

func taskStateName(s pb.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

// lastAttempt is the number of a task's last attempt record (0 if none):
// the server keeps the first and the latest records only, so it can be
// more than the records shown.
func lastAttempt(t *pb.Task) int32 {
	if n := len(t.Attempts); n > 0 {
		return t.Attempts[n-1].Number
	}
	return 0
}
