package encode

import (
	"math"
	"sort"
)

// SimTask is one task of the projected farm run: a cost in seconds on one
// agent slot and the tasks (indices) it waits for.
type SimTask struct {
	Name string
	Cost float64
	Deps []int
}

// ListSchedule returns the makespan of tasks on agents identical slots
// under list scheduling: whenever a slot is free it takes the first task in
// order whose dependencies have finished (waiting for the earliest one to
// become ready when none has). order is a permutation of task indices.
func ListSchedule(tasks []SimTask, agents int, order []int) float64 {
	if agents < 1 || len(tasks) == 0 {
		return 0
	}
	free := make([]float64, agents)
	finish := make([]float64, len(tasks))
	done := make([]bool, len(tasks))
	left := len(tasks)
	makespan := 0.0
	for left > 0 {
		a := 0
		for i := range free {
			if free[i] < free[a] {
				a = i
			}
		}
		t := free[a]
		pick, pickReady := -1, 0.0
		earliest, earliestIdx := -1.0, -1
		for _, i := range order {
			if done[i] {
				continue
			}
			ready, ok := 0.0, true
			for _, d := range tasks[i].Deps {
				if !done[d] {
					ok = false
					break
				}
				ready = max(ready, finish[d])
			}
			if !ok {
				continue
			}
			if ready <= t {
				pick, pickReady = i, ready
				break
			}
			if earliestIdx < 0 || ready < earliest {
				earliest, earliestIdx = ready, i
			}
		}
		if pick < 0 {
			if earliestIdx < 0 {
				return -1 // a dependency cycle
			}
			pick, pickReady = earliestIdx, earliest
		}
		start := max(t, pickReady)
		finish[pick] = start + tasks[pick].Cost
		done[pick] = true
		free[a] = finish[pick]
		makespan = max(makespan, finish[pick])
		left--
	}
	return makespan
}

// CostliestFirst orders task indices by decreasing cost (ties by index).
func CostliestFirst(tasks []SimTask) []int {
	o := make([]int, len(tasks))
	for i := range o {
		o[i] = i
	}
	sort.SliceStable(o, func(a, b int) bool { return tasks[o[a]].Cost > tasks[o[b]].Cost })
	return o
}

// FIFO is the tasks' own order.
func FIFO(tasks []SimTask) []int {
	o := make([]int, len(tasks))
	for i := range o {
		o[i] = i
	}
	return o
}

// CriticalPath is the longest chain of costs through the dependencies.
func CriticalPath(tasks []SimTask) float64 {
	memo := make([]float64, len(tasks))
	seen := make([]bool, len(tasks))
	var f func(i int) float64
	f = func(i int) float64 {
		if seen[i] {
			return memo[i]
		}
		seen[i] = true
		best := 0.0
		for _, d := range tasks[i].Deps {
			best = max(best, f(d))
		}
		memo[i] = best + tasks[i].Cost
		return memo[i]
	}
	cp := 0.0
	for i := range tasks {
		cp = max(cp, f(i))
	}
	return cp
}

// Spearman is the rank correlation of a and b (equal lengths): 1 when they
// order the items the same way, -1 when opposite, 0 when n < 2 or either
// is constant. Ties take their mean rank.
func Spearman(a, b []float64) float64 {
	if len(a) != len(b) || len(a) < 2 {
		return 0
	}
	ra, rb := ranks(a), ranks(b)
	n := float64(len(a))
	mean := (n + 1) / 2
	var cov, va, vb float64
	for i := range ra {
		da, db := ra[i]-mean, rb[i]-mean
		cov += da * db
		va += da * da
		vb += db * db
	}
	if va == 0 || vb == 0 {
		return 0
	}
	return cov / math.Sqrt(va*vb)
}

// ranks gives each value its 1-based rank, ties their mean rank.
func ranks(v []float64) []float64 {
	o := make([]int, len(v))
	for i := range o {
		o[i] = i
	}
	sort.SliceStable(o, func(a, b int) bool { return v[o[a]] < v[o[b]] })
	r := make([]float64, len(v))
	for i := 0; i < len(o); {
		j := i
		for j+1 < len(o) && v[o[j+1]] == v[o[i]] {
			j++
		}
		for k := i; k <= j; k++ {
			r[o[k]] = float64(i+j)/2 + 1
		}
		i = j + 1
	}
	return r
}
