package pool

// Cost is what a pool's tasks used, in resource-seconds, and what that is
// billed at.
type Cost struct {
	// CPUSeconds is core-seconds.
	CPUSeconds float64
	// GPUSeconds is GPU-device-seconds.
	GPUSeconds float64
	// NVENCSeconds is encoder-session-seconds.
	NVENCSeconds float64
	// MemoryGiBSeconds is GiB-seconds of main memory.
	MemoryGiBSeconds float64
	// Billed is the price of the above under Prices, after any discount.
	Billed float64
}

// Prices turn resource-seconds into a billed amount (in any currency unit).
// GPU memory is not billed apart: it comes with the GPU.
type Prices struct {
	// CPUSecond is the price of one core-second.
	CPUSecond float64
	// GPUSecond is the price of one GPU-second.
	GPUSecond float64
	// NVENCSecond is the price of one encoder-session-second.
	NVENCSecond float64
	// MemoryGiBSecond is the price of one GiB-second of memory.
	MemoryGiBSecond float64
	// OpportunisticDiscount is the fraction taken off opportunistic work's
	// price: 0.6 means it pays 40%. It is clamped to [0, 1].
	OpportunisticDiscount float64
}

// DefaultPrices are list prices in the order of on-demand cloud rates per
// hour: a core 0.036, a GPU 1.80, an encoder session 0.18, a GiB of memory
// 0.0036; opportunistic work pays 40%.
func DefaultPrices() Prices {
	return Prices{
		CPUSecond:             0.036 / 3600,
		GPUSecond:             1.80 / 3600,
		NVENCSecond:           0.18 / 3600,
		MemoryGiBSecond:       0.0036 / 3600,
		OpportunisticDiscount: 0.6,
	}
}

// CostOf is the cost of holding ask for durationMs; a duration of zero or
// less costs nothing.
func CostOf(ask Resources, durationMs int64, opportunistic bool, p Prices) Cost {
	if durationMs <= 0 {
		return Cost{}
	}
	s := float64(durationMs) / 1000
	c := Cost{
		CPUSeconds:       float64(ask.CPUMillis) / 1000 * s,
		GPUSeconds:       float64(ask.GPUs) * s,
		NVENCSeconds:     float64(ask.NVENC) * s,
		MemoryGiBSeconds: float64(ask.MemoryBytes) / (1 << 30) * s,
	}
	c.Billed = c.CPUSeconds*p.CPUSecond + c.GPUSeconds*p.GPUSecond +
		c.NVENCSeconds*p.NVENCSecond + c.MemoryGiBSeconds*p.MemoryGiBSecond
	if opportunistic {
		c.Billed *= 1 - min(max(p.OpportunisticDiscount, 0), 1)
	}
	return c
}

// Add returns the sum of c and o, field by field.
func (c Cost) Add(o Cost) Cost {
	return Cost{
		CPUSeconds:       c.CPUSeconds + o.CPUSeconds,
		GPUSeconds:       c.GPUSeconds + o.GPUSeconds,
		NVENCSeconds:     c.NVENCSeconds + o.NVENCSeconds,
		MemoryGiBSeconds: c.MemoryGiBSeconds + o.MemoryGiBSeconds,
		Billed:           c.Billed + o.Billed,
	}
}
