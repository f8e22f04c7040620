package placement

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/banyan-sched/banyan/pool"
)

// randomFleet returns n nodes in random ID order: capacities from a few
// shapes (so that scores tie) and some random ones, a few down, some with
// GPUs listed as devices, use anywhere from idle to over-committed.
func randomFleet(r *rand.Rand, n int) []Node {
	shapes := []pool.Resources{
		{CPUMillis: 32000, MemoryBytes: 128 << 30},
		{CPUMillis: 64000, MemoryBytes: 256 << 30},
		{CPUMillis: 64000, MemoryBytes: 256 << 30, GPUs: 4, GPUMemoryBytes: 96 << 30, NVENC: 32},
		{CPUMillis: 16000, MemoryBytes: 64 << 30, GPUs: 1, GPUMemoryBytes: 24 << 30, NVENC: 8},
	}
	nodes := make([]Node, n)
	for i, k := range r.Perm(n) {
		c := shapes[r.Intn(len(shapes))]
		if r.Intn(5) == 0 {
			c.CPUMillis = int64(1+r.Intn(96)) * 1000
			c.MemoryBytes = int64(1+r.Intn(512)) << 30
		}
		nd := Node{ID: fmt.Sprintf("n%04d", k), Capacity: c, Up: r.Intn(12) != 0,
			Labels: map[string]string{"zone": fmt.Sprint("z", r.Intn(4))}}
		if r.Intn(8) == 0 {
			nd.Labels["fn.thumb"] = ""
		}
		if r.Intn(3) > 0 {
			nd.Used.CPUMillis = r.Int63n(c.CPUMillis + 2000)
			nd.Used.MemoryBytes = r.Int63n(c.MemoryBytes + 1)
		}
		if c.GPUs > 0 && r.Intn(4) > 0 {
			per := c.GPUMemoryBytes / c.GPUs
			for g := range c.GPUs {
				d := Device{Index: int32(g), UUID: fmt.Sprintf("%s-g%d", nd.ID, g), Memory: per, Sessions: c.NVENC / c.GPUs,
					Labels: map[string]string{DeviceLabelModel: []string{"L4", "A10"}[(k+int(g))%2]}}
				if r.Intn(3) == 0 {
					d.Use = DeviceUse{Memory: per / 2, Sessions: 1, Tasks: 1}
					nd.Used.GPUMemoryBytes += per / 2
					nd.Used.NVENC++
				}
				nd.Devices = append(nd.Devices, d)
			}
		}
		nodes[i] = nd
	}
	return nodes
}

// fleetAsk draws from a few shapes (so failed shapes repeat) with
// constraints now and then.
func fleetAsk(r *rand.Rand) Ask {
	asks := []pool.Resources{
		{CPUMillis: 1000, MemoryBytes: 2 << 30},
		{CPUMillis: 2000, MemoryBytes: 4 << 30},
		{CPUMillis: 8000, MemoryBytes: 16 << 30},
		{CPUMillis: 1000, MemoryBytes: 2 << 30, GPUMemoryBytes: 2 << 30, NVENC: 1},
		{CPUMillis: 4000, GPUs: 1, GPUMemoryBytes: 8 << 30},
		{},
	}
	a := Ask{Resources: asks[r.Intn(len(asks))]}
	if r.Intn(4) == 0 {
		a.Resources.CPUMillis = r.Int63n(40_000)
	}
	switch r.Intn(8) {
	case 0:
		a.Constraints = []Constraint{{Label: "zone", Op: OpEqual, Value: fmt.Sprint("z", r.Intn(4))}}
	case 1:
		a.Constraints = []Constraint{{Label: "fn.thumb", Op: OpExists}}
	case 2:
		a.Constraints = []Constraint{{Label: DeviceLabelModel, Op: OpEqual, Value: "L4"}}
	case 3:
		a.Constraints = []Constraint{{Label: "zone", Op: OpNotEqual, Value: "z1"}, {Label: "fn.thumb", Op: OpNotExists}}
	}
	return a
}

type placed struct {
	node   string
	res    pool.Resources
	grants []Grant
}

// TestFleetMatchesScan runs the same random placements, placements on a
// node and releases through a Placer that walks the Fleet's index and one
// that scans every node, and wants the same answer every time.
func TestFleetMatchesScan(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		r := rand.New(rand.NewSource(seed))
		nodes := randomFleet(r, 1+r.Intn(300))
		fast, ref := NewPlacer(nodes), NewPlacer(nodes)
		ref.scanAll = true
		var done []placed
		for step := 0; step < 600; step++ {
			switch k := r.Intn(10); {
			case k < 7:
				ask := fleetAsk(r)
				id1, g1, ok1 := fast.Place(ask)
				id2, g2, ok2 := ref.Place(ask)
				if id1 != id2 || ok1 != ok2 || !reflect.DeepEqual(g1, g2) {
					t.Fatalf("seed %d step %d: ask %+v: index chose %q %v %v, scan %q %v %v", seed, step, ask, id1, g1, ok1, id2, g2, ok2)
				}
				if ok1 {
					done = append(done, placed{id1, ask.Resources, g1})
				}
			case k < 9 && len(done) > 0:
				i := r.Intn(len(done))
				d := done[i]
				done = append(done[:i], done[i+1:]...)
				fast.Release(d.node, d.res, d.grants)
				ref.Release(d.node, d.res, d.grants)
			default:
				id, ask := nodes[r.Intn(len(nodes))].ID, fleetAsk(r)
				g1, ok1 := fast.PlaceOn(id, ask)
				g2, ok2 := ref.PlaceOn(id, ask)
				if ok1 != ok2 || !reflect.DeepEqual(g1, g2) {
					t.Fatalf("seed %d step %d: PlaceOn %s: %v %v vs %v %v", seed, step, id, g1, ok1, g2, ok2)
				}
				if ok1 {
					done = append(done, placed{id, ask.Resources, g1})
				}
			}
			if fast.Full() != ref.Full() {
				t.Fatalf("seed %d step %d: Full %v, scan %v", seed, step, fast.Full(), ref.Full())
			}
		}
		for _, n := range nodes {
			u1, ok1 := fast.Used(n.ID)
			u2, ok2 := ref.Used(n.ID)
			if u1 != u2 || ok1 != ok2 {
				t.Fatalf("seed %d: node %s used %v %v, scan %v %v", seed, n.ID, u1, ok1, u2, ok2)
			}
		}
	}
}

// TestFleetPassesAndSet keeps one Fleet across passes, changing nodes in
// between as a state machine would (use, labels, up, GPUs, new nodes), and
// wants each pass to decide as a Placer built from the same nodes afresh,
// and Close to leave the Fleet as it was before the pass.
func TestFleetPassesAndSet(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	nodes := randomFleet(r, 200)
	f := NewFleet(nodes)
	byID := map[string]Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	for pass := 0; pass < 40; pass++ {
		for range r.Intn(30) {
			var n Node
			if r.Intn(10) == 0 {
				n = randomFleet(r, 1)[0]
				n.ID = fmt.Sprintf("new%03d-%d", pass, r.Intn(1000))
			} else {
				n = byID[nodes[r.Intn(len(nodes))].ID]
				switch r.Intn(4) {
				case 0:
					n.Up = !n.Up
				case 1:
					n.Used.CPUMillis = r.Int63n(n.Capacity.CPUMillis + 1)
				case 2:
					n.Labels = map[string]string{"zone": fmt.Sprint("z", r.Intn(4))}
				default:
					n.Capacity = randomFleet(r, 1)[0].Capacity
				}
			}
			byID[n.ID] = n
			f.Set(n)
		}
		var want []Node
		for _, n := range byID {
			want = append(want, n)
		}
		before := f.Nodes()
		if len(before) != len(want) {
			t.Fatalf("pass %d: fleet has %d nodes, want %d", pass, len(before), len(want))
		}
		fresh := NewPlacer(want)
		p := f.Placer()
		for step := 0; step < 200; step++ {
			ask := fleetAsk(r)
			id1, g1, ok1 := p.Place(ask)
			id2, g2, ok2 := fresh.Place(ask)
			if id1 != id2 || ok1 != ok2 || !reflect.DeepEqual(g1, g2) {
				t.Fatalf("pass %d step %d: ask %+v: fleet chose %q %v %v, fresh %q %v %v", pass, step, ask, id1, g1, ok1, id2, g2, ok2)
			}
			if ok1 && r.Intn(5) == 0 {
				p.Release(id1, ask.Resources, g1)
				fresh.Release(id2, ask.Resources, g2)
			}
		}
		p.Close()
		p.Close() // a second Close does nothing
		if after := f.Nodes(); !reflect.DeepEqual(before, after) {
			t.Fatalf("pass %d: Close did not put the fleet back", pass)
		}
		if _, _, ok := p.Place(Ask{}); ok {
			t.Fatalf("pass %d: a closed Placer placed", pass)
		}
	}
}

// TestFleetFullFailsFast checks that an ask no node can hold is refused
// at the index's root, and that a placement looks at few subtrees.
func TestFleetFullFailsFast(t *testing.T) {
	var nodes []Node
	for i := range 1000 {
		nodes = append(nodes, node(t, fmt.Sprintf("n%04d", i), "cpu=32,memory=128Gi", "cpu=31,memory=64Gi"))
	}
	p := NewFleet(nodes).Placer()
	defer p.Close()
	for cpu := int64(2); cpu <= 40; cpu++ { // distinct shapes: no failed-shape cache
		p.visits = 0
		if _, _, ok := p.Place(Ask{Resources: pool.Resources{CPUMillis: cpu * 1000}}); ok {
			t.Fatalf("placed %d cpu where every node has 1 free", cpu)
		}
		if p.visits != 0 {
			t.Fatalf("refusing %d cpu looked at %d subtrees, want none past the root", cpu, p.visits)
		}
	}
	for i := range 10 {
		p.visits = 0
		want := fmt.Sprintf("n%04d", i)
		if id, _, ok := p.Place(Ask{Resources: res(t, "cpu=1")}); !ok || id != want {
			t.Fatalf("placed 1 cpu on %q %v, want %s", id, ok, want)
		}
		if p.visits > 64 {
			t.Fatalf("placing 1 cpu looked at %d subtrees of 1000 nodes", p.visits)
		}
	}
}

// BenchmarkPlace10k places tasks one by one on 10,000 nodes, a tenth of
// them with GPUs, through the index and through a full scan.
//
//	go test -run X -bench Place10k ./scheduler/placement
func BenchmarkPlace10k(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	nodes := randomFleet(r, 10_000)
	asks := make([]Ask, 256)
	for i := range asks {
		asks[i] = fleetAsk(r)
	}
	for _, scan := range []bool{false, true} {
		b.Run(fmt.Sprintf("scan=%v", scan), func(b *testing.B) {
			f := NewFleet(nodes)
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				p := f.Placer()
				p.scanAll = scan
				for _, a := range asks {
					p.Place(a)
				}
				p.Close()
			}
		})
	}
}

// TestMayFit checks that MayFit refuses only what Place refuses.
func TestMayFit(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewSource(seed))
		p := NewFleet(randomFleet(r, 1+r.Intn(200))).Placer()
		for step := 0; step < 400; step++ {
			ask := fleetAsk(r)
			may := p.MayFit(ask)
			if _, _, ok := p.Place(ask); ok && !may {
				t.Fatalf("seed %d step %d: MayFit refused %+v, which Place placed", seed, step, ask)
			}
		}
		p.Close()
	}
	full := NewPlacer([]Node{node(t, "a", "cpu=4", "cpu=4"), node(t, "b", "cpu=4,memory=1Gi", "cpu=3")})
	if full.MayFit(Ask{Resources: res(t, "cpu=2")}) || !full.MayFit(Ask{Resources: res(t, "cpu=1,memory=1Gi")}) {
		t.Fatal("MayFit does not follow free capacity")
	}
}

// TestFleetConstraintFallsBackToScan: a constraint the index cannot see
// (labels) matching a fifth of the nodes, all of them less utilized than
// the rest: the walk gives up after a bounded number of subtrees and scans
// the constraint's candidates, with the scan's answer.
func TestFleetConstraintFallsBackToScan(t *testing.T) {
	var nodes []Node
	for i := range 1000 {
		if i%5 == 0 {
			nodes = append(nodes, node(t, fmt.Sprintf("n%04d", i), "cpu=32,memory=128Gi", fmt.Sprintf("cpu=%d", i%7), "ssd=1"))
		} else {
			nodes = append(nodes, node(t, fmt.Sprintf("n%04d", i), "cpu=32,memory=128Gi", "cpu=24,memory=100Gi"))
		}
	}
	ask := Ask{Resources: res(t, "cpu=2,memory=1Gi"), Constraints: []Constraint{{Label: "ssd", Op: OpExists}}}
	fast, ref := NewPlacer(nodes), NewPlacer(nodes)
	ref.scanAll = true
	for step := range 50 {
		fast.visits = 0
		id1, _, ok1 := fast.Place(ask)
		id2, _, ok2 := ref.Place(ask)
		if id1 != id2 || ok1 != ok2 {
			t.Fatalf("step %d: index chose %q %v, scan %q %v", step, id1, ok1, id2, ok2)
		}
		if budget := 2*200 + 64; fast.visits > budget {
			t.Fatalf("step %d: the walk looked at %d subtrees, more than its budget of %d", step, fast.visits, budget)
		}
	}
}
