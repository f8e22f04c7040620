package state

import "hash/maphash"

// idemIndex maps idempotency keys to their jobs. A server gives every
// submission that comes without a key one of its own, so a million queued
// jobs have a million keys: the index is keyed by a hash of the key (an
// entry half the size of a string key's), and the rare key whose hash
// another key already holds goes to a map by key. Which keys share a hash
// depends on the seed, but not what get returns.
type idemIndex struct {
	seed   maphash.Seed
	byHash map[uint64]*Job
	more   map[string]*Job
}

func newIdemIndex() idemIndex {
	return idemIndex{seed: maphash.MakeSeed(), byHash: map[uint64]*Job{}, more: map[string]*Job{}}
}

// get returns the job of key k.
func (x *idemIndex) get(k string) (*Job, bool) {
	if j, ok := x.byHash[maphash.String(x.seed, k)]; ok && j.PB.IdempotencyKey == k {
		return j, true
	}
	j, ok := x.more[k]
	return j, ok
}

// put maps key k (j's) to j.
func (x *idemIndex) put(k string, j *Job) {
	h := maphash.String(x.seed, k)
	if _, ok := x.more[k]; ok {
		x.more[k] = j
		return
	}
	if held, ok := x.byHash[h]; ok && held.PB.IdempotencyKey != k {
		x.more[k] = j
		return
	}
	x.byHash[h] = j
}

// del removes key k if it maps to j.
func (x *idemIndex) del(k string, j *Job) {
	h := maphash.String(x.seed, k)
	if x.byHash[h] == j {
		delete(x.byHash, h)
	} else if x.more[k] == j {
		delete(x.more, k)
	}
}

// each calls f for every key and its job.
func (x *idemIndex) each(f func(k string, j *Job)) {
	for _, j := range x.byHash {
		f(j.PB.IdempotencyKey, j)
	}
	for k, j := range x.more {
		f(k, j)
	}
}
