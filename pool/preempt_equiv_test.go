package pool

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// randWideVictimsCase is a Victims case with more nodes and tasks than
// randVictimsCase, shuffled node lists (some nodes twice, some without
// tasks, tasks on nodes not offered), and asks that often need several
// victims, so that the fast scan's shortcuts are exercised.
func randWideVictimsCase(rng *rand.Rand) victimsCase {
	tr := randTree(rng)
	ls := leaves(tr)
	c := victimsCase{tr: tr, path: ls[rng.Intn(len(ls))], now: 100_000}
	c.policy = PreemptPolicy{MinRuntimeMs: rng.Int63n(3) * 20_000, MaxVictims: rng.Intn(8)}
	usage := map[string]Resources{}
	small := Resources{CPUMillis: 8, MemoryBytes: 8, GPUs: 1, GPUMemoryBytes: 8, NVENC: 1}
	var cluster Resources
	nNodes := 1 + rng.Intn(12)
	for n := range nNodes + rng.Intn(3) {
		node := fmt.Sprintf("n%02d", n)
		free := randVec(rng, small)
		cluster = cluster.Add(free)
		for k := range rng.Intn(10) {
			r := Running{TaskID: fmt.Sprintf("%s-t%d", node, k), Pool: ls[rng.Intn(len(ls))], Node: node,
				Ask: randVec(rng, small), Class: Class(1 + rng.Intn(3)), Priority: int32(rng.Intn(4)) - 1,
				StartedMs: rng.Int63n(c.now)}
			if rng.Intn(4) == 0 {
				r.StartedMs = 50_000 // ties on start time leave the order to the task id
			}
			c.running = append(c.running, r)
			usage[r.Pool] = usage[r.Pool].Add(r.Ask)
			cluster = cluster.Add(r.Ask)
		}
		if n < nNodes { // the rest run tasks but are not offered
			c.nodes = append(c.nodes, NodeFree{Node: node, Free: free})
		}
	}
	rng.Shuffle(len(c.nodes), func(i, j int) { c.nodes[i], c.nodes[j] = c.nodes[j], c.nodes[i] })
	if rng.Intn(5) == 0 {
		dup := c.nodes[rng.Intn(len(c.nodes))]
		dup.Free = randVec(rng, small)
		c.nodes = append(c.nodes, dup)
	}
	c.v = NewView(tr, usage, cluster)
	q, _ := tr.Get(c.path)
	room := q.Guaranteed.Sub(c.v.Rolled(c.path))
	c.ask = randVec(rng, minVec(room, small.Add(small).Add(small)))
	return c
}

// TestVictimsMatchesReference checks that Victims (and VictimsIn over an
// index reused from call to call, as a scheduling pass does) decides as
// the first implementation did: same answer, node and victims in order.
func TestVictimsMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	gens := []func(*rand.Rand) victimsCase{randVictimsCase, randWideVictimsCase}
	var answered, multi int
	for iter := range 40000 {
		c := gens[iter%len(gens)](rng)
		grouped := GroupByNode(c.running)
		want, wantOK := c.v.refVictims(c.path, c.ask, c.nodes, grouped, c.now, c.policy)
		got, gotOK := c.v.Victims(c.path, c.ask, c.nodes, GroupByNode(c.running), c.now, c.policy)
		if gotOK != wantOK || got.Node != want.Node || !slices.Equal(got.Victims, want.Victims) {
			t.Fatalf("iter %d: Victims = %v %v, reference %v %v (path %s ask %v nodes %v policy %+v)",
				iter, got, gotOK, want, wantOK, c.path, c.ask, c.nodes, c.policy)
		}
		if wantOK {
			answered++
			if len(want.Victims) > 1 {
				multi++
			}
		}
		// A pass: one index, several asks, victims taken out as they fall.
		idx := NewRunningIndex(GroupByNode(c.running))
		if iter%3 > 0 {
			// Loaded node by node, with a hint as tight as the tasks
			// allow or a loose one.
			hint := RunningHint{MinPriority: -1000}
			if iter%3 == 1 {
				hint = RunningHint{MinPriority: 1 << 30, NoOpportunistic: true}
				for _, r := range c.running {
					hint.MinPriority = min(hint.MinPriority, r.Priority)
					hint.NoOpportunistic = hint.NoOpportunistic && r.Class != ClassOpportunistic
				}
			}
			loaded := map[string]bool{}
			idx = LoadRunningIndex(func(node string) []Running {
				if loaded[node] {
					t.Fatalf("iter %d: node %s loaded twice", iter, node)
				}
				loaded[node] = true
				return slices.Clone(grouped[node])
			}, hint)
		}
		v := c.v
		for range 3 {
			ask := randVec(rng, Resources{CPUMillis: 16, MemoryBytes: 16, GPUs: 1, GPUMemoryBytes: 16, NVENC: 2})
			want, wantOK := v.refVictims(c.path, ask, c.nodes, grouped, c.now, c.policy)
			got, gotOK := v.VictimsIn(c.path, ask, c.nodes, idx, c.now, c.policy)
			if gotOK != wantOK || got.Node != want.Node || !slices.Equal(got.Victims, want.Victims) {
				t.Fatalf("iter %d: VictimsIn = %v %v, reference %v %v", iter, got, gotOK, want, wantOK)
			}
			if !gotOK || len(got.Victims) == 0 {
				continue
			}
			gone := map[string]bool{}
			for _, id := range got.Victims {
				gone[id] = true
			}
			for _, r := range grouped[got.Node] {
				if gone[r.TaskID] {
					v.Remove(r.Pool, r.Ask)
				}
			}
			isGone := func(r Running) bool { return gone[r.TaskID] }
			grouped[got.Node] = slices.DeleteFunc(grouped[got.Node], isGone)
			idx.Set(got.Node, slices.DeleteFunc(idx.Tasks(got.Node), isGone))
		}
	}
	if answered < 5000 || multi < 500 {
		t.Fatalf("only %d answers, %d with several victims: the generators rarely need preemption", answered, multi)
	}
}

// TestRunningIndexBound checks the per-node bound against every plan on
// random nodes: a node it rules out has no plan, and no plan costs less
// than the bound.
func TestRunningIndexBound(t *testing.T) {
	rng := rand.New(rand.NewSource(16))
	checked := 0
	for iter := range 20000 {
		c := randWideVictimsCase(rng)
		idx := NewRunningIndex(GroupByNode(c.running))
		for _, n := range c.nodes {
			nr := idx.nodes[n.Node]
			if nr == nil || c.ask.Fits(n.Free) {
				continue
			}
			lb, ok := nr.bound(c.ask, n.Free, c.policy.MaxVictims)
			plan, planOK := c.v.refPlanNode(c.path, c.ask, n, nr.tasks, c.now, c.policy)
			if !planOK {
				continue
			}
			checked++
			n1, n2, n3 := plan.cost()
			got := planCost{nonOpp: n1, count: n2, maxPrio: n3}
			if !ok || got.less(lb) {
				t.Fatalf("iter %d node %s: plan %v costs %+v, bound %+v ok %v", iter, n.Node, plan.victims, got, lb, ok)
			}
		}
	}
	if checked < 2000 {
		t.Fatalf("only %d plans checked", checked)
	}
}
