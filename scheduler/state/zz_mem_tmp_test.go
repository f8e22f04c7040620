package state

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

func TestZZMemProfile(t *testing.T) {
	runtime.MemProfileRate = 256
	s := New(DefaultDefaults)
	submitOneTaskJobs(t, s, 50_000, 1000)
	runtime.GC()
	f, _ := os.Create("/tmp/heap.out")
	pprof.WriteHeapProfile(f)
	f.Close()
	runtime.KeepAlive(s)
}
