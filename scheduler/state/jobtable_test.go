package state

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// checkTable compares t with want, the jobs it should hold, through every
// method: get, len and all (each job yielded once, with its number).
func checkTable(t *testing.T, tb *jobTable, want map[uint64]*Job, step string) {
	t.Helper()
	if tb.len() != len(want) {
		t.Fatalf("%s: len %d, want %d", step, tb.len(), len(want))
	}
	seen := map[uint64]bool{}
	for n, j := range tb.all {
		if seen[n] {
			t.Fatalf("%s: all yields job %d twice", step, n)
		}
		seen[n] = true
		if want[n] != j {
			t.Fatalf("%s: all yields %p for job %d, want %p", step, j, n, want[n])
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%s: all yields %d jobs, want %d", step, len(seen), len(want))
	}
	for n, j := range want {
		if got := tb.get(n); got != j {
			t.Fatalf("%s: get(%d) = %p, want %p", step, n, got, j)
		}
	}
}

// The window of pages stays proportional to the live pages, whatever the
// numbers: a new page that would stretch it moves the oldest pages to the
// map.
func checkWindow(t *testing.T, tb *jobTable, step string) {
	t.Helper()
	live := 0
	for _, ref := range tb.pages {
		if ref.jobs != nil {
			live++
			n := 0
			for _, j := range ref.jobs {
				if j != nil {
					n++
				}
			}
			if n != ref.n || n == 0 {
				t.Fatalf("%s: a page holds %d jobs and counts %d", step, n, ref.n)
			}
		}
	}
	if live != tb.live {
		t.Fatalf("%s: %d live pages, counted %d", step, live, tb.live)
	}
	if len(tb.pages) > 0 && (tb.pages[0].jobs == nil || tb.pages[len(tb.pages)-1].jobs == nil) {
		t.Fatalf("%s: the window of %d pages starts or ends with an empty page", step, len(tb.pages))
	}
	for n := range tb.old {
		if n>>jobPageBits >= tb.base {
			t.Fatalf("%s: job %d is in the map but its page %d is in the window from %d", step, n, n>>jobPageBits, tb.base)
		}
	}
}

func TestJobTableMatchesAMap(t *testing.T) {
	far := uint64(math.MaxUint64 - 5)
	cases := []struct {
		name string
		ops  func(r *rand.Rand, put func(uint64), del func(uint64), live func() []uint64)
	}{
		{"submit order, oldest out first", func(r *rand.Rand, put, del func(uint64), live func() []uint64) {
			next := uint64(1)
			for i := 0; i < 20000; i++ {
				put(next)
				next++
				if i > 500 {
					del(next - 500 - uint64(r.Intn(50)))
				}
			}
		}},
		{"stragglers left behind", func(r *rand.Rand, put, del func(uint64), live func() []uint64) {
			next := uint64(1)
			for i := 0; i < 250000; i++ {
				put(next)
				if next > 300 && (next-300)%997 != 0 { // every 997th job never finishes
					del(next - 300)
				}
				next++
			}
		}},
		{"snapshot order with far numbers", func(r *rand.Rand, put, del func(uint64), live func() []uint64) {
			for _, n := range []uint64{1, 2, 129, far, 1 << 40, 3, far - 1, 1<<40 + 1, 1 << 20} {
				put(n)
			}
			del(far)
			del(1)
			put(far)
			put(1)
		}},
		{"random churn", func(r *rand.Rand, put, del func(uint64), live func() []uint64) {
			for i := 0; i < 30000; i++ {
				switch n := uint64(r.Intn(1 << 16)); r.Intn(3) {
				case 0, 1:
					put(n)
				default:
					if l := live(); len(l) > 0 {
						del(l[r.Intn(len(l))])
					}
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewSource(1))
			tb := newJobTable()
			want := map[uint64]*Job{}
			var keys []uint64
			steps := 0
			check := func(step string) {
				steps++
				if steps%997 == 0 || len(want) < 64 {
					checkTable(t, &tb, want, step)
					checkWindow(t, &tb, step)
				}
			}
			put := func(n uint64) {
				j := &Job{Seq: n}
				if _, ok := want[n]; !ok {
					keys = append(keys, n)
				}
				want[n] = j
				tb.put(n, j)
				if i := n>>jobPageBits - tb.base; n>>jobPageBits >= tb.base && i >= uint64(2*(tb.live+1)+maxWindowSlack) {
					t.Fatalf("put(%d): the window has %d pages for %d live", n, len(tb.pages), tb.live)
				}
				check(fmt.Sprintf("put(%d)", n))
			}
			del := func(n uint64) {
				delete(want, n)
				tb.del(n)
				check(fmt.Sprintf("del(%d)", n))
			}
			live := func() []uint64 {
				out := keys[:0]
				for _, n := range keys {
					if _, ok := want[n]; ok {
						out = append(out, n)
					}
				}
				keys = out
				return keys
			}
			c.ops(r, put, del, live)
			checkTable(t, &tb, want, "end")
			if c.name == "stragglers left behind" && (len(tb.old) == 0 || len(tb.pages) > 2*(tb.live+1)+maxWindowSlack) {
				t.Errorf("%d stragglers in the map, a window of %d pages for %d live: the stragglers should have left the window",
					len(tb.old), len(tb.pages), tb.live)
			}
		})
	}
}

// all may delete the job it yields, as a range over a map may, and still
// yields every other job once.
func TestJobTableDeleteWhileRanging(t *testing.T) {
	for _, far := range []bool{false, true} {
		tb := newJobTable()
		want := map[uint64]*Job{}
		for n := uint64(1); n <= 5000; n++ {
			if n/jobPageSize == 8 {
				continue // an empty page, skipped once the pages before it are emptied
			}
			want[n] = &Job{Seq: n}
			tb.put(n, want[n])
		}
		if far { // moves the first 1,000 jobs' pages into the map
			for n := uint64(1 << 30); n < 1<<30+1000; n++ {
				want[n] = &Job{Seq: n}
				tb.put(n, want[n])
			}
		}
		total := len(want)
		got := map[uint64]bool{}
		for n := range tb.all {
			if got[n] {
				t.Fatalf("far=%v: job %d yielded twice", far, n)
			}
			got[n] = true
			if n%3 != 0 || n < 1024 { // empties the first pages: the window is trimmed meanwhile
				tb.del(n)
				delete(want, n)
			}
		}
		if len(got) != total {
			t.Fatalf("far=%v: ranging while deleting yielded %d jobs, want %d", far, len(got), total)
		}
		checkTable(t, &tb, want, fmt.Sprintf("far=%v, after", far))
		checkWindow(t, &tb, "after")
	}
}
