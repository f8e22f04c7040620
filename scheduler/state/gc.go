package state

import (
	"slices"
	"sort"

	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// Retention bounds how long finished jobs (succeeded, failed, cancelled)
// stay in the state: past MaxAgeMs after they finished, or beyond the
// MaxJobs most recently finished, they are removed with their tasks, so
// that the state and its snapshots stay flat under a steady stream of
// work. Jobs still running are never removed.
type Retention struct {
	// MaxAgeMs is how long a finished job is kept (0: no age limit).
	MaxAgeMs int64
	// MaxJobs is how many finished jobs are kept at most (0: no limit).
	MaxJobs int
}

// DefaultRetention keeps finished jobs for a day, and at most 10,000 of
// them.
var DefaultRetention = Retention{MaxAgeMs: 24 * 3600 * 1000, MaxJobs: 10_000}

// GCBatch is the most jobs one GC entry removes.
const GCBatch = 1000

// FinishedJob is a finished job as retention sees it.
type FinishedJob struct {
	ID         string
	FinishedMs int64
	seq        uint64
}

// FinishedJobs lists the finished jobs in no order: one pass over the
// jobs, cheap enough to take under the state's lock, where sorting them
// is not (DueForGC sorts them outside it).
func (s *State) FinishedJobs() []FinishedJob {
	n := 0
	for st, c := range s.tally.jobs {
		if IsJobFinal(st) {
			n += c
		}
	}
	done := make([]FinishedJob, 0, n)
	for _, j := range s.jobs.all {
		if IsJobFinal(j.PB.State) {
			done = append(done, FinishedJob{j.PB.Id, j.PB.FinishedUnixMs, j.Seq})
		}
	}
	return done
}

// GCCandidates lists the finished jobs retention removes at now: oldest
// finished first, at most limit (0: all).
func (s *State) GCCandidates(now int64, r Retention, limit int) []string {
	return DueForGC(s.FinishedJobs(), now, r, limit)
}

// DueForGC returns the ids of the finished jobs done (FinishedJobs) that
// r removes at now: oldest finished first, at most limit (0: all). It
// sorts done in place.
func DueForGC(done []FinishedJob, now int64, r Retention, limit int) []string {
	sort.Slice(done, func(a, b int) bool {
		if done[a].FinishedMs != done[b].FinishedMs {
			return done[a].FinishedMs < done[b].FinishedMs
		}
		return done[a].seq < done[b].seq
	})
	var out []string
	for i, f := range done {
		overCount := r.MaxJobs > 0 && len(done)-i > r.MaxJobs
		tooOld := r.MaxAgeMs > 0 && now-f.FinishedMs >= r.MaxAgeMs
		if !overCount && !tooOld {
			break // sorted by finish time: the rest are younger and within the count
		}
		out = append(out, f.ID)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out
}

// applyGC removes finished jobs and their tasks. Jobs that are not final
// (or no longer exist) are skipped, so an entry computed a moment earlier
// stays safe.
func (s *State) applyGC(c *fsmpb.GCJobs, r *Result) {
	for _, id := range c.JobIds {
		j, ok := s.Job(id)
		if !ok || !IsJobFinal(j.PB.State) {
			continue
		}
		var on agentSet // the agents it ran on
		for _, ref := range j.rec.tasks {
			t, tid := ref.t, ref.t.PB.Id
			for _, a := range t.PB.Attempts {
				on.add(a.AgentId)
			}
			s.tallyTask(j, t.PB.State, t.PB.ReplacedBy != "", -1)
			delete(s.fallbackWatch, tid)
			delete(s.dependents, tid)
			s.ntasks--
		}
		s.tally.jobs[j.PB.State]--
		s.noteJob(j, KindRemoved, j.PB.State)
		if k := j.PB.IdempotencyKey; k != "" {
			s.idem.del(k, j)
		}
		delete(s.opportunistic, id)
		s.dropJobRec(j)
		n, _ := jobNumber(id)
		s.jobs.del(n)
		r.Removed = append(r.Removed, id)
		for _, agent := range on.list {
			if r.RemovedFrom == nil {
				r.RemovedFrom = map[string][]string{}
			}
			r.RemovedFrom[agent] = append(r.RemovedFrom[agent], id)
		}
	}
}

// agentSet collects agent ids without repeats, in the order first added:
// a list while it is short (most jobs ran on a few agents), a map beside
// it past agentSetList (a job of a million tasks may have run on
// thousands).
type agentSet struct {
	list []string
	seen map[string]bool
}

const agentSetList = 16

func (a *agentSet) add(id string) {
	if id == "" {
		return
	}
	if a.seen == nil {
		if slices.Contains(a.list, id) {
			return
		}
		if a.list = append(a.list, id); len(a.list) > agentSetList {
			a.seen = make(map[string]bool, 2*len(a.list))
			for _, x := range a.list {
				a.seen[x] = true
			}
		}
		return
	}
	if !a.seen[id] {
		a.seen[id] = true
		a.list = append(a.list, id)
	}
}
