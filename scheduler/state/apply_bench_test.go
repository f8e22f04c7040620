package state

import (
	"fmt"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// BenchmarkApplySubmit200 applies a 200-job submit (one task each) to a
// state with 10 and with 10,000 agents (a tenth with four GPUs): Apply
// runs on every replica, so its cost must not grow with the fleet.
//
//	go test -run X -bench ApplySubmit200 ./scheduler/state
func BenchmarkApplySubmit200(b *testing.B) {
	for _, agents := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) {
			s := New(DefaultDefaults)
			for i := range agents {
				fp := &pb.Fingerprint{Hostname: fmt.Sprint(i), Capacity: &pb.Resources{CpuMillis: 16000, MemoryBytes: 64 << 30}}
				if i%10 == 0 {
					fp.Capacity.Gpus, fp.Capacity.GpuMemoryBytes, fp.Capacity.Nvenc = 4, 64<<30, 32
					for g := range 4 {
						fp.Gpus = append(fp.Gpus, &pb.GPU{Index: int32(g), Uuid: fmt.Sprintf("GPU-%d-%d", i, g),
							MemoryBytes: 16 << 30, EncoderSessions: 8})
					}
				}
				s.Apply(&fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
					AgentId: fmt.Sprintf("a%05d", i), Fingerprint: fp}}})
			}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				specs := make([]*pb.JobSpec, 200)
				for i := range specs {
					specs[i] = &pb.JobSpec{Name: "j", Tasks: []*pb.TaskSpec{{Command: []string{"true"},
						Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}}}}
				}
				if r := s.Apply(&fsmpb.Command{NowUnixMs: 2, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: specs}}}); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}
