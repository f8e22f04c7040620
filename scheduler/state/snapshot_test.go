package state

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// Incident: an empty snapshot (or a foreign or truncated one) started the
// server with no state at all. Each is refused with ErrBadSnapshot now.
func TestReadSnapshotRefusesEmptyForeignTruncated(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}})
	var buf bytes.Buffer
	if err := f.s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if !bytes.HasPrefix(full, []byte(SnapshotMagic)) {
		t.Fatalf("snapshot does not start with the magic: %q", full[:12])
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":          {nil, "empty"},
		"foreign":        {[]byte("\xffPK\x03\x04 some zip file"), "no Banyan magic"},
		"foreign text":   {[]byte("hello, world\n"), "record 0"},
		"magic only":     {full[:len(SnapshotMagic)], "damaged magic"},
		"future format":  {append([]byte(SnapshotMagic), 0, 0, 0, 9), "format 9"},
		"cut at record":  {full[:len(full)-1], "truncated"},
		"cut mid record": {full[:len(full)-5], "record"},
		"after end":      {append(append([]byte(nil), full...), 1), "after the end mark"},
	} {
		_, err := ReadSnapshot(bytes.NewReader(tc.data), DefaultDefaults)
		if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrBadSnapshot naming %q", name, err, tc.want)
		}
	}
}

// Snapshots written before the magic (format 1: records only) still load.
func TestReadSnapshotReadsFormatOne(t *testing.T) {
	var old bytes.Buffer
	for _, rec := range []*fsmpb.SnapshotRecord{
		{Rec: &fsmpb.SnapshotRecord_Header{Header: &fsmpb.SnapshotHeader{Version: snapshotVersion, Seq: 7, JobSeq: 1}}},
		{Rec: &fsmpb.SnapshotRecord_Pool{Pool: &pb.Pool{Path: DefaultPool}}},
		{Rec: &fsmpb.SnapshotRecord_Job{Job: &fsmpb.JobRecord{Job: &pb.Job{Id: "job-1", Pool: DefaultPool,
			State: pb.JobState_JOB_STATE_SUCCEEDED}, Seq: 1, TaskIds: []string{"job-1.0"}}}},
		{Rec: &fsmpb.SnapshotRecord_Task{Task: &pb.Task{Id: "job-1.0", JobId: "job-1", Name: "t0",
			State: pb.TaskState_TASK_STATE_SUCCEEDED, Spec: &pb.TaskSpec{Name: "t0", Command: []string{"x"}}}}},
	} {
		if _, err := protodelim.MarshalTo(&old, rec); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ReadSnapshot(&old, DefaultDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Task("job-1.0"); !ok || s.seq != 7 {
		t.Fatalf("format 1 snapshot lost its content: seq %d", s.seq)
	}
}

// Incident: a record over 4 MiB could not be read back, so the server could
// not start. A job of 300,000 tasks (its record lists every task id) and a
// task at the spec bound round-trip.
func TestSnapshotRecordsOverFourMiBRoundTrip(t *testing.T) {
	const n = 220_000
	var buf bytes.Buffer
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("job-123456789.%d", i)
	}
	big := strings.Repeat("v", 1<<20-64)
	recs := []*fsmpb.SnapshotRecord{
		{Rec: &fsmpb.SnapshotRecord_Header{Header: &fsmpb.SnapshotHeader{Version: snapshotVersion, Seq: n + 1, JobSeq: 123456789}}},
		{Rec: &fsmpb.SnapshotRecord_Pool{Pool: &pb.Pool{Path: DefaultPool}}},
		{Rec: &fsmpb.SnapshotRecord_Job{Job: &fsmpb.JobRecord{Job: &pb.Job{Id: "job-123456789", Pool: DefaultPool,
			State: pb.JobState_JOB_STATE_SUCCEEDED}, Seq: 123456789, TaskIds: ids}}},
	}
	buf.WriteString(SnapshotMagic)
	buf.Write([]byte{0, 0, 0, SnapshotFormat})
	if size := proto.Size(recs[2]); size <= 4<<20 {
		t.Fatalf("job record is %d bytes: not over 4 MiB", size)
	}
	for _, rec := range recs {
		if _, err := protodelim.MarshalTo(&buf, rec); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		spec := &pb.TaskSpec{Name: fmt.Sprintf("t%d", i), Command: []string{"x"}}
		if i == 0 {
			spec.Env = map[string]string{"BIG": big}
		}
		if _, err := protodelim.MarshalTo(&buf, &fsmpb.SnapshotRecord{Rec: &fsmpb.SnapshotRecord_Task{Task: &pb.Task{
			Id: id, JobId: "job-123456789", Name: spec.Name, State: pb.TaskState_TASK_STATE_SUCCEEDED, Spec: spec}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := protodelim.MarshalTo(&buf, &fsmpb.SnapshotRecord{}); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSnapshot(&buf, DefaultDefaults)
	if err != nil {
		t.Fatalf("read snapshot with a %d-task job: %v", n, err)
	}
	var again bytes.Buffer
	if err := s.WriteSnapshot(&again); err != nil {
		t.Fatal(err)
	}
	s2, err := ReadSnapshot(&again, DefaultDefaults)
	if err != nil {
		t.Fatalf("second round trip: %v", err)
	}
	j, _ := s2.Job("job-123456789")
	t0, _ := s2.Task(ids[0])
	if len(j.TaskIDs()) != n || t0.Spec().Env["BIG"] != big {
		t.Fatalf("round trip lost data: %d tasks", len(j.TaskIDs()))
	}
}

// A record of a type this version does not know (from a newer one) is
// skipped, not taken for the end mark.
// TestReadSnapshotRefusesUnknownRecords: a record type this version does
// not know (a newer version wrote it) stops the restore with the reason;
// skipping it would start the server with less state than its peers.
func TestReadSnapshotRefusesUnknownRecords(t *testing.T) {
	f := newFSM(t, DefaultDefaults)
	f.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{{Command: []string{"x"}}}})
	var buf bytes.Buffer
	if err := f.s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	// Field 99, varint 1: a 3-byte record, then the end mark.
	withUnknown := append(append([]byte(nil), full[:len(full)-1]...), 3, 0x98, 0x06, 0x01, 0)
	_, err := ReadSnapshot(bytes.NewReader(withUnknown), DefaultDefaults)
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "does not know") {
		t.Fatalf("unknown record: %v, want it refused", err)
	}
	if _, err := ReadSnapshot(bytes.NewReader(full), DefaultDefaults); err != nil {
		t.Fatalf("the same snapshot without it: %v", err)
	}
}
