//go:build !race

package state

// raceBuild reports whether the race detector is on: it gives small
// strings an allocation each (no tiny blocks), so heaps measure larger.
const raceBuild = false
