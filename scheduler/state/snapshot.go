package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/encoding/protodelim"
)

// snapshotVersion is written in every snapshot header record.
const snapshotVersion = 1

// Snapshot file format: SnapshotMagic, then the format version as 4
// big-endian bytes, then length-delimited SnapshotRecords (a header record
// first), then an empty record that marks the end. Files written before the
// magic existed (format 1: records only, no end mark) are still read.
const (
	// SnapshotMagic opens every snapshot file.
	SnapshotMagic = "\x89BANYAN\n"
	// SnapshotFormat is the version of the file format written now.
	SnapshotFormat = 2
	// maxSnapshotRecord bounds one record on read: far above the largest
	// record the state can reach (a job of MaxTasksPerJob task ids, about
	// 33 MB), and small enough that a damaged length is not believed.
	maxSnapshotRecord = 256 << 20
)

// ErrBadSnapshot wraps every reason a snapshot is refused: empty,
// truncated, foreign or of an unknown format.
var ErrBadSnapshot = errors.New("not a readable Banyan snapshot")

// WriteSnapshot streams the whole state: the magic and format, then
// length-delimited records: header, pools, agents, then each job followed by
// its tasks, then the end mark. Derived indexes (queue, usage, exclusive
// keys) are rebuilt on restore, not stored.
func (s *State) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	write := func(rec *fsmpb.SnapshotRecord) error {
		_, err := protodelim.MarshalTo(bw, rec)
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
	for _, id := range s.JobIDs() {
		j := s.jobs[id]
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Job{
			Job: &fsmpb.JobRecord{Job: j.PB, Seq: j.Seq, TaskIds: j.TaskIDs, TaskSeqs: s.taskSeqs(j)}}}); err != nil {
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

// readSnapshotHead reads the magic and format. It returns the format:
// SnapshotFormat, or 1 for a file from before the magic (left unread).
func readSnapshotHead(br *bufio.Reader) (uint32, error) {
	head, err := br.Peek(len(SnapshotMagic) + 4)
	switch {
	case len(head) == 0 && errors.Is(err, io.EOF):
		return 0, fmt.Errorf("%w: the file is empty", ErrBadSnapshot)
	case len(head) > 0 && head[0] == SnapshotMagic[0]:
		if len(head) < len(SnapshotMagic)+4 || string(head[:len(SnapshotMagic)]) != SnapshotMagic {
			return 0, fmt.Errorf("%w: damaged magic", ErrBadSnapshot)
		}
	case len(head) > 0 && head[0] > 0 && head[0] < 0x80:
		// Format 1 began with the short length of its header record; the
		// reader checks that a header record comes first.
		return 1, nil
	default:
		return 0, fmt.Errorf("%w: no Banyan magic at the start", ErrBadSnapshot)
	}
	format := binary.BigEndian.Uint32(head[len(SnapshotMagic):])
	if format != SnapshotFormat {
		return 0, fmt.Errorf("%w: format %d, this server reads %d (and 1)", ErrBadSnapshot, format, SnapshotFormat)
	}
	_, _ = br.Discard(len(head))
	return format, nil
}

// ReadSnapshot builds a state from a snapshot written by WriteSnapshot.
func ReadSnapshot(r io.Reader, d Defaults) (*State, error) {
	s := New(d)
	for _, p := range s.pools.Paths() {
		_ = s.pools.Delete(p)
	}
	br := bufio.NewReaderSize(r, 256<<10)
	format, err := readSnapshotHead(br)
	if err != nil {
		return nil, err
	}
	opts := protodelim.UnmarshalOptions{MaxSize: maxSnapshotRecord}
	var cur *Job
	curIdx := 0
	var curSeqs []uint64
	for n := 0; ; n++ {
		rec := &fsmpb.SnapshotRecord{}
		err := opts.UnmarshalFrom(br, rec)
		if errors.Is(err, io.EOF) && format == 1 && n > 0 {
			break
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: truncated after %d records (no end mark)", ErrBadSnapshot, n)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrBadSnapshot, n, err)
		}
		if _, isHeader := rec.Rec.(*fsmpb.SnapshotRecord_Header); (n == 0) != isHeader {
			return nil, fmt.Errorf("%w: record %d: the header record must come first, and once", ErrBadSnapshot, n)
		}
		if rec.Rec == nil && len(rec.ProtoReflect().GetUnknown()) > 0 {
			// Skipping it would start this server with less state than
			// its peers.
			return nil, fmt.Errorf("%w: record %d is of a type this version does not know (written by a newer version?)", ErrBadSnapshot, n)
		}
		if rec.Rec == nil {
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: data after the end mark", ErrBadSnapshot)
			}
			break
		}
		if ok, err := s.readACLRecord(rec); ok {
			if err != nil {
				return nil, err
			}
			continue
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
			ag := &Agent{PB: x.Agent, Running: map[string]int32{}}
			ag.setFingerprint(x.Agent.GetFingerprint())
			s.agents[x.Agent.Id] = ag
			s.addAgentID(x.Agent.Id)
		case *fsmpb.SnapshotRecord_Job:
			cur = &Job{PB: x.Job.Job, Seq: x.Job.Seq, TaskIDs: x.Job.TaskIds}
			curSeqs = x.Job.TaskSeqs
			if len(curSeqs) != len(cur.TaskIDs) {
				curSeqs = nil // an older snapshot: number from the job's
			}
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
			// A task's sequence is recorded with its job; snapshots from
			// before that number it from its job's, plus its index plus one.
			curIdx++
			seq := cur.Seq + uint64(curIdx)
			if curSeqs != nil && curIdx <= len(curSeqs) {
				seq = curSeqs[curIdx-1]
			}
			if x.Task.Spec != nil {
				x.Task.Spec.Resources = s.internResources(x.Task.Spec.Resources)
			}
			s.tasks[x.Task.Id] = &Task{PB: x.Task, Ask: x.Task.Spec.GetResources().Vector(), Seq: seq}
		}
	}
	if err := s.checkRestored(); err != nil {
		return nil, err
	}
	s.rebuild()
	return s, nil
}

// taskSeqs lists the sequence numbers of j's tasks, in TaskIDs order.
func (s *State) taskSeqs(j *Job) []uint64 {
	out := make([]uint64, len(j.TaskIDs))
	for i, id := range j.TaskIDs {
		if t, ok := s.tasks[id]; ok {
			out[i] = t.Seq
		}
	}
	return out
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
	s.recount()
}

func costToPB(c pool.Cost) *pb.Cost {
	return &pb.Cost{CpuSeconds: c.CPUSeconds, GpuSeconds: c.GPUSeconds, NvencSeconds: c.NVENCSeconds,
		MemoryGibSeconds: c.MemoryGiBSeconds, Billed: c.Billed}
}

func costFromPB(c *pb.Cost) pool.Cost {
	return pool.Cost{CPUSeconds: c.GetCpuSeconds(), GPUSeconds: c.GetGpuSeconds(), NVENCSeconds: c.GetNvencSeconds(),
		MemoryGiBSeconds: c.GetMemoryGibSeconds(), Billed: c.GetBilled()}
}
