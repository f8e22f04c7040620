package banyanv1

import "github.com/banyan-sched/banyan/pool"

// Vector converts wire resources to the scheduler's resource vector; nil is
// the zero vector.
func (r *Resources) Vector() pool.Resources {
	if r == nil {
		return pool.Resources{}
	}
	return pool.Resources{CPUMillis: r.CpuMillis, MemoryBytes: r.MemoryBytes, GPUs: r.Gpus,
		GPUMemoryBytes: r.GpuMemoryBytes, NVENC: r.Nvenc}
}

// FromVector converts a resource vector to its wire form.
func FromVector(v pool.Resources) *Resources {
	return &Resources{CpuMillis: v.CPUMillis, MemoryBytes: v.MemoryBytes, Gpus: v.GPUs,
		GpuMemoryBytes: v.GPUMemoryBytes, Nvenc: v.NVENC}
}

// QuotaFromPool converts a wire pool's guaranteed and max to a quota.
func QuotaFromPool(p *Pool) (pool.Quota, error) {
	q := pool.Quota{Guaranteed: p.GetGuaranteed().Vector()}
	if err := q.SetMax(p.GetMax().Vector(), p.GetMaxSet()); err != nil {
		return pool.Quota{}, err
	}
	return q, nil
}

// PoolFromQuota builds a wire pool from a path and quota.
func PoolFromQuota(path string, q pool.Quota) *Pool {
	return &Pool{Path: path, Guaranteed: FromVector(q.Guaranteed), Max: FromVector(q.Max), MaxSet: q.MaxNames()}
}
