package state

import (
	"fmt"
	"io"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// BenchmarkSnapshotHoldAgents measures Snapshot (the part of a snapshot
// taken under the FSM's lock) with 10,000 agents, a tenth with four GPUs:
// agents, pools, costs and ACL records are serialised there, jobs and
// tasks are not (see BenchmarkSnapshotHold in package server for those).
//
//	go test -run X -bench SnapshotHoldAgents ./scheduler/state
func BenchmarkSnapshotHoldAgents(b *testing.B) {
	s := New(DefaultDefaults)
	for i := range 10_000 {
		fp := &pb.Fingerprint{Hostname: fmt.Sprint("host-", i), Labels: map[string]string{"zone": fmt.Sprint("z", i%4)},
			Capacity: &pb.Resources{CpuMillis: 16000, MemoryBytes: 64 << 30}}
		if i%10 == 0 {
			fp.Capacity.Gpus, fp.Capacity.GpuMemoryBytes, fp.Capacity.Nvenc = 4, 64<<30, 32
			for g := range 4 {
				fp.Gpus = append(fp.Gpus, &pb.GPU{Index: int32(g), Uuid: fmt.Sprintf("GPU-%d-%d", i, g),
					MemoryBytes: 16 << 30, EncoderSessions: 8})
			}
		}
		s.Apply(&fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
			AgentId: fmt.Sprintf("a%05d", i), Address: "10.0.0.1:7000", Fingerprint: fp}}})
	}
	var hold time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		v, err := s.Snapshot()
		hold += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.Persist(io.Discard); err != nil {
			b.Fatal(err)
		}
		v.Release()
	}
	b.ReportMetric(float64(hold.Microseconds())/1000/float64(b.N), "hold-ms")
}
