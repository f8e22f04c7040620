package state

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/encoding/protodelim"
)

// snapshotVersion is written in every snapshot header.
const snapshotVersion = 1

// WriteSnapshot streams the whole state as length-delimited records:
// header, pools, agents, then each job followed by its tasks. Derived
// indexes (queue, usage, exclusive keys) are rebuilt on restore, not stored.
func (s *State) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	write := func(rec *fsmpb.SnapshotRecord) error {
		_, err := protodelim.MarshalTo(bw, rec)
		return err
	}
	if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Header{
		Header: &fsmpb.SnapshotHeader{Version: snapshotVersion, Seq: s.seq, JobSeq: s.jobSeq}}}); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	for _, path := range s.pools.Paths() {
		q, _ := s.pools.Get(path)
		rec := pb.PoolFromQuota(path, q)
		rec.Warm = s.poolWarm[path]
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Pool{Pool: rec}}); err != nil {
			return fmt.Errorf("write pool %s: %w", path, err)
		}
	}
	for _, id := range s.AgentIDs() {
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Agent{Agent: s.agents[id].PB}}); err != nil {
			return fmt.Errorf("write agent %s: %w", id, err)
		}
	}
	for _, id := range s.JobIDs() {
		j := s.jobs[id]
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Job{
			Job: &fsmpb.JobRecord{Job: j.PB, Seq: j.Seq, TaskIds: j.TaskIDs}}}); err != nil {
			return fmt.Errorf("write job %s: %w", id, err)
		}
		for _, tid := range j.TaskIDs {
			if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Task{Task: s.tasks[tid].PB}}); err != nil {
				return fmt.Errorf("write task %s: %w", tid, err)
			}
		}
	}
	for _, path := range sortedKeys(s.costs) {
		byHour := s.costs[path]
		hours := make([]int64, 0, len(byHour))
		for h := range byHour {
			hours = append(hours, h)
		}
		sort.Slice(hours, func(a, b int) bool { return hours[a] < hours[b] })
		for _, h := range hours {
			if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Cost{Cost: &fsmpb.PoolCost{
				Pool: path, HourUnixMs: h, Cost: costToPB(byHour[h])}}}); err != nil {
				return fmt.Errorf("write cost of %s: %w", path, err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flush snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot builds a state from a snapshot written by WriteSnapshot.
func ReadSnapshot(r io.Reader, d Defaults) (*State, error) {
	s := New(d)
	for _, p := range s.pools.Paths() {
		_ = s.pools.Delete(p)
	}
	br := bufio.NewReaderSize(r, 256<<10)
	var cur *Job
	curIdx := 0
	for n := 0; ; n++ {
		rec := &fsmpb.SnapshotRecord{}
		err := protodelim.UnmarshalFrom(br, rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read snapshot record %d: %w", n, err)
		}
		if err := checkRecord(rec); err != nil {
			return nil, fmt.Errorf("read snapshot record %d: %w", n, err)
		}
		switch x := rec.Rec.(type) {
		case *fsmpb.SnapshotRecord_Header:
			if x.Header.Version != snapshotVersion {
				return nil, fmt.Errorf("snapshot version %d, want %d", x.Header.Version, snapshotVersion)
			}
			s.seq, s.jobSeq = x.Header.Seq, x.Header.JobSeq
		case *fsmpb.SnapshotRecord_Pool:
			q, err := pb.QuotaFromPool(x.Pool)
			if err != nil {
				return nil, fmt.Errorf("snapshot pool %s: %w", x.Pool.Path, err)
			}
			if err := s.pools.Put(x.Pool.Path, q, true); err != nil {
				return nil, fmt.Errorf("snapshot pool %s: %w", x.Pool.Path, err)
			}
			if len(x.Pool.Warm) > 0 {
				s.poolWarm[x.Pool.Path] = x.Pool.Warm
			}
		case *fsmpb.SnapshotRecord_Agent:
			s.agents[x.Agent.Id] = &Agent{PB: x.Agent, Capacity: x.Agent.GetFingerprint().GetCapacity().Vector(),
				Running: map[string]int32{}}
			s.addAgentID(x.Agent.Id)
		case *fsmpb.SnapshotRecord_Job:
			cur = &Job{PB: x.Job.Job, Seq: x.Job.Seq, TaskIDs: x.Job.TaskIds}
			s.jobs[cur.PB.Id] = cur
			curIdx = 0
			if k := cur.PB.IdempotencyKey; k != "" {
				s.idem[k] = cur.PB.Id
			}
		case *fsmpb.SnapshotRecord_Cost:
			byHour := s.costs[x.Cost.Pool]
			if byHour == nil {
				byHour = map[int64]pool.Cost{}
				s.costs[x.Cost.Pool] = byHour
			}
			byHour[x.Cost.HourUnixMs] = costFromPB(x.Cost.Cost)
		case *fsmpb.SnapshotRecord_Task:
			if cur == nil || cur.PB.Id != x.Task.JobId {
				return nil, fmt.Errorf("snapshot task %s outside its job", x.Task.Id)
			}
			// A task's submit sequence is its job's plus its index plus one.
			curIdx++
			if x.Task.Spec != nil {
				x.Task.Spec.Resources = s.internResources(x.Task.Spec.Resources)
			}
			s.tasks[x.Task.Id] = &Task{PB: x.Task, Ask: x.Task.Spec.GetResources().Vector(),
				Seq: cur.Seq + uint64(curIdx)}
		}
	}
	if err := s.checkRestored(); err != nil {
		return nil, err
	}
	s.rebuild()
	return s, nil
}

// rebuild recomputes every derived index from jobs, tasks and agents. Job
// counts are recounted too, so that a snapshot written before a count
// existed (replaced) restores the counts Apply keeps now.
func (s *State) rebuild() {
	for _, j := range s.jobs {
		if j.PB.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC && !IsJobFinal(j.PB.State) {
			s.opportunistic[j.PB.Id] = struct{}{}
		}
		names := s.taskNames(j)
		j.PB.Counts = &pb.TaskCounts{Total: int32(len(j.TaskIDs))}
		for _, id := range j.TaskIDs {
			t := s.tasks[id]
			*countFor(j.PB.Counts, t.PB.State, t.PB.ReplacedBy != "")++
			s.wire(t, names)
			if _, ok := fallbackDue(t); ok {
				s.fallbackWatch[id] = struct{}{}
			}
			switch {
			case t.PB.State == pb.TaskState_TASK_STATE_QUEUED:
				s.queue.Push(s.queueItem(t))
			case isPlaced(t.PB.State):
				if ag, ok := s.agents[t.AgentID()]; ok {
					s.hold(t, ag, j.PB.Pool)
				}
			}
		}
	}
}

func costToPB(c pool.Cost) *pb.Cost {
	return &pb.Cost{CpuSeconds: c.CPUSeconds, GpuSeconds: c.GPUSeconds, NvencSeconds: c.NVENCSeconds,
		MemoryGibSeconds: c.MemoryGiBSeconds, Billed: c.Billed}
}

func costFromPB(c *pb.Cost) pool.Cost {
	return pool.Cost{CPUSeconds: c.GetCpuSeconds(), GPUSeconds: c.GetGpuSeconds(), NVENCSeconds: c.GetNvencSeconds(),
		MemoryGiBSeconds: c.GetMemoryGibSeconds(), Billed: c.GetBilled()}
}
