package main

// The apply scenario: what one 200-job submit costs the replicated state
// machine, which every server runs for every entry, with a small fleet and
// with 10,000 agents registered. Applying a submission once built each
// job's client view, listing every agent (466 ms with 10,000 agents against
// 2.6 ms with 10); the cost must not grow with the fleet.

import (
	"fmt"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// applyJobs is the size of one measured submit entry.
const applyJobs = 200

// runApply measures FSM.Apply (the raft entry's decode, the state's apply
// and the event log, what each server does per entry) of applyJobs-job
// submits, with 10 agents and with 10,000 (2,000 with -quick).
func runApply(o options) Result {
	samples := scale(o, 200, 50)
	big := scale(o, 10_000, 2_000)
	m := map[string]float64{"agents": float64(big), "jobs_per_entry": applyJobs, "samples": float64(samples)}
	var parts []string
	for _, n := range []int{10, big} {
		times, err := applyTimes(n, samples)
		if err != nil {
			return Result{Err: err.Error()}
		}
		p50, p99 := percentile(times, 50), percentile(times, 99)
		if n == big {
			m["p50_ms"], m["p99_ms"] = p50, p99
		} else {
			m["p50_ms_10_agents"], m["p99_ms_10_agents"] = p50, p99
		}
		parts = append(parts, fmt.Sprintf("%d agents: p50 %.2f ms, p99 %.2f ms", n, p50, p99))
	}
	return Result{
		Summary: fmt.Sprintf("%d-job submit entries, %d each: %s", applyJobs, samples, strings.Join(parts, "; ")),
		Metrics: m,
		Target:  "a 200-job submit applies in under 5 ms with 10,000 agents (median of its entries)",
		Setup: &Setup{Servers: 1, Processes: "the server's state machine (server.NewFSM) inside the benchmark process, fed raft log entries directly: no raft, no network, no disk",
			Agents:   fmt.Sprintf("10, then %d registered by AgentUp entries (16 cpu, 64 GiB; a tenth with 4 GPUs and 32 NVENC sessions)", big),
			Jobs:     fmt.Sprintf("%d entries of %d one-task jobs (1 cpu, 1 GiB) each, applied one after another to the same state (the queue grows to %d jobs)", samples, applyJobs, samples*applyJobs),
			Settings: map[string]string{}},
		Notes: "time of FSM.Apply per entry, as raft's FSM goroutine calls it on every server; the entry is marshalled before the clock starts",
	}
}

// applyTimes registers agents agents on a fresh state machine, then times
// the apply of samples submit entries, sorted.
func applyTimes(agents, samples int) ([]time.Duration, error) {
	f := server.NewFSM(state.DefaultDefaults)
	index := uint64(0)
	apply := func(cmd *fsmpb.Command) (time.Duration, error) {
		data, err := proto.Marshal(cmd)
		if err != nil {
			return 0, fmt.Errorf("apply: marshal: %w", err)
		}
		index++
		start := time.Now()
		r, _ := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}).(*state.Result)
		took := time.Since(start)
		if r == nil {
			return 0, fmt.Errorf("apply: entry %d gave no result", index)
		}
		if r.Err != nil {
			return 0, fmt.Errorf("apply: entry %d: %w", index, r.Err)
		}
		return took, nil
	}
	now := time.Now().UnixMilli()
	for i := range agents {
		fp := &pb.Fingerprint{Hostname: fmt.Sprintf("host-%05d", i), Capacity: &pb.Resources{CpuMillis: 16000, MemoryBytes: 64 << 30}}
		if i%10 == 0 {
			fp.Capacity.Gpus, fp.Capacity.GpuMemoryBytes, fp.Capacity.Nvenc = 4, 64<<30, 32
			for g := range 4 {
				fp.Gpus = append(fp.Gpus, &pb.GPU{Index: int32(g), Uuid: fmt.Sprintf("GPU-%d-%d", i, g),
					MemoryBytes: 16 << 30, EncoderSessions: 8})
			}
		}
		if _, err := apply(&fsmpb.Command{NowUnixMs: now, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{
			AgentId: fmt.Sprintf("agent-%05d", i), Fingerprint: fp}}}); err != nil {
			return nil, err
		}
	}
	times := make([]time.Duration, 0, samples)
	for s := range samples {
		sub := &fsmpb.SubmitJobs{}
		for j := range applyJobs {
			sub.Jobs = append(sub.Jobs, &pb.JobSpec{Name: fmt.Sprintf("apply-%d-%d", s, j), Pool: "default",
				Tasks: []*pb.TaskSpec{{Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 1 << 30}}}})
			sub.TraceIds, sub.TraceSpanIds = append(sub.TraceIds, ""), append(sub.TraceSpanIds, "")
		}
		took, err := apply(&fsmpb.Command{NowUnixMs: now + int64(s), Cmd: &fsmpb.Command_Submit{Submit: sub}})
		if err != nil {
			return nil, err
		}
		times = append(times, took)
	}
	sortDurations(times)
	return times, nil
}
