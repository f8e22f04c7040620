package pool

import (
	"fmt"
	"slices"
	"testing"
)

// benchVictimsFleet is a full cluster of 1,000 nodes of 32 cores, each
// running 1- and 2-core batch tasks of pool "batch" (no guarantee, so all
// may be preempted), and a pool "live" guaranteed 5% of the cpu.
func benchVictimsFleet(b *testing.B) (*View, []NodeFree, RunningByNode) {
	b.Helper()
	tr := NewTree()
	for _, p := range []struct {
		path string
		q    Quota
	}{{"batch", Quota{}}, {"live", Quota{Guaranteed: Resources{CPUMillis: 1_600_000, MemoryBytes: 1 << 40}}}} {
		if err := tr.Put(p.path, p.q, true); err != nil {
			b.Fatal(err)
		}
	}
	running := RunningByNode{}
	var nodes []NodeFree
	var used Resources
	for n := range 1000 {
		node := fmt.Sprintf("agent-%05d", n)
		left := int64(32_000)
		for k := 0; left > 0; k++ {
			cpu := min(left, int64(1000+1000*((n+k)%3/2)))
			r := Running{TaskID: fmt.Sprintf("%s-%d", node, k), Pool: "batch", Node: node,
				Ask: Resources{CPUMillis: cpu, MemoryBytes: cpu << 21}, Class: ClassBatch, StartedMs: 1}
			running[node] = append(running[node], r)
			used = used.Add(r.Ask)
			left -= cpu
		}
		nodes = append(nodes, NodeFree{Node: node, Free: Resources{MemoryBytes: 64 << 30}})
	}
	return NewView(tr, map[string]Resources{"batch": used}, used.Add(Resources{MemoryBytes: 1000 * 64 << 30})), nodes, running
}

// BenchmarkVictims measures one call over 1,000 full nodes of 32 tasks for
// asks that need one victim (2 cores) and several (8 cores): the first
// implementation (reference), Victims, and VictimsIn over an index made
// once (as a scheduling pass does).
func BenchmarkVictims(b *testing.B) {
	v, nodes, running := benchVictimsFleet(b)
	policy := PreemptPolicy{MinRuntimeMs: 0, MaxVictims: 20}
	for _, cpu := range []int64{2000, 8000} {
		ask := Resources{CPUMillis: cpu, MemoryBytes: cpu << 21}
		want, ok := v.refVictims("live", ask, nodes, running, 10, policy)
		if !ok {
			b.Fatalf("no victims for %v", ask)
		}
		same := func(got Preemption, ok bool) bool {
			return ok && got.Node == want.Node && slices.Equal(got.Victims, want.Victims)
		}
		b.Run(fmt.Sprintf("cpu=%d/reference", cpu/1000), func(b *testing.B) {
			for range b.N {
				if !same(v.refVictims("live", ask, nodes, running, 10, policy)) {
					b.Fatal("a different answer")
				}
			}
		})
		b.Run(fmt.Sprintf("cpu=%d/Victims", cpu/1000), func(b *testing.B) {
			for range b.N {
				if !same(v.Victims("live", ask, nodes, running, 10, policy)) {
					b.Fatal("a different answer")
				}
			}
		})
		b.Run(fmt.Sprintf("cpu=%d/VictimsIn", cpu/1000), func(b *testing.B) {
			byNode := RunningByNode{}
			for node, tasks := range running {
				byNode[node] = slices.Clone(tasks)
			}
			idx := NewRunningIndex(byNode)
			for range b.N {
				if !same(v.VictimsIn("live", ask, nodes, idx, 10, policy)) {
					b.Fatal("a different answer")
				}
			}
		})
	}
}
