package pool

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// randVec returns a vector with each field in [0, hi] (or 0 at random).
func randVec(rng *rand.Rand, hi Resources) Resources {
	hv := hi.values()
	var out [numResources]int64
	for i, h := range hv {
		if h > 0 && rng.Intn(3) > 0 {
			out[i] = rng.Int63n(h + 1)
		}
	}
	return fromValues(out)
}

var propScale = Resources{CPUMillis: 64, MemoryBytes: 64, GPUs: 8, GPUMemoryBytes: 64, NVENC: 8}

// randTree builds a valid tree of depth at most 3 through Put: guarantees
// nested within the parent's (when it has one) and maxes at or above them.
func randTree(rng *rand.Rand) *Tree {
	tr := NewTree()
	var add func(parent string, depth int, room Resources)
	add = func(parent string, depth int, room Resources) {
		n := 1 + rng.Intn(3)
		for i := range n {
			path := fmt.Sprintf("p%d", i)
			if parent != "" {
				path = parent + "/" + path
			}
			var q Quota
			if rng.Intn(4) > 0 {
				q.Guaranteed = randVec(rng, room)
			}
			for j, g := range q.Guaranteed.values() {
				if rng.Intn(3) == 0 {
					m := g + rng.Int63n(propScale.values()[j]+1)
					*q.Max.fields()[j], q.MaxSet[j] = m, true
				}
			}
			if err := tr.Put(path, q, true); err != nil {
				panic(err)
			}
			if parent != "" {
				if pq, _ := tr.Get(parent); !pq.Guaranteed.IsZero() {
					room = room.Sub(q.Guaranteed)
				}
			}
			if depth < 3 && rng.Intn(2) == 0 {
				childRoom := q.Guaranteed
				if childRoom.IsZero() {
					childRoom = propScale
				}
				add(path, depth+1, childRoom)
			}
		}
	}
	add("", 1, propScale)
	return tr
}

func leaves(tr *Tree) []string {
	var out []string
	for _, p := range tr.Paths() {
		if tr.IsLeaf(p) {
			out = append(out, p)
		}
	}
	return out
}

func rolledMap(v *View, tr *Tree) map[string]Resources {
	out := map[string]Resources{}
	for _, p := range tr.Paths() {
		out[p] = v.Rolled(p)
	}
	return out
}

func TestPropertyAdmit(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := range 2000 {
		tr := randTree(rng)
		ls := leaves(tr)
		usage := map[string]Resources{}
		for _, l := range ls {
			usage[l] = randVec(rng, propScale)
		}
		cluster := randVec(rng, propScale.Add(propScale).Add(propScale))
		v := NewView(tr, usage, cluster)
		for range 10 {
			p := ls[rng.Intn(len(ls))]
			ask := randVec(rng, Resources{CPUMillis: 16, MemoryBytes: 16, GPUs: 2, GPUMemoryBytes: 16, NVENC: 2})
			d := v.Admit(p, ask)
			withinMax := tr.Admits(p, rolledMap(v, tr), ask)
			within := v.WithinGuarantee(p, ask)
			switch {
			case d.OK && !withinMax:
				t.Fatalf("iter %d: Admit(%s, %v) let a pool exceed its max", iter, p, ask)
			case d.OK && !within && !ask.Fits(v.Idle()):
				t.Fatalf("iter %d: Admit(%s, %v) borrowed more than is idle (%v)", iter, p, ask, v.Idle())
			case d.OK && d.Borrowed == within:
				t.Fatalf("iter %d: Admit(%s, %v) = %+v, within guarantee %v", iter, p, ask, d, within)
			case !d.OK && withinMax && (within || ask.Fits(v.Idle())):
				t.Fatalf("iter %d: Admit(%s, %v) refused: %s", iter, p, ask, d.Reason)
			case !d.OK && d.Reason == "":
				t.Fatalf("iter %d: refusal without a reason", iter)
			}
			if within {
				q, _ := tr.Get(p)
				if !fitsOn(v.Rolled(p).Add(ask), q.Guaranteed, used(ask)) {
					t.Fatalf("iter %d: %v within %s's guarantee %v at usage %v", iter, ask, p, q.Guaranteed, v.Rolled(p))
				}
			}
			if d.OK {
				v.Add(p, ask)
			}
		}
	}
}

func TestPropertyOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for iter := range 1000 {
		tr := randTree(rng)
		ls := leaves(tr)
		usage := map[string]Resources{}
		for _, l := range ls {
			usage[l] = randVec(rng, propScale)
		}
		v := NewView(tr, usage, randVec(rng, propScale.Add(propScale)))
		var pending []string
		for _, l := range ls {
			if rng.Intn(3) > 0 {
				pending = append(pending, l)
			}
		}
		got := v.Order(pending)
		if a, b := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(pending)); !slices.Equal(a, b) {
			t.Fatalf("iter %d: Order(%v) = %v, not a permutation", iter, pending, got)
		}
		shuffled := slices.Clone(pending)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := v.Order(shuffled); !slices.Equal(again, got) {
			t.Fatalf("iter %d: Order depends on input order: %v vs %v", iter, got, again)
		}
		// A top-level pool below its guarantee is served before one that is not.
		for i := 1; i < len(got); i++ {
			a, b := Ancestors(got[i-1]), Ancestors(got[i])
			ta, tb := a[len(a)-1], b[len(b)-1]
			if ta != tb && !v.orderKey(ta).below && v.orderKey(tb).below {
				t.Fatalf("iter %d: %s (above guarantee) before %s (below)", iter, got[i-1], got[i])
			}
		}
	}
}

// victimsCase is a random cluster of nodes with running tasks, usage
// consistent with them, and one pending ask of a leaf pool.
type victimsCase struct {
	tr      *Tree
	v       *View
	path    string
	ask     Resources
	nodes   []NodeFree
	running []Running
	now     int64
	policy  PreemptPolicy
}

func randVictimsCase(rng *rand.Rand) victimsCase {
	tr := randTree(rng)
	ls := leaves(tr)
	c := victimsCase{tr: tr, path: ls[rng.Intn(len(ls))], now: 100_000}
	c.policy = PreemptPolicy{MinRuntimeMs: rng.Int63n(3) * 20_000, MaxVictims: 1 + rng.Intn(6)}
	usage := map[string]Resources{}
	small := Resources{CPUMillis: 8, MemoryBytes: 8, GPUs: 1, GPUMemoryBytes: 8, NVENC: 1}
	var cluster Resources
	for n := range 1 + rng.Intn(4) {
		node := fmt.Sprintf("n%d", n)
		free := randVec(rng, small)
		cluster = cluster.Add(free)
		for k := range rng.Intn(6) {
			r := Running{TaskID: fmt.Sprintf("%s-t%d", node, k), Pool: ls[rng.Intn(len(ls))], Node: node,
				Ask: randVec(rng, small), Class: Class(1 + rng.Intn(3)), Priority: int32(rng.Intn(3)),
				StartedMs: rng.Int63n(c.now)}
			c.running = append(c.running, r)
			usage[r.Pool] = usage[r.Pool].Add(r.Ask)
			cluster = cluster.Add(r.Ask)
		}
		c.nodes = append(c.nodes, NodeFree{Node: node, Free: free})
	}
	c.v = NewView(tr, usage, cluster)
	// Asks within the pool's guarantee where possible.
	q, _ := tr.Get(c.path)
	room := q.Guaranteed.Sub(c.v.Rolled(c.path))
	c.ask = randVec(rng, minVec(room, small.Add(small)))
	return c
}

func (c victimsCase) freedOn(node string, victims map[string]bool) Resources {
	var free Resources
	for _, n := range c.nodes {
		if n.Node == node {
			free = n.Free
		}
	}
	for _, r := range c.running {
		if victims[r.TaskID] {
			free = free.Add(r.Ask)
		}
	}
	return free
}

func TestPropertyVictims(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	found := 0
	for iter := range 20000 {
		c := randVictimsCase(rng)
		pre, ok := c.v.Victims(c.path, c.ask, c.nodes, GroupByNode(c.running), c.now, c.policy)
		if !ok {
			continue
		}
		if !c.v.WithinGuarantee(c.path, c.ask) {
			t.Fatalf("iter %d: victims for an ask beyond guarantee", iter)
		}
		found += len(pre.Victims)
		if len(pre.Victims) > c.policy.MaxVictims {
			t.Fatalf("iter %d: %d victims, limit %d", iter, len(pre.Victims), c.policy.MaxVictims)
		}
		byID := map[string]Running{}
		for _, r := range c.running {
			byID[r.TaskID] = r
		}
		set := map[string]bool{}
		removed := map[string]Resources{}
		anyOther := false
		for _, id := range pre.Victims {
			r, exists := byID[id]
			switch {
			case !exists || set[id]:
				t.Fatalf("iter %d: unknown or repeated victim %s", iter, id)
			case r.Node != pre.Node:
				t.Fatalf("iter %d: victim %s on %s, chosen node %s", iter, id, r.Node, pre.Node)
			case r.Pool == c.path:
				t.Fatalf("iter %d: victim %s of the requesting pool", iter, id)
			case c.now-r.StartedMs < c.policy.MinRuntimeMs:
				t.Fatalf("iter %d: victim %s younger than the minimum runtime", iter, id)
			}
			set[id] = true
			anyOther = anyOther || r.Class != ClassOpportunistic
			for _, a := range Ancestors(r.Pool) {
				removed[a] = removed[a].Add(r.Ask)
			}
		}
		freed := c.freedOn(pre.Node, set)
		if !c.ask.Fits(freed) {
			t.Fatalf("iter %d: ask %v does not fit %v after the victims", iter, c.ask, freed)
		}
		for id := range set {
			delete(set, id)
			if c.ask.Fits(c.freedOn(pre.Node, set)) {
				t.Fatalf("iter %d: victim %s not needed", iter, id)
			}
			set[id] = true
		}
		// No non-opportunistic victim leaves its pool (or an ancestor not
		// shared with the requester) below its guarantee.
		mine := map[string]bool{}
		for _, a := range Ancestors(c.path) {
			mine[a] = true
		}
		for id := range set {
			r := byID[id]
			if r.Class == ClassOpportunistic {
				continue
			}
			for _, a := range Ancestors(r.Pool) {
				if mine[a] {
					break
				}
				q, _ := c.tr.Get(a)
				if after := c.v.Rolled(a).Sub(removed[a]); !fitsOn(q.Guaranteed, after, used(r.Ask)) {
					t.Fatalf("iter %d: victim %s leaves %s at %v, below its guarantee %v", iter, id, a, after, q.Guaranteed)
				}
			}
		}
		// Opportunistic work first: if on some node the eligible
		// opportunistic tasks alone would free enough, no other task dies.
		if anyOther {
			for _, n := range c.nodes {
				opp := map[string]bool{}
				for _, r := range c.running {
					if r.Node == n.Node && r.Class == ClassOpportunistic && r.Pool != c.path &&
						c.now-r.StartedMs >= c.policy.MinRuntimeMs {
						opp[r.TaskID] = true
					}
				}
				if len(opp) <= c.policy.MaxVictims && c.ask.Fits(c.freedOn(n.Node, opp)) {
					t.Fatalf("iter %d: non-opportunistic victims %v although opportunistic work on %s suffices", iter, pre.Victims, n.Node)
				}
			}
		}
	}
	if found < 200 {
		t.Fatalf("only %d victims in all: the generator rarely needs preemption", found)
	}
}
