package state

import (
	"hash/maphash"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// someValue is a value of field fd that is not its zero value.
func someValue(m protoreflect.Message, fd protoreflect.FieldDescriptor) protoreflect.Value {
	one := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
		switch fd.Kind() {
		case protoreflect.StringKind:
			return protoreflect.ValueOfString("x")
		case protoreflect.BytesKind:
			return protoreflect.ValueOfBytes([]byte("x"))
		case protoreflect.BoolKind:
			return protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			return protoreflect.ValueOfEnum(1)
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			return protoreflect.ValueOfInt32(1)
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return protoreflect.ValueOfInt64(1)
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			return protoreflect.ValueOfUint32(1)
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return protoreflect.ValueOfUint64(1)
		case protoreflect.FloatKind:
			return protoreflect.ValueOfFloat32(1)
		case protoreflect.DoubleKind:
			return protoreflect.ValueOfFloat64(1)
		default: // a message: present, even if empty
			return v
		}
	}
	switch {
	case fd.IsList():
		l := m.NewField(fd).List()
		l.Append(one(fd, l.NewElement()))
		return protoreflect.ValueOfList(l)
	case fd.IsMap():
		mp := m.NewField(fd).Map()
		mp.Set(one(fd.MapKey(), protoreflect.Value{}).MapKey(), one(fd.MapValue(), mp.NewValue()))
		return protoreflect.ValueOfMap(mp)
	default:
		return one(fd, m.NewField(fd))
	}
}

// A spec is compact only when it uses no field but its name, command and
// resources: a field added to TaskSpec and not named in compactable fails
// here instead of being dropped from the state.
func TestCompactableChecksEveryField(t *testing.T) {
	base := func() *pb.TaskSpec {
		return &pb.TaskSpec{Name: "t", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1}}
	}
	if !compactable(base(), "t") {
		t.Fatal("a spec of name, command and resources is not compactable")
	}
	if compactable(base(), "u") {
		t.Error("a spec named apart from its task is compactable")
	}
	if ts := base(); compactable(&pb.TaskSpec{Name: ts.Name, Command: ts.Command}, "t") {
		t.Error("a spec without resources is compactable")
	}
	fields := base().ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch fd.Name() {
		case "name", "command", "resources":
			continue
		}
		ts := base()
		m := ts.ProtoReflect()
		m.Set(fd, someValue(m, fd))
		if compactable(ts, "t") {
			t.Errorf("a spec with %s set is compactable: the compact form would drop it", fd.Name())
		}
	}
	ts := base()
	ts.ProtoReflect().SetUnknown(protoreflect.RawFields{0xf8, 0x7f, 0x01}) // field 2047, varint 1
	if compactable(ts, "t") {
		t.Error("a spec with unknown fields is compactable")
	}
}

// Every field of a task record reaches the full record a snapshot writes,
// and a compact spec comes back equal to the spec submitted.
func TestRecordCopiesEveryField(t *testing.T) {
	src := &pb.Task{}
	m := src.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); fd.Name() != "spec" {
			m.Set(fd, someValue(m, fd))
		}
	}
	m.SetUnknown(protoreflect.RawFields{0xf8, 0x7f, 0x01})
	s := New(DefaultDefaults)
	spec := &pb.TaskSpec{Name: src.Name, Command: []string{"a", "b"}, Resources: &pb.Resources{CpuMillis: 5}}
	task := &Task{PB: src}
	s.setSpec(task, proto.Clone(spec).(*pb.TaskSpec))
	if task.spec != nil {
		t.Fatal("spec not kept compact")
	}
	var w taskWriter
	got := w.record(src, task)
	want := proto.Clone(src).(*pb.Task)
	want.Spec = spec
	if !proto.Equal(got, want) {
		t.Fatalf("full record\n%v\nwant\n%v", got, want)
	}
	if !proto.Equal(task.view(), want) {
		t.Fatalf("view\n%v\nwant\n%v", task.view(), want)
	}
}

// Every field of a job record reaches the full record a snapshot writes.
func TestJobRecordCopiesEveryField(t *testing.T) {
	src := &pb.Job{}
	m := src.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); fd.Name() != "counts" {
			m.Set(fd, someValue(m, fd))
		}
	}
	m.SetUnknown(protoreflect.RawFields{0xf8, 0x7f, 0x01})
	counts := &pb.TaskCounts{Total: 3, Queued: 1, Running: 1, Succeeded: 1}
	var dst pb.Job
	got := jobRecord(&dst, src, counts)
	want := proto.Clone(src).(*pb.Job)
	want.Counts = counts
	if !proto.Equal(got, want) {
		t.Fatalf("full record\n%v\nwant\n%v", got, want)
	}
}

// Jobs are found by number, tasks through their job; an id that only
// parses like one finds nothing.
func TestTaskLookupByID(t *testing.T) {
	s := New(DefaultDefaults)
	submitOneTaskJobs(t, s, 3, 3)
	for _, id := range []string{"job-1.0", "job-2.0", "job-3.0"} {
		if tk, ok := s.Task(id); !ok || tk.PB.Id != id {
			t.Errorf("Task(%q) = %v, %v", id, tk, ok)
		}
	}
	for _, id := range []string{"", "job-1", "job-1.", "job-1.00", "job-1.+0", "job-1.-1", "job-1.1", "job-4.0", "job-01.0", ".0", "job-1.0x",
		"job-1.0 ", " job-1.0", "job-1.18446744073709551616", "job-1.1e0", "job-1.0.0", "job-1..0"} {
		if tk, ok := s.Task(id); ok {
			t.Errorf("Task(%q) found %s", id, tk.PB.Id)
		}
	}
	for _, id := range []string{"", "job-", "job-0", "job-01", "job-+1", "job-4", "job-1.0", "Job-1", "job-18446744073709551617",
		"job-18446744073709551616", "job-1 ", "job-1a", "job-0x1", "job--1"} {
		if j, ok := s.Job(id); ok {
			t.Errorf("Job(%q) found %s", id, j.PB.Id)
		}
	}
	if j, ok := s.Job("job-2"); !ok || j.PB.Id != "job-2" {
		t.Errorf("Job(job-2) = %v, %v", j, ok)
	}
	for in, want := range map[string]uint64{"0": 0, "7": 7, "10": 10, "18446744073709551615": math.MaxUint64} {
		if n, ok := decimal(in); !ok || n != want {
			t.Errorf("decimal(%q) = %d, %v, want %d", in, n, ok, want)
		}
	}
	if n := s.TaskCount(); n != 3 {
		t.Errorf("TaskCount %d, want 3", n)
	}
}

// Keys whose hashes collide still find their own jobs: one is indexed by
// hash, the other by key, and removing either leaves the other.
func TestIdemIndexCollisions(t *testing.T) {
	x := newIdemIndex()
	a := &Job{PB: &pb.Job{Id: "job-1", IdempotencyKey: "a"}}
	b := &Job{PB: &pb.Job{Id: "job-2", IdempotencyKey: "b"}}
	x.put("a", a)
	// Force b into a's hash slot, as a collision would.
	x.byHash[maphash.String(x.seed, "b")] = a
	x.put("b", b)
	if j, ok := x.get("b"); !ok || j != b {
		t.Fatalf("get(b) = %v, %v", j, ok)
	}
	delete(x.byHash, maphash.String(x.seed, "b"))
	for k, want := range map[string]*Job{"a": a, "b": b} {
		if j, ok := x.get(k); !ok || j != want {
			t.Fatalf("get(%s) = %v, %v", k, j, ok)
		}
	}
	x.del("b", b)
	if _, ok := x.get("b"); ok {
		t.Fatal("b still found after del")
	}
	if j, ok := x.get("a"); !ok || j != a {
		t.Fatal("a lost when b was removed")
	}
	x.del("a", b) // not a's job: nothing changes
	if _, ok := x.get("a"); !ok {
		t.Fatal("a removed by del with another job")
	}
}

// Every field of a spec kept as a shape comes back in the task's spec, and
// a writer's scratch spec keeps nothing of the task written before.
func TestSpecRecordCopiesEveryField(t *testing.T) {
	full := &pb.TaskSpec{}
	m := full.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		m.Set(fields.Get(i), someValue(m, fields.Get(i)))
	}
	m.SetUnknown(protoreflect.RawFields{0xf8, 0x7f, 0x01})
	s := New(DefaultDefaults)
	task := &Task{PB: &pb.Task{Name: full.Name}}
	s.setSpec(task, proto.Clone(full).(*pb.TaskSpec))
	if task.spec == nil {
		t.Fatal("a spec with every field set was kept compact")
	}
	if got := task.Spec(); !proto.Equal(got, full) {
		t.Fatalf("spec\n%v\nwant\n%v", got, full)
	}
	compact := &Task{PB: &pb.Task{Name: "c"}}
	want := &pb.TaskSpec{Name: "c", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1}}
	s.setSpec(compact, proto.Clone(want).(*pb.TaskSpec))
	if compact.spec != nil {
		t.Fatal("a compactable spec kept a shape")
	}
	var scratch pb.TaskSpec
	if got := task.fillSpec(&scratch, full.Name); !proto.Equal(got, full) {
		t.Fatalf("written spec\n%v\nwant\n%v", got, full)
	}
	if got := compact.fillSpec(&scratch, "c"); !proto.Equal(got, want) {
		t.Fatalf("compact spec written after a full one\n%v\nwant\n%v", got, want)
	}
}

// Tasks whose specs differ only in name and command share one shape; a
// spec that differs in any other field gets a shape of its own. Each
// task's spec comes back as submitted either way.
func TestShapesShared(t *testing.T) {
	spec := func(name, arg string) *pb.TaskSpec {
		return &pb.TaskSpec{Name: name, Command: []string{"enc", "--chunk", arg}, Resources: &pb.Resources{CpuMillis: 2000},
			TimeoutMs: 60_000, Retry: &pb.RetryPolicy{MaxAttempts: 3}, Env: map[string]string{"PRESET": "slow"},
			Constraints: []*pb.Constraint{{Label: "gpu", Op: "=", Value: "a100"}}}
	}
	s := New(DefaultDefaults)
	add := func(ts *pb.TaskSpec) *Task {
		t.Helper()
		want := proto.Clone(ts).(*pb.TaskSpec)
		task := &Task{PB: &pb.Task{Name: ts.Name}}
		s.setSpec(task, ts)
		if got := task.Spec(); !proto.Equal(got, want) {
			t.Fatalf("spec of %s\n%v\nwant\n%v", want.Name, got, want)
		}
		return task
	}
	first := add(spec("a", "0"))
	if second := add(spec("b", "1")); second.spec != first.spec {
		t.Fatal("two specs that differ only in name and command do not share a shape")
	}
	fields := first.spec.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Name() == "name" || fd.Name() == "command" {
			continue
		}
		prev := add(spec("p", "2"))
		ts := spec("q", "3")
		m := ts.ProtoReflect()
		m.Set(fd, someValue(m, fd))
		if add(ts).spec == prev.spec {
			t.Errorf("a spec with another %s shares the shape of one without", fd.Name())
		}
	}
	prev := add(spec("p", "4"))
	ts := spec("q", "5")
	ts.ProtoReflect().SetUnknown(protoreflect.RawFields{0xf8, 0x7f, 0x01})
	if add(ts).spec == prev.spec {
		t.Error("a spec with unknown fields shares the shape of one without")
	}
}

// The tasks of an array that is not compact (a constraint, a timeout)
// share one shape in the state, in views and after a snapshot's restore,
// and cost a spec's bytes less each than tasks that do not.
func TestArrayTasksShareOneShape(t *testing.T) {
	const n = 20_000
	array := func(timeout func(i int) int64) *pb.JobSpec {
		job := &pb.JobSpec{Name: "array"}
		for i := 0; i < n; i++ {
			idx := strconv.Itoa(i)
			job.Tasks = append(job.Tasks, &pb.TaskSpec{Name: "frame-" + idx, Command: []string{"render", "--frame", idx},
				Resources: &pb.Resources{CpuMillis: 1000}, TimeoutMs: timeout(i),
				Constraints: []*pb.Constraint{{Label: "renderer", Op: "exists"}}})
		}
		return job
	}
	// submit applies the array as a server does, from a decoded entry.
	submit := func(s *State, timeout func(i int) int64) {
		applyDecoded(t, s, &fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{array(timeout)}}}})
	}
	sameTimeout := func(int) int64 { return 60_000 }
	shapes := func(s *State) int {
		seen := map[*pb.TaskSpec]bool{}
		for _, task := range allTasks(s) {
			seen[task.spec] = true
		}
		return len(seen)
	}
	base := heapAfterGC()
	shared := New(DefaultDefaults)
	submit(shared, sameTimeout)
	sharedBytes := float64(int64(heapAfterGC())-int64(base)) / n
	if got := shapes(shared); got != 1 {
		t.Fatalf("%d shapes for %d tasks that differ only in name and command, want 1", got, n)
	}
	view, want := shared.JobView("job-1", true), array(sameTimeout).Tasks
	for i, task := range view.Tasks {
		if !proto.Equal(task.Spec, want[i]) {
			t.Fatalf("task %d's spec\n%v\nwant\n%v", i, task.Spec, want[i])
		}
	}
	restored, err := roundTrip(shared)
	if err != nil {
		t.Fatal(err)
	}
	if diff := compareStates(shared, restored, 1<<40); len(diff) > 0 {
		t.Fatalf("snapshot round trip differs:\n%s", strings.Join(diff[:min(len(diff), 5)], "\n"))
	}
	if got := shapes(restored); got != 1 {
		t.Fatalf("%d shapes after a snapshot's restore, want 1", got)
	}
	runtime.KeepAlive(shared)

	base = heapAfterGC()
	apart := New(DefaultDefaults)
	submit(apart, func(i int) int64 { return 60_000 + int64(i) }) // a timeout each: no two shapes alike
	apartBytes := float64(int64(heapAfterGC())-int64(base)) / n
	runtime.KeepAlive(apart)
	t.Logf("%.0f B per task sharing a shape, %.0f B per task each with its own", sharedBytes, apartBytes)
	if apartBytes-sharedBytes < 200 {
		t.Errorf("a shared shape saves %.0f B per task (%.0f against %.0f), want at least 200 (a TaskSpec is 248)",
			apartBytes-sharedBytes, sharedBytes, apartBytes)
	}
}

// The tasks of an array whose command holds no ${INDEX} share one command
// list in the state (a list decoded with room to spare included), and so
// do one-task jobs of one command, and both after a snapshot's restore,
// where each task's command is decoded on its own; each task still shows
// its command.
func TestTasksShareOneCommand(t *testing.T) {
	s := New(DefaultDefaults)
	cmd := []string{"/bin/true", "--quiet", "x"} // decoded with room for a fourth
	jobs := []*pb.JobSpec{{Tasks: []*pb.TaskSpec{{Name: "f", Count: 50, Command: cmd, Resources: &pb.Resources{CpuMillis: 1000}}}}}
	for range 20 {
		jobs = append(jobs, &pb.JobSpec{Tasks: []*pb.TaskSpec{{Name: "one", Command: cmd, Resources: &pb.Resources{CpuMillis: 1000}}}})
	}
	applyDecoded(t, s, &fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: jobs}}})
	restored, err := roundTrip(s)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*State{"applied": s, "restored": restored} {
		tasks := allTasks(st)
		if len(tasks) != 70 {
			t.Fatalf("%s: %d tasks, want 70", name, len(tasks))
		}
		lists := map[*string]bool{}
		for _, task := range tasks {
			lists[&task.command[0]] = true
		}
		if len(lists) != 1 {
			t.Errorf("%s: 70 tasks of one command hold %d lists, want 1", name, len(lists))
		}
		for _, id := range []string{"job-1", "job-2", "job-21"} {
			for _, task := range st.JobView(id, true).Tasks {
				if !slices.Equal(task.Spec.Command, cmd) {
					t.Errorf("%s: task %s's command %q, want %q", name, task.Id, task.Spec.Command, cmd)
				}
			}
		}
	}
}
