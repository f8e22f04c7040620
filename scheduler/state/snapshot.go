package state

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/pool"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/google/btree"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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

// snapshotMarshal writes snapshot records. Deterministic: maps (labels,
// warm pools) are written in key order, so one state always gives the same
// bytes, whichever server or goroutine writes it.
var snapshotMarshal = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}

// ErrBadSnapshot wraps every reason a snapshot is refused: empty,
// truncated, foreign or of an unknown format.
var ErrBadSnapshot = errors.New("not a readable Banyan snapshot")

// WriteSnapshot streams the whole state: the magic and format, then
// length-delimited records: header, pools, agents, then each job followed by
// its tasks, then costs and ACL records, then the end mark. Derived indexes
// (queue, usage, exclusive keys) are rebuilt on restore, not stored. The
// caller keeps the state from changing meanwhile (a read lock is enough);
// Snapshot takes a view that can be written while Apply goes on.
func (s *State) WriteSnapshot(w io.Writer) error {
	v, err := s.view(s.order)
	if err != nil {
		return err
	}
	return v.Persist(w)
}

// SnapshotView is a consistent view of the state for one snapshot: the
// small parts (header, pools, agents, costs, ACL) already serialised, and
// the jobs and tasks as frozen copy-on-write records (cow.go). Persist
// writes it; Release lets Apply change the records in place again.
type SnapshotView struct {
	s        *State
	head     []byte // magic, header and pools
	agents   []*pb.Agent
	jobs     *btree.BTreeG[*jobRec]
	tail     []byte // costs, ACL records and the end mark
	released bool
}

// Snapshot takes a view of the state to write later with Persist, from
// another goroutine, while Apply goes on. It needs the state to itself
// (the FSM's write lock). Its cost grows with pools, costs and ACL records,
// which it serialises, a little with agents (a pointer each), and not with
// jobs or tasks: it clones the jobs' index lazily. While the view is held,
// Apply copies a job, task or agent record before it first changes it. Call Release when done with the view, under the
// same exclusion.
func (s *State) Snapshot() (*SnapshotView, error) {
	v, err := s.view(s.order.Clone())
	if err != nil {
		return nil, err
	}
	s.gen++
	s.views++
	return v, nil
}

// Release tells the state the view will not be written again, so that
// Apply may change the records it holds in place. It needs the state to
// itself, like Apply; releasing twice is harmless.
func (v *SnapshotView) Release() {
	if v.released {
		return
	}
	v.released = true
	if v.jobs != v.s.order {
		v.s.views--
	}
}

// view serialises the small parts of the state and returns a view over
// jobs, an index of job records.
func (s *State) view(jobs *btree.BTreeG[*jobRec]) (*SnapshotView, error) {
	v := &SnapshotView{s: s, jobs: jobs}
	var buf bytes.Buffer
	write := func(rec *fsmpb.SnapshotRecord) error {
		_, err := snapshotMarshal.MarshalTo(&buf, rec)
		return err
	}
	var head [len(SnapshotMagic) + 4]byte
	copy(head[:], SnapshotMagic)
	binary.BigEndian.PutUint32(head[len(SnapshotMagic):], SnapshotFormat)
	buf.Write(head[:])
	if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Header{
		Header: &fsmpb.SnapshotHeader{Version: snapshotVersion, Seq: s.seq, JobSeq: s.jobSeq}}}); err != nil {
		return nil, fmt.Errorf("write snapshot header: %w", err)
	}
	for _, path := range s.pools.Paths() {
		q, _ := s.pools.Get(path)
		rec := pb.PoolFromQuota(path, q)
		rec.Warm = s.poolWarm[path]
		if err := write(&fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Pool{Pool: rec}}); err != nil {
			return nil, fmt.Errorf("write pool %s: %w", path, err)
		}
	}
	v.head = bytes.Clone(buf.Bytes())
	v.agents = make([]*pb.Agent, len(s.agentIDs))
	for i, id := range s.agentIDs {
		v.agents[i] = s.agents[id].PB
	}
	buf.Reset()
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
				return nil, fmt.Errorf("write cost of %s: %w", path, err)
			}
		}
	}
	if err := s.writeACL(write); err != nil {
		return nil, err
	}
	if err := write(&fsmpb.SnapshotRecord{}); err != nil {
		return nil, fmt.Errorf("write snapshot end: %w", err)
	}
	v.tail = bytes.Clone(buf.Bytes())
	return v, nil
}

// Persist writes the view as a snapshot file (see WriteSnapshot): the
// same bytes WriteSnapshot would have written when the view was taken.
// It reads only frozen records, so it may run while Apply goes on.
func (v *SnapshotView) Persist(w io.Writer) error {
	rw := &recordWriter{w: bufio.NewWriterSize(w, 256<<10)}
	if _, err := rw.w.Write(v.head); err != nil {
		return fmt.Errorf("write snapshot head: %w", err)
	}
	agentRec := &fsmpb.SnapshotRecord_Agent{}
	for _, a := range v.agents {
		agentRec.Agent = a
		if err := rw.write(&fsmpb.SnapshotRecord{Rec: agentRec}); err != nil {
			return fmt.Errorf("write agent %s: %w", a.Id, err)
		}
	}
	var (
		err     error
		jobRecd = &fsmpb.JobRecord{}
		jobOut  = &fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Job{Job: jobRecd}}
		taskOne = &fsmpb.SnapshotRecord_Task{}
		taskRec = &fsmpb.SnapshotRecord{Rec: taskOne}
		tw      taskWriter
		jw      jobWriter
	)
	v.jobs.Ascend(func(r *jobRec) bool {
		jobRecd.Job, jobRecd.Seq = jw.record(r), r.seq
		jobRecd.TaskIds, jobRecd.TaskSeqs = jobRecd.TaskIds[:0], jobRecd.TaskSeqs[:0]
		for _, t := range r.tasks {
			jobRecd.TaskIds, jobRecd.TaskSeqs = append(jobRecd.TaskIds, t.pb.Id), append(jobRecd.TaskSeqs, t.t.Seq)
		}
		if err = rw.write(jobOut); err != nil {
			err = fmt.Errorf("write job %s: %w", r.job.Id, err)
			return false
		}
		for _, t := range r.tasks {
			taskOne.Task = tw.record(t.pb, t.t)
			if err = rw.write(taskRec); err != nil {
				err = fmt.Errorf("write task %s: %w", t.pb.Id, err)
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	if _, err := rw.w.Write(v.tail); err != nil {
		return fmt.Errorf("write snapshot tail: %w", err)
	}
	if err := rw.w.Flush(); err != nil {
		return fmt.Errorf("flush snapshot: %w", err)
	}
	return nil
}

// recordWriter writes size-delimited records as snapshotMarshal does, into
// buffers it reuses: a snapshot of a million tasks makes no garbage per
// record, so the heap does not grow by the snapshot's size while it is
// written.
type recordWriter struct {
	w    *bufio.Writer
	msg  []byte
	size []byte
}

func (rw *recordWriter) write(rec *fsmpb.SnapshotRecord) error {
	var err error
	rw.msg, err = snapshotMarshal.MarshalOptions.MarshalAppend(rw.msg[:0], rec)
	if err != nil {
		return err
	}
	rw.size = protowire.AppendVarint(rw.size[:0], uint64(len(rw.msg)))
	if _, err := rw.w.Write(rw.size); err != nil {
		return err
	}
	_, err = rw.w.Write(rw.msg)
	return err
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
	rs := &restoring{taskIDs: map[*Job][]string{}, tasks: map[string]*Task{}}
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
			ag := &Agent{PB: x.Agent, Running: map[string]int32{}, gen: s.gen}
			ag.setFingerprint(x.Agent.GetFingerprint())
			s.agents[x.Agent.Id] = ag
			s.addAgentID(x.Agent.Id)
		case *fsmpb.SnapshotRecord_Job:
			cur = &Job{PB: x.Job.Job, Seq: x.Job.Seq}
			rs.taskIDs[cur] = x.Job.TaskIds
			curSeqs = x.Job.TaskSeqs
			if len(curSeqs) != len(x.Job.TaskIds) {
				curSeqs = nil // an older snapshot: number from the job's
			}
			n, ok := jobNumber(cur.PB.Id)
			if !ok || jobID(n) != cur.PB.Id || n == 0 {
				return nil, badSnapshot("job id %q is not one of job-1..job-%d", cur.PB.Id, s.jobSeq)
			}
			if s.jobs.get(n) != nil {
				return nil, badSnapshot("job %s listed twice", cur.PB.Id)
			}
			s.jobs.put(n, cur)
			curIdx = 0
			if k := cur.PB.IdempotencyKey; k != "" {
				if _, dup := s.idem.get(k); dup {
					return nil, badSnapshot("two jobs with idempotency key %q", k)
				}
				s.idem.put(k, cur)
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
			if x.Task.Spec == nil {
				return nil, badSnapshot("task %s without a spec", x.Task.Id)
			}
			t := &Task{PB: x.Task, Seq: seq}
			s.setSpec(t, x.Task.Spec)
			x.Task.Spec = nil
			rs.tasks[x.Task.Id] = t
		}
	}
	if err := s.checkRestored(rs); err != nil {
		return nil, err
	}
	s.rebuild(rs)
	return s, nil
}

// restoring holds what ReadSnapshot read of jobs' tasks until rebuild
// gives each job its tasks.
type restoring struct {
	taskIDs map[*Job][]string // each job's task ids, as its record lists them
	tasks   map[string]*Task  // every task record read, by id
}

// rebuild gives each job its tasks and recomputes every derived index
// from jobs, tasks and agents. Job counts are recounted too, so that a
// snapshot written before a count existed (replaced) restores the counts
// Apply keeps now.
func (s *State) rebuild(rs *restoring) {
	s.ntasks = len(rs.tasks)
	for _, j := range s.jobs.all {
		if j.PB.Class == pb.JobClass_JOB_CLASS_OPPORTUNISTIC && !IsJobFinal(j.PB.State) {
			s.opportunistic[j.PB.Id] = struct{}{}
		}
		ids := rs.taskIDs[j]
		j.PB.Counts, j.counts = nil, nil
		if len(ids) > 1 {
			j.counts = &taskCounts{}
		}
		s.indexJob(j)
		j.rec.tasks = make([]taskRef, len(ids))
		for i, id := range ids {
			t := rs.tasks[id]
			t.gen = s.gen
			j.rec.tasks[i] = taskRef{pb: t.PB, t: t}
		}
		var names map[string]string
		for _, ref := range j.rec.tasks {
			t, id := ref.t, ref.pb.Id
			if j.counts != nil {
				j.counts.add(t.PB.State, t.PB.ReplacedBy != "", 1)
			}
			s.wire(t, j, &names)
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
