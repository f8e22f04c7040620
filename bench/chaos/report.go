package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// RoundResult is what one round measured.
type RoundResult struct {
	Fault Fault
	// Submit and Place are the times from the fault to the first
	// acknowledged submission and to its task's start.
	Submit, Place time.Duration
	// Heal is how long the cluster took to be whole again after the fault
	// ended (all servers agree on a leader, all agents up).
	Heal time.Duration
	// Skipped says why the fault could not be made here.
	Skipped string
	// Problems are what went wrong, in words.
	Problems []string
}

func (r RoundResult) String() string {
	if r.Skipped != "" {
		return "skipped: " + r.Skipped
	}
	s := fmt.Sprintf("submissions resumed after %v, placements after %v, whole again %v after the fault ended",
		r.Submit.Round(time.Millisecond), r.Place.Round(time.Millisecond), r.Heal.Round(time.Millisecond))
	if len(r.Problems) > 0 {
		s += "; problems: " + strings.Join(r.Problems, "; ")
	}
	return s
}

// Report is a whole run's outcome.
type Report struct {
	Started, Finished time.Time
	// Partitions and DiskFull say whether those faults could be made.
	Partitions, DiskFull bool
	Rounds               []RoundResult

	// Acknowledged counts acknowledged workload jobs. Lost were not found
	// under their id; Renumbered were found under their id with another
	// job's name (or under another id); Failed finished other than
	// succeeded; Unfinished had not finished when the drain ended.
	Acknowledged, Lost, Renumbered, Failed, Unfinished int
	// DuplicateJobs counts submissions that became more than one job.
	DuplicateJobs int
	// DuplicateRuns counts tasks whose command ran to its end more than
	// once with no fault to explain it. ExplainedRuns are those where an
	// attempt was declared lost while its agent was frozen or killed: a
	// task whose agent is stopped cannot be stopped by it, finishes
	// unseen, and is run again elsewhere once the lease runs out (at least
	// once, by design). CutShort counts runs that started and never ended
	// (a kill or a cancel cut them).
	DuplicateRuns, ExplainedRuns, CutShort int
	// Details name the jobs behind the counts (the first few of each).
	Details []string
}

func (r *Report) add(res RoundResult) { r.Rounds = append(r.Rounds, res) }

// OK is true when no acknowledged job was lost, renumbered, duplicated,
// failed or left unfinished, no task ran to its end twice, and every round
// recovered.
func (r *Report) OK() bool {
	if r.Lost+r.Renumbered+r.Failed+r.Unfinished+r.DuplicateJobs+r.DuplicateRuns > 0 {
		return false
	}
	for _, x := range r.Rounds {
		if len(x.Problems) > 0 {
			return false
		}
	}
	return true
}

func (r *Report) detail(format string, a ...any) {
	if len(r.Details) < 40 {
		r.Details = append(r.Details, fmt.Sprintf(format, a...))
	}
}

// check waits for the acknowledged jobs to finish, then checks each one
// and the tasks' evidence.
func (h *harness) check(ctx context.Context, rep *Report) {
	h.mu.Lock()
	acked := slices.Clone(h.acked)
	h.mu.Unlock()
	rep.Acknowledged = len(acked)
	final := make(map[string]*pb.Job, len(acked))
	deadline := time.Now().Add(h.cfg.Drain)
	for {
		pending := 0
		for _, a := range acked {
			if j := final[a.id]; j != nil && finished(j.State) {
				continue
			}
			j, err := h.getJob(ctx, a.id)
			if err == nil {
				final[a.id] = j
			}
			if j == nil || !finished(j.State) {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	byName := map[string][]string{}
	if all, err := h.listJobs(ctx); err == nil {
		for _, j := range all {
			if strings.HasPrefix(j.Name, "chaos-") {
				byName[j.Name] = append(byName[j.Name], j.Id)
			}
		}
	} else {
		rep.detail("list jobs: %v", err)
	}
	for _, a := range acked {
		j := final[a.id]
		switch {
		case j == nil && len(byName[a.name]) > 0:
			rep.Renumbered++
			rep.detail("%s (%s): not found; the job is now %v", a.id, a.name, byName[a.name])
			continue
		case j == nil:
			rep.Lost++
			rep.detail("%s (%s): not found", a.id, a.name)
			continue
		case j.Name != a.name:
			rep.Renumbered++
			rep.detail("%s was acknowledged for %s, now holds %s", a.id, a.name, j.Name)
			continue
		case !finished(j.State):
			rep.Unfinished++
			rep.detail("%s (%s): %s after the drain", a.id, a.name, j.State)
		case j.State != pb.JobState_JOB_STATE_SUCCEEDED:
			rep.Failed++
			rep.detail("%s (%s): %s: %s", a.id, a.name, j.State, j.Reason)
		}
		if ids := byName[a.name]; len(ids) > 1 {
			rep.DuplicateJobs++
			rep.detail("%s submitted once, became jobs %v", a.name, ids)
		}
		for _, t := range j.Tasks {
			starts, ends, err := evidence(filepath.Join(h.evDir, t.Id))
			if err != nil {
				if finished(j.State) && j.State == pb.JobState_JOB_STATE_SUCCEEDED {
					rep.detail("%s: no evidence: %v", t.Id, err)
				}
				continue
			}
			rep.CutShort += starts - ends
			if ends > 1 && h.explained(t) {
				rep.ExplainedRuns++
			} else if ends > 1 {
				rep.DuplicateRuns++
				var atts []string
				for _, a := range t.Attempts {
					atts = append(atts, fmt.Sprintf("#%d on %s %s %s-%s %s", a.Number, a.AgentId, a.Outcome,
						clock(a.StartedUnixMs), clock(a.FinishedUnixMs), a.Error))
				}
				rep.detail("%s ran to its end %d times (%d starts); attempts: %s", t.Id, ends, starts, strings.Join(atts, "; "))
			}
		}
	}
}

// clock formats a unix-ms time of day for details ("-" for none).
func clock(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).Format("15:04:05.000")
}

// explained reports whether one of the task's lost attempts ran on an
// agent while that agent was frozen or killed.
func (h *harness) explained(t *pb.Task) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range t.Attempts {
		if a.Outcome != "lost" {
			continue
		}
		start := a.StartedUnixMs
		if start == 0 { // never reported started: it may have started in the window
			start = a.PlacedUnixMs
		}
		from, to := time.UnixMilli(start), time.UnixMilli(a.FinishedUnixMs)
		for _, w := range h.windows {
			if w.agent == a.AgentId && w.from.Before(to) && w.to.After(from) {
				return true
			}
		}
	}
	return false
}

func finished(s pb.JobState) bool {
	return s == pb.JobState_JOB_STATE_SUCCEEDED || s == pb.JobState_JOB_STATE_FAILED || s == pb.JobState_JOB_STATE_CANCELLED
}

func (h *harness) getJob(ctx context.Context, id string) (*pb.Job, error) {
	var last error
	for _, c := range h.jobs {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		j, err := c.GetJob(cctx, &pb.GetJobRequest{Id: id, WithTasks: true})
		cancel()
		if err == nil {
			return j, nil
		}
		last = err
	}
	return nil, last
}

func (h *harness) listJobs(ctx context.Context) ([]*pb.Job, error) {
	var last error
	for _, c := range h.jobs {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := c.ListJobs(cctx, &pb.ListJobsRequest{})
		cancel()
		if err == nil {
			return l.Jobs, nil
		}
		last = err
	}
	return nil, last
}

// evidence counts the start and end lines a task's runs wrote.
func evidence(path string) (starts, ends int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		switch {
		case strings.HasPrefix(sc.Text(), "start "):
			starts++
		case strings.HasPrefix(sc.Text(), "end "):
			ends++
		}
	}
	return starts, ends, sc.Err()
}

// Print writes the report as tables.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tROUNDS\tSUBMIT RESUME min/median/max\tPLACE RESUME min/median/max\tWHOLE AGAIN median\tPROBLEMS")
	for _, f := range AllFaults {
		var sub, place, heal []time.Duration
		rounds, problems := 0, 0
		skipped := ""
		for _, x := range r.Rounds {
			if x.Fault != f {
				continue
			}
			if x.Skipped != "" {
				skipped = x.Skipped
				continue
			}
			rounds++
			problems += len(x.Problems)
			if x.Submit > 0 {
				sub = append(sub, x.Submit)
			}
			if x.Place > 0 {
				place = append(place, x.Place)
			}
			heal = append(heal, x.Heal)
		}
		if rounds == 0 && skipped == "" {
			continue
		}
		if rounds == 0 {
			fmt.Fprintf(tw, "%s\t0\tskipped: %s\t\t\t\n", f, skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", f, rounds, spread(sub), spread(place), median(heal), problems)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nacknowledged %d, lost %d, renumbered %d, failed %d, unfinished %d, duplicated jobs %d\n",
		r.Acknowledged, r.Lost, r.Renumbered, r.Failed, r.Unfinished, r.DuplicateJobs)
	fmt.Fprintf(w, "tasks run to the end twice: %d unexplained, %d while their agent was frozen or killed past its lease; runs cut short: %d\n",
		r.DuplicateRuns, r.ExplainedRuns, r.CutShort)
	for _, x := range r.Rounds {
		for _, p := range x.Problems {
			fmt.Fprintf(w, "problem (%s): %s\n", x.Fault, p)
		}
	}
	for _, d := range r.Details {
		fmt.Fprintf(w, "job: %s\n", d)
	}
	fmt.Fprintf(w, "run took %v\n", r.Finished.Sub(r.Started).Round(time.Second))
}

func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%v / %v / %v", s[0].Round(time.Millisecond), median(s), s[len(s)-1].Round(time.Millisecond))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}
