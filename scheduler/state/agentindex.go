package state

import (
	"sync"

	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/placement"
)

// agentIndex keeps the agents as placement sees them (a placement.Fleet)
// from one scheduling pass to the next, so that a pass does not rebuild
// 10,000 nodes: Apply marks the agents it changes (agentChanged), and the
// next pass brings just those up to date. It also keeps the capacity of the
// up agents (Cluster) the same way.
//
// Apply runs alone (the FSM's write lock), while passes run under its read
// lock, possibly beside other readers: mu serialises passes, which write
// the index. Nothing here changes what a pass decides; the fleet holds
// exactly what nodes() would list (checkAgentIndex in the tests compares
// them after every command).
type agentIndex struct {
	mu    sync.Mutex
	fleet *placement.Fleet // nil until the first pass
	dirty map[string]struct{}
	// cluster is the capacity of the up agents; counted holds what each
	// agent adds to it.
	cluster pool.Resources
	counted map[string]pool.Resources
}

// agentChanged notes that placement's view of agent id may have changed:
// its use, devices, labels, capacity or whether it takes work.
func (s *State) agentChanged(id string) {
	x := &s.agentIdx
	if x.fleet == nil {
		return // the first pass builds the whole fleet
	}
	if x.dirty == nil {
		x.dirty = map[string]struct{}{}
	}
	x.dirty[id] = struct{}{}
}

// syncLocked brings the index up to date with the agents; x.mu is held.
func (x *agentIndex) syncLocked(s *State) {
	if x.fleet == nil {
		x.fleet = placement.NewFleet(s.nodes())
		x.counted = make(map[string]pool.Resources, len(s.agents))
		x.cluster = pool.Resources{}
		for id, a := range s.agents {
			x.count(id, a)
		}
		clear(x.dirty)
		return
	}
	for id := range x.dirty {
		a := s.agents[id]
		x.fleet.Set(a.node(id))
		x.count(id, a)
	}
	clear(x.dirty)
}

// count updates agent id's share of the cluster's capacity.
func (x *agentIndex) count(id string, a *Agent) {
	var c pool.Resources
	if a.Up() {
		c = a.Capacity
	}
	x.cluster = x.cluster.Sub(x.counted[id]).Add(c)
	if c.IsZero() {
		delete(x.counted, id)
	} else {
		x.counted[id] = c
	}
}

// openPass brings the index up to date and opens a placement pass on it.
// The caller must call closePass with the Placer when the pass ends.
func (s *State) openPass() (*placement.Placer, pool.Resources) {
	x := &s.agentIdx
	x.mu.Lock()
	x.syncLocked(s)
	return x.fleet.Placer(), x.cluster
}

// closePass puts the index back as the pass found it and lets the next
// pass in.
func (s *State) closePass(p *placement.Placer) {
	p.Close()
	s.agentIdx.mu.Unlock()
}
