package state

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
)

// writeSnapshotReference is WriteSnapshot as it was before snapshots were
// taken as copy-on-write views: the whole state serialised in one pass. The
// tests check that the views write the same bytes.
func writeSnapshotReference(s *State, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	write := func(rec *fsmpb.SnapshotRecord) error {
		_, err := snapshotMarshal.MarshalTo(bw, rec)
		return err
	}
	var head [len(SnapshotMagic) + 4]byte
	copy(head[:], SnapshotMagic)
	binary.BigEndian.PutUint32(head[len(SnapshotMagic):], SnapshotFormat)
	if _, err := bw.Write(head[:]); err != nil {
		return fmt.Errorf("write snapshot magic: %w", err)
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
	for _, id := range referenceJobIDs(s) {
		j := s.job(id)
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Job{
			Job: &fsmpb.JobRecord{Job: s.jobRecord(j), Seq: j.Seq, TaskIds: j.TaskIDs(), TaskSeqs: s.taskSeqs(j)}}}); err != nil {
			return fmt.Errorf("write job %s: %w", id, err)
		}
		for _, tid := range j.TaskIDs() {
			if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Task{Task: s.task(tid).view()}}); err != nil {
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
	if err := s.writeACL(write); err != nil {
		return err
	}
	if err := write(&fsmpb.SnapshotRecord{}); err != nil {
		return fmt.Errorf("write snapshot end: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flush snapshot: %w", err)
	}
	return nil
}

// referenceJobIDs is JobIDs as it was: every job sorted by seq, then id.
func referenceJobIDs(s *State) []string {
	jobs := make([]*Job, 0, s.jobs.len())
	for _, j := range s.jobs.all {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool {
		if jobs[a].Seq != jobs[b].Seq {
			return jobs[a].Seq < jobs[b].Seq
		}
		return jobs[a].PB.Id < jobs[b].PB.Id
	})
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.PB.Id
	}
	return ids
}

// taskSeqs lists the sequence numbers of j's tasks, in TaskIDs order.
func (s *State) taskSeqs(j *Job) []uint64 {
	out := make([]uint64, len(j.TaskIDs()))
	for i, id := range j.TaskIDs() {
		if t, ok := s.Task(id); ok {
			out[i] = t.Seq
		}
	}
	return out
}
