package state

// jobTable holds the jobs by number (the N of "job-N").
//
// Apply hands out job numbers one after another (addJob), and jobs leave
// roughly in the order they came (retention removes the oldest finished
// first), so the live numbers are nearly dense and the ones touched
// together are neighbours: a pass places the tasks of jobs submitted
// together, and their agents report on them together. A hash map scatters
// those neighbours over memory, and a lookup in a map of a million jobs
// is a cache miss or two (the placement benchmark's servers spent about a
// tenth of their CPU in it). Here a number's page is found by arithmetic,
// and neighbours share a page: a lookup in a million jobs costs about a
// tenth of the map's in number order and a third at random, and a job a
// slot of 8 bytes instead of the map's 20 to 40.
//
// The window covers the numbers from base up, a page reference (16
// bytes) for each jobPageSize numbers. A job still live far behind the
// rest (a job left queued while millions went by) would stretch it, so
// when the window would grow past twice its live pages (and
// maxWindowSlack) its oldest pages are moved into old, a plain map: the
// window then stays proportional to the live pages, whatever numbers a
// snapshot holds, and the rare stragglers cost a map entry each.
type jobTable struct {
	base  uint64    // the page number of pages[0]
	pages []pageRef // a nil page where no job of that page is live
	live  int       // pages that are not nil
	old   map[uint64]*Job
	n     int // jobs held
}

// jobPageBits sets a page's size: 128 numbers, 1 KiB of pointers.
const jobPageBits = 7

const (
	jobPageSize = 1 << jobPageBits
	jobPageMask = jobPageSize - 1
	// maxWindowSlack is how far the window may outgrow twice its live
	// pages before its oldest pages move to old: 16 KiB of page references.
	maxWindowSlack = 1024
)

// jobPage holds the jobs of jobPageSize consecutive numbers: 1 KiB, an
// allocation size class of its own.
type jobPage [jobPageSize]*Job

// pageRef is a page of the window and how many jobs it holds.
type pageRef struct {
	jobs *jobPage
	n    int
}

// newJobTable returns an empty table.
func newJobTable() jobTable { return jobTable{old: map[uint64]*Job{}} }

// len is the number of jobs held.
func (t *jobTable) len() int { return t.n }

// get returns job number n, or nil.
func (t *jobTable) get(n uint64) *Job {
	p := n >> jobPageBits
	if p < t.base {
		return t.old[n]
	}
	if i := p - t.base; i < uint64(len(t.pages)) {
		if pg := t.pages[i].jobs; pg != nil {
			return pg[n&jobPageMask]
		}
	}
	return nil
}

// put sets job number n to j (not nil), replacing any job there.
func (t *jobTable) put(n uint64, j *Job) {
	p := n >> jobPageBits
	if p < t.base {
		if _, ok := t.old[n]; !ok {
			t.n++
		}
		t.old[n] = j
		return
	}
	if len(t.pages) == 0 {
		t.base = p
	}
	i := p - t.base
	if i >= uint64(len(t.pages)) {
		if i >= uint64(2*(t.live+1)+maxWindowSlack) {
			// The page would stretch the window past what its live
			// pages warrant: move the oldest pages out of the way.
			t.shrinkWindow(p)
			t.put(n, j)
			return
		}
		t.pages = append(t.pages, make([]pageRef, int(i)+1-len(t.pages))...)
	}
	ref := &t.pages[i]
	if ref.jobs == nil {
		ref.jobs = &jobPage{}
		t.live++
	}
	slot := &ref.jobs[n&jobPageMask]
	if *slot == nil {
		ref.n++
		t.n++
	}
	*slot = j
}

// shrinkWindow moves the oldest pages into old until page p fits the
// window or the window is empty (put then starts it at p).
func (t *jobTable) shrinkWindow(p uint64) {
	for len(t.pages) > 0 && p-t.base >= uint64(2*(t.live+1)+maxWindowSlack) {
		if pg := t.pages[0].jobs; pg != nil {
			for k, j := range pg {
				if j != nil {
					t.old[t.base<<jobPageBits|uint64(k)] = j
				}
			}
			t.live--
		}
		t.pages[0] = pageRef{}
		t.pages = t.pages[1:]
		t.base++
		t.trim()
	}
}

// del removes job number n, if held.
func (t *jobTable) del(n uint64) {
	p := n >> jobPageBits
	if p < t.base {
		if _, ok := t.old[n]; ok {
			delete(t.old, n)
			t.n--
		}
		return
	}
	i := p - t.base
	if i >= uint64(len(t.pages)) || t.pages[i].jobs == nil {
		return
	}
	ref := &t.pages[i]
	slot := &ref.jobs[n&jobPageMask]
	if *slot == nil {
		return
	}
	*slot = nil
	ref.n--
	t.n--
	if ref.n == 0 {
		*ref = pageRef{}
		t.live--
		t.trim()
	}
}

// trim drops the empty pages at both ends of the window.
func (t *jobTable) trim() {
	for len(t.pages) > 0 && t.pages[0].jobs == nil {
		t.pages = t.pages[1:]
		t.base++
	}
	for len(t.pages) > 0 && t.pages[len(t.pages)-1].jobs == nil {
		t.pages = t.pages[:len(t.pages)-1]
	}
}

// all yields every job with its number: the stragglers in old first, in
// no order, then the window's in number order. yield may delete the job
// it was given (as a range over a map may).
func (t *jobTable) all(yield func(uint64, *Job) bool) {
	for n, j := range t.old {
		if !yield(n, j) {
			return
		}
	}
	// By page number, not index: a delete may trim the window meanwhile.
	for p := t.base; ; p++ {
		p = max(p, t.base)
		if p-t.base >= uint64(len(t.pages)) {
			return
		}
		pg := t.pages[p-t.base].jobs
		if pg == nil {
			continue
		}
		for k := range pg {
			if j := pg[k]; j != nil {
				if !yield(p<<jobPageBits|uint64(k), j) {
					return
				}
			}
		}
	}
}
