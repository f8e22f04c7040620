package queue

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
)

func TestOrderWithinAndAcrossPools(t *testing.T) {
	q := New()
	q.Push(Item{Key{2, 0, 1}, "batch-p0", "a"})
	q.Push(Item{Key{2, 5, 2}, "batch-p5", "b"})
	q.Push(Item{Key{1, 0, 3}, "latency", "a"})
	q.Push(Item{Key{3, 9, 0}, "opportunistic", "b"})
	q.Push(Item{Key{2, 5, 4}, "batch-p5-later", "a"})
	var got []string
	q.Ascend(func(it Item) bool { got = append(got, it.TaskID); return true })
	want := []string{"latency", "batch-p5", "batch-p5-later", "batch-p0", "opportunistic"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	var inA []string
	q.AscendPool("a", func(it Item) bool { inA = append(inA, it.TaskID); return true })
	if fmt.Sprint(inA) != "[latency batch-p5-later batch-p0]" {
		t.Fatalf("pool a = %v", inA)
	}
}

func TestPushTwiceAndRemove(t *testing.T) {
	q := New()
	a, b := Item{Key{2, 0, 1}, "t", "a"}, Item{Key{2, 0, 9}, "u", "b"}
	q.Push(a)
	q.Push(a)
	q.Push(b)
	if q.Len() != 2 || q.PoolLen("a") != 1 || q.PoolLen("b") != 1 || !q.Contains(a) {
		t.Fatalf("len=%d a=%d b=%d", q.Len(), q.PoolLen("a"), q.PoolLen("b"))
	}
	if !q.Remove(a) || q.Remove(a) || q.Contains(a) || !q.Remove(b) || q.Len() != 0 || len(q.Pools()) != 0 {
		t.Fatal("remove did not empty the queue")
	}
}

// TestAscendMatchesSort compares the k-way merge with a plain sort.
func TestAscendMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	q := New()
	var all []Item
	for i := 0; i < 2000; i++ {
		it := Item{Key{int32(1 + rng.Intn(3)), int32(rng.Intn(5)), uint64(rng.Intn(500))},
			fmt.Sprintf("t%d", i), fmt.Sprintf("p%d", rng.Intn(6))}
		q.Push(it)
		all = append(all, it)
	}
	for i := 0; i < 300; i++ {
		j := rng.Intn(len(all))
		if !q.Remove(all[j]) {
			t.Fatalf("item %v not removed", all[j])
		}
		all = append(all[:j], all[j+1:]...)
	}
	sort.Slice(all, func(i, j int) bool { return itemLess(all[i], all[j]) })
	var got []Item
	q.Ascend(func(it Item) bool { got = append(got, it); return true })
	if len(got) != len(all) {
		t.Fatalf("got %d items, want %d", len(got), len(all))
	}
	for i := range got {
		if got[i] != all[i] {
			t.Fatalf("item %d = %+v, want %+v", i, got[i], all[i])
		}
	}
}
