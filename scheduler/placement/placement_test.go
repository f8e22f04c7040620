package placement

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/pool"
)

func res(t testing.TB, s string) pool.Resources {
	t.Helper()
	r, err := pool.ParseResources(s)
	if err != nil {
		t.Fatalf("ParseResources(%q): %v", s, err)
	}
	return r
}

func node(t testing.TB, id, capacity, used string, labels ...string) Node {
	t.Helper()
	n := Node{ID: id, Capacity: res(t, capacity), Used: res(t, used), Up: true}
	if len(labels) > 0 {
		n.Labels = map[string]string{}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			n.Labels[k] = v
		}
	}
	return n
}

func TestValidateConstraint(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Constraint
		want string // substring of the error, "" for nil
	}{
		{"equal", Constraint{Label: "zone", Op: "=", Value: "a"}, ""},
		{"empty op means equal", Constraint{Label: "zone", Value: "a"}, ""},
		{"not equal", Constraint{Label: "zone", Op: "!=", Value: "a"}, ""},
		{"exists", Constraint{Label: "ssd", Op: "exists"}, ""},
		{"not exists", Constraint{Label: "spot", Op: "not_exists"}, ""},
		{"unknown op", Constraint{Label: "zone", Op: "~=", Value: "a"}, `unknown op "~="`},
		{"empty label", Constraint{Op: "=", Value: "a"}, "empty label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateConstraint(tc.c)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPlace(t *testing.T) {
	type step struct {
		ask  string
		cons []Constraint
		want string // node ID, "" for no placement
	}
	eq := func(l, v string) Constraint { return Constraint{Label: l, Op: "=", Value: v} }
	for _, tc := range []struct {
		name  string
		nodes []Node
		steps []step
	}{
		{"fits cpu", []Node{node(t, "a", "cpu=4,memory=8Gi", "")},
			[]step{{ask: "cpu=4", want: "a"}, {ask: "cpu=1m", want: ""}}},
		{"too much cpu", []Node{node(t, "a", "cpu=4,memory=8Gi", "")},
			[]step{{ask: "cpu=4001m", want: ""}}},
		{"too much memory", []Node{node(t, "a", "cpu=4,memory=8Gi", "")},
			[]step{{ask: "cpu=1,memory=9Gi", want: ""}, {ask: "cpu=1,memory=8Gi", want: "a"}}},
		{"gpu on cpu node", []Node{node(t, "a", "cpu=4,memory=8Gi", "")},
			[]step{{ask: "cpu=1,gpu=1", want: ""}}},
		{"too many gpus", []Node{node(t, "g", "cpu=8,memory=8Gi,gpu=1,gpu_memory=8Gi,nvenc=2", "")},
			[]step{{ask: "gpu=2", want: ""}, {ask: "gpu=1", want: "g"}}},
		{"too much gpu memory", []Node{node(t, "g", "cpu=8,memory=8Gi,gpu=1,gpu_memory=8Gi,nvenc=2", "")},
			[]step{{ask: "gpu=1,gpu_memory=16Gi", want: ""}}},
		{"too many nvenc", []Node{node(t, "g", "cpu=8,memory=8Gi,gpu=1,gpu_memory=8Gi,nvenc=2", "")},
			[]step{{ask: "nvenc=2", want: "g"}, {ask: "nvenc=1", want: ""}}},
		{"existing use counts", []Node{node(t, "a", "cpu=4,memory=8Gi", "cpu=3")},
			[]step{{ask: "cpu=2", want: ""}, {ask: "cpu=1", want: "a"}}},
		{"overcommitted node takes nothing", []Node{node(t, "a", "cpu=4", "cpu=5")},
			[]step{{ask: "", want: ""}}},
		{"zero ask fits", []Node{node(t, "a", "cpu=4", "cpu=4")},
			[]step{{ask: "", want: "a"}}},
		{"down node skipped", []Node{
			{ID: "a", Capacity: res(t, "cpu=64"), Up: false},
			node(t, "b", "cpu=4", ""),
		}, []step{{ask: "cpu=8", want: ""}, {ask: "cpu=2", want: "b"}}},
		{"constraint equal", []Node{node(t, "a", "cpu=4", "", "zone=x"), node(t, "b", "cpu=4", "", "zone=y")},
			[]step{{ask: "cpu=1", cons: []Constraint{eq("zone", "y")}, want: "b"},
				{ask: "cpu=1", cons: []Constraint{{Label: "zone", Value: "x"}}, want: "a"},
				{ask: "cpu=1", cons: []Constraint{eq("zone", "z")}, want: ""}}},
		{"constraint not equal", []Node{node(t, "a", "cpu=4", "", "zone=x"), node(t, "b", "cpu=4", "", "zone=y"), node(t, "c", "cpu=2", "")},
			[]step{{ask: "cpu=3", cons: []Constraint{{Label: "zone", Op: "!=", Value: "x"}}, want: "b"},
				{ask: "cpu=2", cons: []Constraint{{Label: "zone", Op: "!=", Value: "x"}}, want: "c"}}},
		{"constraint exists", []Node{node(t, "a", "cpu=4", ""), node(t, "b", "cpu=8", "", "ssd=")},
			[]step{{ask: "cpu=1", cons: []Constraint{{Label: "ssd", Op: "exists"}}, want: "b"}}},
		{"constraint not exists", []Node{node(t, "a", "cpu=8", "", "spot=true"), node(t, "b", "cpu=8", "cpu=7")},
			[]step{{ask: "cpu=1", cons: []Constraint{{Label: "spot", Op: "not_exists"}}, want: "b"},
				{ask: "cpu=1", cons: []Constraint{{Label: "spot", Op: "not_exists"}}, want: ""}}},
		{"several constraints", []Node{
			node(t, "a", "cpu=8", "", "zone=x", "ssd=1"),
			node(t, "b", "cpu=8", "", "zone=x"),
			node(t, "c", "cpu=8", "", "zone=y", "ssd=1"),
		}, []step{{ask: "cpu=1", cons: []Constraint{eq("zone", "x"), {Label: "ssd", Op: "exists"}}, want: "a"},
			{ask: "cpu=1", cons: []Constraint{{Label: "ssd", Op: "exists"}, eq("zone", "y")}, want: "c"},
			{ask: "cpu=1", cons: []Constraint{{Label: "ssd", Op: "not_exists"}, eq("zone", "y")}, want: ""}}},
		{"invalid constraint places nothing", []Node{node(t, "a", "cpu=8", "", "zone=x")},
			[]step{{ask: "cpu=1", cons: []Constraint{{Label: "zone", Op: "~", Value: "x"}}, want: ""}}},
		{"best fit picks the fuller node", []Node{
			node(t, "a", "cpu=8,memory=16Gi", "cpu=1,memory=2Gi"),
			node(t, "b", "cpu=8,memory=16Gi", "cpu=6,memory=12Gi"),
			node(t, "c", "cpu=8,memory=16Gi", "cpu=3,memory=6Gi"),
		}, []step{{ask: "cpu=2,memory=4Gi", want: "b"}, {ask: "cpu=1", want: "c"}}},
		{"best fit small node fills first", []Node{
			node(t, "big", "cpu=64,memory=256Gi", ""),
			node(t, "small", "cpu=4,memory=8Gi", ""),
		}, []step{{ask: "cpu=2,memory=4Gi", want: "small"}, {ask: "cpu=2,memory=4Gi", want: "small"}, {ask: "cpu=2,memory=4Gi", want: "big"}}},
		{"cpu task avoids gpu node", []Node{
			node(t, "a-gpu", "cpu=16,memory=64Gi,gpu=2,gpu_memory=32Gi,nvenc=4", "cpu=15,memory=60Gi"),
			node(t, "b-cpu", "cpu=16,memory=64Gi", ""),
		}, []step{{ask: "cpu=1,memory=1Gi", want: "b-cpu"}}},
		{"cpu task uses gpu node when no cpu node fits", []Node{
			node(t, "a-gpu", "cpu=16,memory=64Gi,gpu=2,gpu_memory=32Gi", ""),
			node(t, "b-cpu", "cpu=2,memory=64Gi", ""),
		}, []step{{ask: "cpu=4", want: "a-gpu"}, {ask: "cpu=2", want: "b-cpu"}}},
		{"gpu task with nvenc goes to nvenc node", []Node{
			node(t, "a", "cpu=16,memory=64Gi,gpu=2,gpu_memory=32Gi", "gpu=1,gpu_memory=16Gi"),
			node(t, "b", "cpu=16,memory=64Gi,gpu=2,gpu_memory=32Gi,nvenc=3", ""),
		}, []step{{ask: "cpu=1,gpu=1,gpu_memory=8Gi,nvenc=1", want: "b"}, {ask: "cpu=1,gpu=1,gpu_memory=8Gi", want: "a"}}},
		{"gpu task packs onto busier gpu node", []Node{
			node(t, "a", "cpu=16,memory=64Gi,gpu=4,gpu_memory=64Gi,nvenc=4", ""),
			node(t, "b", "cpu=16,memory=64Gi,gpu=4,gpu_memory=64Gi,nvenc=4", "cpu=1,gpu=2,gpu_memory=32Gi,nvenc=2"),
		}, []step{{ask: "cpu=1,gpu=1,gpu_memory=16Gi,nvenc=1", want: "b"}}},
		{"ties broken by node ID", []Node{
			node(t, "n3", "cpu=4", ""), node(t, "n1", "cpu=4", ""), node(t, "n2", "cpu=4", ""),
		}, []step{{ask: "cpu=1", want: "n1"}, {ask: "cpu=3", want: "n1"}, {ask: "cpu=1", want: "n2"}}},
		{"no nodes", nil, []step{{ask: "cpu=1", want: ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlacer(tc.nodes)
			for i, s := range tc.steps {
				got, _, ok := p.Place(Ask{Resources: res(t, s.ask), Constraints: s.cons})
				if ok != (s.want != "") || got != s.want {
					t.Fatalf("step %d: Place(%s %v) = %q, %v; want %q", i, s.ask, s.cons, got, ok, s.want)
				}
			}
			checkNoOvercommit(t, p, tc.nodes)
		})
	}
}

// checkNoOvercommit fails if the placer added use beyond some node's capacity.
func checkNoOvercommit(t *testing.T, p *Placer, nodes []Node) {
	t.Helper()
	for _, n := range nodes {
		used, ok := p.Used(n.ID)
		if !ok {
			continue
		}
		if used == n.Used {
			continue // nothing placed; pre-existing overcommit is not ours
		}
		if ex := used.Exceeds(n.Capacity); len(ex) > 0 {
			t.Fatalf("node %s overcommitted on %v: used %v, capacity %v", n.ID, ex, used, n.Capacity)
		}
	}
}

func TestManyPlacementsNeverOvercommit(t *testing.T) {
	var nodes []Node
	for i := 0; i < 20; i++ {
		nodes = append(nodes, node(t, fmt.Sprintf("n%02d", i), "cpu=8,memory=32Gi", ""))
	}
	for i := 0; i < 5; i++ {
		nodes = append(nodes, node(t, fmt.Sprintf("g%02d", i), "cpu=16,memory=64Gi,gpu=2,gpu_memory=32Gi,nvenc=6", ""))
	}
	p := NewPlacer(nodes)
	asks := []Ask{
		{Resources: res(t, "cpu=3,memory=5Gi")},
		{Resources: res(t, "cpu=1500m,memory=10Gi")},
		{Resources: res(t, "cpu=2,memory=4Gi,gpu=1,gpu_memory=16Gi,nvenc=2")},
		{Resources: res(t, "cpu=1,memory=1Gi,nvenc=1")},
	}
	var placed pool.Resources
	count := 0
	for i := 0; i < 1000; i++ {
		a := asks[i%len(asks)]
		if _, _, ok := p.Place(a); ok {
			placed = placed.Add(a.Resources)
			count++
		}
	}
	checkNoOvercommit(t, p, nodes)
	if count < 50 {
		t.Fatalf("only %d placed", count)
	}
	// What was placed must be exactly the sum of use the placer reports.
	var total pool.Resources
	for _, n := range nodes {
		u, _ := p.Used(n.ID)
		total = total.Add(u)
	}
	if total != placed {
		t.Fatalf("placer reports %v used, placed %v", total, placed)
	}
}

func TestNegativeAskRefused(t *testing.T) {
	p := NewPlacer([]Node{node(t, "a", "cpu=4", "cpu=2")})
	if id, _, ok := p.Place(Ask{Resources: pool.Resources{CPUMillis: -1000}}); ok {
		t.Fatalf("negative ask placed on %s", id)
	}
	if u, _ := p.Used("a"); u.CPUMillis != 2000 {
		t.Fatalf("used changed to %v", u)
	}
}

func TestReleaseAndFull(t *testing.T) {
	nodes := []Node{node(t, "a", "cpu=2,memory=4Gi", ""), node(t, "b", "cpu=1,memory=4Gi", "")}
	p := NewPlacer(nodes)
	if p.Full() {
		t.Fatal("empty placer reports Full")
	}
	ask := Ask{Resources: res(t, "cpu=1,memory=1Gi")}
	for i := 0; i < 3; i++ {
		if _, _, ok := p.Place(ask); !ok {
			t.Fatalf("place %d failed", i)
		}
	}
	if !p.Full() {
		t.Fatal("all cpu used but Full is false")
	}
	if _, _, ok := p.Place(ask); ok {
		t.Fatal("placed on a full cluster")
	}
	// The failure is cached; a release must make the same ask placeable again.
	p.Release("a", ask.Resources, nil)
	if p.Full() {
		t.Fatal("Full after release")
	}
	if id, _, ok := p.Place(ask); !ok || id != "a" {
		t.Fatalf("after release: %q, %v", id, ok)
	}
	// Over-release clamps at zero; unknown nodes are ignored.
	p.Release("b", res(t, "cpu=100,memory=100Gi,gpu=3"), nil)
	p.Release("nope", res(t, "cpu=1"), nil)
	if u, _ := p.Used("b"); !u.IsZero() {
		t.Fatalf("used on b after over-release: %v", u)
	}
	if _, ok := p.Used("nope"); ok {
		t.Fatal("Used of unknown node ok")
	}
	if !NewPlacer(nil).Full() {
		t.Fatal("placer without nodes is not Full")
	}
}

func TestFailedShapeCacheRespectsConstraints(t *testing.T) {
	nodes := []Node{node(t, "a", "cpu=1", "", "zone=x"), node(t, "b", "cpu=4", "", "zone=y")}
	p := NewPlacer(nodes)
	cs := []Constraint{{Label: "zone", Value: "x"}}
	if _, _, ok := p.Place(Ask{Resources: res(t, "cpu=2"), Constraints: cs}); ok {
		t.Fatal("placed cpu=2 in zone x")
	}
	// Same resources, different constraints: not the same shape.
	cs[0].Value = "y" // the placer must have copied the slice
	if id, _, ok := p.Place(Ask{Resources: res(t, "cpu=2"), Constraints: cs}); !ok || id != "b" {
		t.Fatalf("zone y: %q, %v", id, ok)
	}
	if id, _, ok := p.Place(Ask{Resources: res(t, "cpu=2")}); !ok || id != "b" {
		t.Fatalf("unconstrained: %q, %v", id, ok)
	}
}

func TestNewPlacerCopiesNodes(t *testing.T) {
	nodes := []Node{node(t, "a", "cpu=2", ""), {ID: "a", Capacity: res(t, "cpu=64"), Up: true}}
	p := NewPlacer(nodes)
	nodes[0].Capacity.CPUMillis = 100000
	if _, _, ok := p.Place(Ask{Resources: res(t, "cpu=3")}); ok {
		t.Fatal("placer saw a later change to the caller's nodes, or the duplicate ID")
	}
}

// naiveFits reports whether some up node matching ask has room, by a plain
// scan over the model of what is used.
func naiveFits(nodes []Node, used map[string]pool.Resources, ask Ask) bool {
	seen := map[string]bool{}
	for _, n := range nodes {
		if !n.Up || seen[n.ID] {
			continue
		}
		seen[n.ID] = true
		ok := true
		for _, c := range ask.Constraints {
			ok = ok && c.Matches(n.Labels)
		}
		if ok && ask.Resources.Fits(n.Capacity.Sub(used[n.ID])) {
			return true
		}
	}
	return false
}

func randomNodes(rng *rand.Rand, count int) []Node {
	zones := []string{"a", "b", "c"}
	nodes := make([]Node, count)
	for i := range nodes {
		n := Node{
			ID:     fmt.Sprintf("n%04d", i),
			Up:     rng.Intn(10) != 0,
			Labels: map[string]string{"zone": zones[rng.Intn(len(zones))]},
		}
		n.Capacity.CPUMillis = int64(1+rng.Intn(64)) * 1000
		n.Capacity.MemoryBytes = int64(1+rng.Intn(256)) << 30
		if rng.Intn(3) == 0 {
			n.Capacity.GPUs = int64(1 + rng.Intn(8))
			n.Capacity.GPUMemoryBytes = n.Capacity.GPUs * 16 << 30
			n.Capacity.NVENC = int64(rng.Intn(2)) * n.Capacity.GPUs * 3
			n.Labels["gpu.model"] = []string{"A100", "L4", "T4"}[rng.Intn(3)]
		}
		if rng.Intn(4) == 0 {
			n.Labels["ssd"] = "true"
		}
		if rng.Intn(5) == 0 { // some existing use
			n.Used.CPUMillis = rng.Int63n(n.Capacity.CPUMillis + 1)
			n.Used.MemoryBytes = rng.Int63n(n.Capacity.MemoryBytes + 1)
		}
		nodes[i] = n
	}
	return nodes
}

func randomAsk(rng *rand.Rand) Ask {
	var a Ask
	a.Resources.CPUMillis = int64(rng.Intn(16000))
	a.Resources.MemoryBytes = int64(rng.Intn(64)) << 30
	if rng.Intn(3) == 0 {
		a.Resources.GPUs = int64(1 + rng.Intn(2))
		a.Resources.GPUMemoryBytes = int64(rng.Intn(32)) << 30
		a.Resources.NVENC = int64(rng.Intn(3))
	}
	switch rng.Intn(6) {
	case 0:
		a.Constraints = []Constraint{{Label: "zone", Value: "b"}}
	case 1:
		a.Constraints = []Constraint{{Label: "ssd", Op: OpExists}, {Label: "zone", Op: OpNotEqual, Value: "a"}}
	case 2:
		a.Constraints = []Constraint{{Label: "gpu.model", Op: OpNotExists}}
	}
	return a
}

func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for round := 0; round < 50; round++ {
		nodes := randomNodes(rng, 1+rng.Intn(40))
		p := NewPlacer(nodes)
		used := map[string]pool.Resources{}
		for _, n := range nodes {
			if _, ok := used[n.ID]; !ok {
				used[n.ID] = n.Used
			}
		}
		// A few recurring shapes exercise the failed-shape cache, which
		// random one-off asks would rarely hit.
		shapes := make([]Ask, 6)
		for i := range shapes {
			shapes[i] = randomAsk(rng)
		}
		hits, misses := 0, 0
		var placed []struct {
			id string
			r  pool.Resources
		}
		for step := 0; step < 300; step++ {
			if len(placed) > 0 && rng.Intn(10) == 0 {
				k := rng.Intn(len(placed))
				pl := placed[k]
				placed = append(placed[:k], placed[k+1:]...)
				p.Release(pl.id, pl.r, nil)
				used[pl.id] = used[pl.id].Sub(pl.r)
				continue
			}
			ask := randomAsk(rng)
			if rng.Intn(2) == 0 {
				ask = shapes[rng.Intn(len(shapes))]
			}
			want := naiveFits(nodes, used, ask)
			id, _, ok := p.Place(ask)
			if ok {
				hits++
			} else {
				misses++
			}
			if ok != want {
				t.Fatalf("round %d step %d: Place(%v %v) ok=%v, naive scan says %v", round, step, ask.Resources, ask.Constraints, ok, want)
			}
			if !ok {
				continue
			}
			used[id] = used[id].Add(ask.Resources)
			placed = append(placed, struct {
				id string
				r  pool.Resources
			}{id, ask.Resources})
			for _, n := range nodes {
				if n.ID != id {
					continue
				}
				if ex := used[id].Exceeds(n.Capacity); len(ex) > 0 {
					t.Fatalf("round %d step %d: %s overcommitted on %v", round, step, id, ex)
				}
				break
			}
			if got, _ := p.Used(id); got != used[id] {
				t.Fatalf("round %d step %d: placer says %s uses %v, model says %v", round, step, id, got, used[id])
			}
		}
		if round == 0 && (hits == 0 || misses == 0) {
			t.Fatalf("round 0 placed %d and failed %d: the test exercises too little", hits, misses)
		}
	}
}

func TestPlaceDeterministic(t *testing.T) {
	run := func() []string {
		rng := rand.New(rand.NewSource(7))
		nodes := randomNodes(rng, 200)
		// Shuffle input order: decisions must not depend on it.
		rand.New(rand.NewSource(int64(len(nodes)))).Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
		p := NewPlacer(nodes)
		var out []string
		for i := 0; i < 2000; i++ {
			id, _, _ := p.Place(randomAsk(rng))
			out = append(out, id)
		}
		return out
	}
	a := run()
	rng := rand.New(rand.NewSource(7))
	nodes := randomNodes(rng, 200)
	p := NewPlacer(nodes)
	for i := 0; i < 2000; i++ {
		id, _, _ := p.Place(randomAsk(rng))
		if id != a[i] {
			t.Fatalf("placement %d differs with node order: %q vs %q", i, id, a[i])
		}
	}
}

func TestPlaceAllocationFree(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	nodes := randomNodes(rng, 100)
	p := NewPlacer(nodes)
	asks := []Ask{
		{Resources: res(t, "cpu=100m,memory=1Mi")},
		{Resources: res(t, "cpu=100m"), Constraints: []Constraint{{Label: "zone", Value: "a"}}},
		{Resources: res(t, "cpu=100m"), Constraints: []Constraint{{Label: "ssd", Op: OpExists}, {Label: "zone", Op: OpNotEqual, Value: "c"}}},
		{Resources: res(t, "gpu=100")}, // fails; cached after the first time
	}
	for _, a := range asks { // warm the caches
		p.Place(a)
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		p.Place(asks[i%len(asks)])
		i++
	})
	if allocs != 0 {
		t.Fatalf("Place allocates %.1f times per call", allocs)
	}
}

func benchNodes(count int) []Node {
	nodes := make([]Node, count)
	for i := range nodes {
		n := Node{ID: fmt.Sprintf("agent-%04d", i), Up: i%50 != 7, Labels: map[string]string{"zone": string(rune('a' + i%4))}}
		if i%5 == 0 {
			n.Capacity = pool.Resources{CPUMillis: 64000, MemoryBytes: 256 << 30, GPUs: 4, GPUMemoryBytes: 4 * 24 << 30, NVENC: 12}
			n.Labels["gpu.model"] = "L4"
		} else {
			n.Capacity = pool.Resources{CPUMillis: 32000, MemoryBytes: 128 << 30}
		}
		nodes[i] = n
	}
	return nodes
}

func BenchmarkPlace1000Nodes(b *testing.B) {
	nodes := benchNodes(1000)
	asks := []Ask{
		{Resources: pool.Resources{CPUMillis: 2000, MemoryBytes: 4 << 30}},
		{Resources: pool.Resources{CPUMillis: 500, MemoryBytes: 1 << 30}},
		{Resources: pool.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30, GPUs: 1, GPUMemoryBytes: 8 << 30, NVENC: 2}},
		{Resources: pool.Resources{CPUMillis: 1000, MemoryBytes: 2 << 30}, Constraints: []Constraint{{Label: "zone", Value: "b"}}},
		{Resources: pool.Resources{CPUMillis: 3000, MemoryBytes: 6 << 30}, Constraints: []Constraint{{Label: "gpu.model", Op: OpNotExists}}},
	}
	p := NewPlacer(nodes)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := p.Place(asks[i%len(asks)]); !ok && p.Full() {
			b.StopTimer()
			p = NewPlacer(nodes)
			b.StartTimer()
		}
	}
}

// BenchmarkPlace1000NodesSaturated measures a pass where most asks no longer
// fit: the common shape of a deep queue against a busy farm.
func BenchmarkPlace1000NodesSaturated(b *testing.B) {
	nodes := benchNodes(1000)
	for i := range nodes {
		nodes[i].Used = nodes[i].Capacity.Sub(pool.Resources{CPUMillis: 1000})
	}
	asks := []Ask{
		{Resources: pool.Resources{CPUMillis: 2000, MemoryBytes: 4 << 30}},
		{Resources: pool.Resources{CPUMillis: 4000, MemoryBytes: 8 << 30, GPUs: 1}},
	}
	p := NewPlacer(nodes)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Place(asks[i%len(asks)])
	}
}

// TestDevicesNeverOverfilled places and releases random GPU asks on hosts
// with 1, 4 and 8 devices of mixed sizes, some system-capped, and checks
// after every step, against CheckGrants and a model of its own, that no
// device holds more memory or sessions than it offers, that whole devices
// are never shared, and that a host's session cap holds.
func TestDevicesNeverOverfilled(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	var nodes []Node
	for i, count := range []int{1, 4, 8} {
		n := Node{ID: fmt.Sprintf("h%d", i), Up: true, NVENCSystemCap: int64(i * 3)}
		for d := 0; d < count; d++ {
			mem := int64(4+4*(d%3)) << 30
			dev := Device{Index: int32(d), UUID: fmt.Sprintf("h%d-gpu%d", i, d), Memory: mem, Sessions: int64(2 + d%3),
				SystemCapped: i == 2 && d%2 == 0, Labels: map[string]string{DeviceLabelModel: []string{"L4", "A10"}[d%2]}}
			n.Devices = append(n.Devices, dev)
			n.Capacity = n.Capacity.Add(pool.Resources{GPUs: 1, GPUMemoryBytes: mem, NVENC: dev.Sessions})
		}
		n.Capacity.CPUMillis, n.Capacity.MemoryBytes = 64000, 256<<30
		nodes = append(nodes, n)
	}
	p := NewPlacer(nodes)
	type placed struct {
		node   string
		ask    Ask
		grants []Grant
	}
	var live []placed
	for step := 0; step < 3000; step++ {
		if len(live) > 0 && rng.Intn(3) == 0 {
			i := rng.Intn(len(live))
			p.Release(live[i].node, live[i].ask.Resources, live[i].grants)
			live = append(live[:i], live[i+1:]...)
		} else {
			ask := Ask{Resources: pool.Resources{CPUMillis: 100, GPUMemoryBytes: int64(rng.Intn(6)) << 30, NVENC: int64(rng.Intn(2))}}
			if rng.Intn(8) == 0 {
				ask.Resources = pool.Resources{CPUMillis: 100, GPUs: int64(1 + rng.Intn(2))}
			}
			if rng.Intn(4) == 0 {
				ask.Constraints = []Constraint{{Label: DeviceLabelModel, Value: "A10"}}
			}
			if id, grants, ok := p.Place(ask); ok {
				want := max(ask.Resources.GPUs, 1)
				if !needsDevice(&ask) {
					want = 0
				}
				if int64(len(grants)) != want {
					t.Fatalf("step %d: %v got %d grants, want %d", step, ask.Resources, len(grants), want)
				}
				live = append(live, placed{id, ask, grants})
			}
		}
		// The model: what the live placements hold on each device.
		use := map[string]*DeviceUse{}
		sys := map[string]int64{}
		for _, l := range live {
			a := l.ask.Resources
			for _, g := range l.grants {
				u := use[g.UUID]
				if u == nil {
					u = &DeviceUse{}
					use[g.UUID] = u
				}
				if u.Whole || (a.GPUs > 0 && u.Tasks > 0) {
					t.Fatalf("step %d: device %s shared with a whole-device task", step, g.UUID)
				}
				mem, ses := a.GPUMemoryBytes, a.NVENC
				if a.GPUs > 0 {
					mem, ses, u.Whole = ceilDiv(mem, a.GPUs), ceilDiv(ses, a.GPUs), true
				}
				u.Memory, u.Sessions, u.Tasks = u.Memory+mem, u.Sessions+ses, u.Tasks+1
				for _, n := range nodes {
					for _, d := range n.Devices {
						if d.UUID == g.UUID && d.SystemCapped {
							sys[n.ID] += ses
						}
					}
				}
				if l.ask.Constraints != nil {
					for _, n := range nodes {
						for _, d := range n.Devices {
							if d.UUID == g.UUID && d.Labels[DeviceLabelModel] != "A10" {
								t.Fatalf("step %d: gpu.model=A10 placed on %s (%s)", step, g.UUID, d.Labels[DeviceLabelModel])
							}
						}
					}
				}
			}
		}
		for _, n := range nodes {
			if n.NVENCSystemCap > 0 && sys[n.ID] > n.NVENCSystemCap {
				t.Fatalf("step %d: %s holds %d capped sessions over its cap %d", step, n.ID, sys[n.ID], n.NVENCSystemCap)
			}
			for _, d := range n.Devices {
				if u := use[d.UUID]; u != nil && (u.Memory > d.Memory || u.Sessions > d.Sessions) {
					t.Fatalf("step %d: %s holds %+v of memory %d, sessions %d", step, d.UUID, *u, d.Memory, d.Sessions)
				}
			}
		}
	}
	// CheckGrants agrees: each live placement fits once the others are
	// booked, and a bogus grant is refused with a reason.
	node := nodes[1]
	if err := CheckGrants(node, Ask{Resources: pool.Resources{GPUMemoryBytes: 1 << 30}}, []Grant{{Index: 9, UUID: "nope"}}); err == nil ||
		!strings.Contains(err.Error(), "no device nope") {
		t.Fatalf("CheckGrants with an unknown device: %v", err)
	}
	if err := CheckGrants(node, Ask{Resources: pool.Resources{GPUMemoryBytes: 64 << 30}}, []Grant{{Index: 0, UUID: "h1-gpu0"}}); err == nil ||
		!strings.Contains(err.Error(), "GPU memory needed") {
		t.Fatalf("CheckGrants over a device's memory: %v", err)
	}
	if err := CheckGrants(node, Ask{Resources: pool.Resources{GPUMemoryBytes: 1 << 30}}, nil); err == nil {
		t.Fatal("CheckGrants accepted a GPU ask without a grant on a node with devices")
	}
}
