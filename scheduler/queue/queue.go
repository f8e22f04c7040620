// Package queue is the scheduler's pending-task queue: one ordered set per
// pool, ordered by class, then priority, then submit order. It is pure data
// structure code: no clock, no I/O, no goroutines. The FSM owns one Queue and
// mutates it only from Apply, so every replica holds the same order.
package queue

import (
	"github.com/google/btree"
)

// Key orders tasks inside a pool. Lower Class first (latency=1 before
// batch=2 before opportunistic=3), then higher Priority, then lower Seq
// (earlier submission).
type Key struct {
	Class    int32
	Priority int32
	Seq      uint64
}

// Less reports whether k sorts before o.
func (k Key) Less(o Key) bool {
	if k.Class != o.Class {
		return k.Class < o.Class
	}
	if k.Priority != o.Priority {
		return k.Priority > o.Priority
	}
	return k.Seq < o.Seq
}

// Item is one queued task.
type Item struct {
	Key    Key
	TaskID string
	Pool   string
}

func itemLess(a, b Item) bool {
	if a.Key != b.Key {
		return a.Key.Less(b.Key)
	}
	return a.TaskID < b.TaskID
}

// entry is an item as a pool's tree holds it: without the pool, which
// the tree is (32 bytes instead of 48, for a million queued tasks).
type entry struct {
	Key    Key
	TaskID string
}

func entryLess(a, b entry) bool {
	if a.Key != b.Key {
		return a.Key.Less(b.Key)
	}
	return a.TaskID < b.TaskID
}

func entryOf(it Item) entry { return entry{Key: it.Key, TaskID: it.TaskID} }

func (e entry) item(pool string) Item { return Item{Key: e.Key, TaskID: e.TaskID, Pool: pool} }

// Queue holds queued tasks per pool. It keeps no index by task id (a
// million queued tasks would pay for it): callers name an item by its full
// value, which the FSM can always rebuild from the task.
type Queue struct {
	pools map[string]*btree.BTreeG[entry]
	n     int
}

// New returns an empty queue.
func New() *Queue {
	return &Queue{pools: map[string]*btree.BTreeG[entry]{}}
}

// Push adds an item; pushing an item already queued changes nothing.
func (q *Queue) Push(it Item) {
	t := q.pools[it.Pool]
	if t == nil {
		t = btree.NewG(32, entryLess)
		q.pools[it.Pool] = t
	}
	if _, replaced := t.ReplaceOrInsert(entryOf(it)); !replaced {
		q.n++
	}
}

// Remove drops an item; it reports whether it was queued.
func (q *Queue) Remove(it Item) bool {
	t := q.pools[it.Pool]
	if t == nil {
		return false
	}
	if _, ok := t.Delete(entryOf(it)); !ok {
		return false
	}
	q.n--
	if t.Len() == 0 {
		delete(q.pools, it.Pool)
	}
	return true
}

// Contains reports whether an item is queued.
func (q *Queue) Contains(it Item) bool {
	t := q.pools[it.Pool]
	return t != nil && t.Has(entryOf(it))
}

// Len is the number of queued tasks.
func (q *Queue) Len() int { return q.n }

// PoolLen is the number of queued tasks of one pool.
func (q *Queue) PoolLen(pool string) int {
	if t := q.pools[pool]; t != nil {
		return t.Len()
	}
	return 0
}

// Pools returns the pools that have queued tasks.
func (q *Queue) Pools() []string {
	out := make([]string, 0, len(q.pools))
	for p := range q.pools {
		out = append(out, p)
	}
	return out
}

// AscendPool visits one pool's tasks in order until fn returns false.
func (q *Queue) AscendPool(pool string, fn func(Item) bool) {
	if t := q.pools[pool]; t != nil {
		t.Ascend(func(e entry) bool { return fn(e.item(pool)) })
	}
}

// AscendPoolAfter visits one pool's tasks in order, starting after the
// item after (from the start when nil), until fn returns false.
func (q *Queue) AscendPoolAfter(pool string, after *Item, fn func(Item) bool) {
	t := q.pools[pool]
	if t == nil {
		return
	}
	if after == nil {
		t.Ascend(func(e entry) bool { return fn(e.item(pool)) })
		return
	}
	pivot := entryOf(*after)
	t.AscendGreaterOrEqual(pivot, func(e entry) bool {
		if e == pivot {
			return true
		}
		return fn(e.item(pool))
	})
}

// Ascend visits all queued tasks, merging the pools by Key, until fn
// returns false. fn must not modify the queue.
func (q *Queue) Ascend(fn func(Item) bool) {
	type cursor struct {
		tree *btree.BTreeG[entry]
		pool string
		cur  Item
		ok   bool
	}
	cursors := make([]*cursor, 0, len(q.pools))
	for pool, t := range q.pools {
		c := &cursor{tree: t, pool: pool}
		var e entry
		e, c.ok = t.Min()
		c.cur = e.item(pool)
		cursors = append(cursors, c)
	}
	for {
		var best *cursor
		for _, c := range cursors {
			if c.ok && (best == nil || itemLess(c.cur, best.cur)) {
				best = c
			}
		}
		if best == nil {
			return
		}
		if !fn(best.cur) {
			return
		}
		prev := entryOf(best.cur)
		best.ok = false
		best.tree.AscendGreaterOrEqual(prev, func(e entry) bool {
			if e == prev {
				return true
			}
			best.cur, best.ok = e.item(best.pool), true
			return false
		})
	}
}
