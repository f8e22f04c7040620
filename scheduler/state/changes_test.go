package state

import (
	"fmt"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/proto"
)

// renderChange writes a change record on one line, for comparing.
func renderChange(ev *pb.Event) string {
	short := func(s string) string {
		return strings.TrimPrefix(strings.TrimPrefix(s, "TASK_STATE_"), "JOB_STATE_")
	}
	parts := []string{fmt.Sprintf("%d", ev.Position), ev.Topic, ev.Kind}
	for _, id := range []string{ev.JobId, ev.TaskId, ev.AgentId, ev.Pool} {
		if id != "" {
			parts = append(parts, id)
		}
	}
	if ev.State != "" {
		if ev.PreviousState != "" {
			parts = append(parts, short(ev.PreviousState)+">"+short(ev.State))
		} else {
			parts = append(parts, short(ev.State))
		}
	}
	if ev.Attempt != 0 {
		parts = append(parts, fmt.Sprintf("#%d", ev.Attempt))
	}
	for _, kv := range [][2]string{{"outcome", ev.Outcome}, {"class", ev.FailureClass},
		{"by", ev.ReplacedBy}, {"reason", ev.Reason}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if ev.Gpus != 0 {
		parts = append(parts, fmt.Sprintf("gpus=%d/%d", ev.Gpus-ev.UnhealthyGpus, ev.Gpus))
	}
	return strings.Join(parts, " ")
}

// recorder applies commands with change records on and keeps each
// command's records, rendered and as they are, and the attempts each
// ended.
type recorder struct {
	*fsm
	got   []string
	evs   []*pb.Event
	ended []AttemptRef
}

func (r *recorder) do(c *fsmpb.Command) *Result {
	r.t.Helper()
	res := r.apply(c)
	for _, ev := range res.Changes {
		r.got = append(r.got, renderChange(ev))
	}
	r.evs = append(r.evs, res.Changes...)
	r.ended = append(r.ended, res.Ended...)
	return res
}

func (r *recorder) event(taskID, kind, outcome string, exit int32) {
	r.t.Helper()
	tk := r.s.task(taskID)
	r.do(&fsmpb.Command{Cmd: &fsmpb.Command_Events{Events: &fsmpb.ReportEvents{Agents: []*fsmpb.AgentEvents{{
		AgentId: tk.AgentID(), Events: []*pb.TaskEvent{{TaskId: taskID, Attempt: tk.Attempt(), Kind: kind,
			Outcome: outcome, ExitCode: exit, UnixMs: r.now}}}}, ClassifyExitCodes: true}}})
}

func (r *recorder) agentUp(id string) {
	r.do(&fsmpb.Command{Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: id,
		Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 4000, MemoryBytes: 1 << 40}}}}})
}

func (r *recorder) submit(specs ...*pb.JobSpec) {
	r.do(&fsmpb.Command{Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: specs}}})
}

func (r *recorder) place() {
	r.do(&fsmpb.Command{Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{
		Assignments: r.s.Plan(r.now, DefaultPlanLimits).Assignments}}})
}

func chTask(name string, after ...string) *pb.TaskSpec {
	return &pb.TaskSpec{Name: name, Command: []string{"x"}, Resources: &pb.Resources{CpuMillis: 1000}, After: after,
		Retry: &pb.RetryPolicy{MaxAttempts: 2, InitialBackoffMs: 1, MaxBackoffMs: 1}}
}

func TestChangeRecords(t *testing.T) {
	cases := []struct {
		name string
		run  func(r *recorder)
		want []string
	}{{
		name: "a job runs to the end",
		run: func(r *recorder) {
			r.agentUp("a1")
			r.submit(&pb.JobSpec{Name: "j", Tasks: []*pb.TaskSpec{chTask("split"), chTask("index", "split")}})
			r.place()
			r.event("job-1.0", "started", "", 0)
			r.event("job-1.0", "finished", "succeeded", 0)
			r.place()
			r.event("job-1.1", "finished", "succeeded", 0)
		},
		want: []string{
			"0 agent up a1 up",
			"0 job submitted job-1 default QUEUED",
			"1 task created job-1 job-1.0 default WAITING #1",
			"2 task created job-1 job-1.1 default WAITING #1",
			"3 task state job-1 job-1.0 default WAITING>QUEUED #1",
			"0 task state job-1 job-1.0 a1 default QUEUED>ASSIGNED #1",
			"1 job state job-1 default QUEUED>RUNNING",
			"0 task state job-1 job-1.0 a1 default ASSIGNED>RUNNING #1",
			"0 task state job-1 job-1.0 a1 default RUNNING>SUCCEEDED #1 outcome=succeeded",
			"1 task state job-1 job-1.1 default WAITING>QUEUED #1",
			"0 task state job-1 job-1.1 a1 default QUEUED>ASSIGNED #1",
			"0 task state job-1 job-1.1 a1 default ASSIGNED>SUCCEEDED #1 outcome=succeeded",
			"1 job state job-1 default RUNNING>SUCCEEDED",
		},
	}, {
		name: "a failure retries, then fails the job",
		run: func(r *recorder) {
			r.agentUp("a1")
			r.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{chTask("t")}})
			r.place()
			r.event("job-1.0", "finished", "failed", 3)
			r.now += 10
			r.place()
			r.event("job-1.0", "finished", "failed", 3)
		},
		want: []string{
			"0 agent up a1 up",
			"0 job submitted job-1 default QUEUED",
			"1 task created job-1 job-1.0 default WAITING #1",
			"2 task state job-1 job-1.0 default WAITING>QUEUED #1",
			"0 task state job-1 job-1.0 a1 default QUEUED>ASSIGNED #1",
			"1 job state job-1 default QUEUED>RUNNING",
			"0 task state job-1 job-1.0 a1 default ASSIGNED>QUEUED #1 outcome=failed class=failed",
			"0 task state job-1 job-1.0 a1 default QUEUED>ASSIGNED #2",
			"0 task state job-1 job-1.0 a1 default ASSIGNED>FAILED #2 outcome=failed class=failed",
			"1 job state job-1 default RUNNING>FAILED reason=task t failed after 2 attempts: exit code 3",
		},
	}, {
		name: "a lost agent requeues its work, which runs elsewhere",
		run: func(r *recorder) {
			r.agentUp("a1")
			r.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{chTask("t")}})
			r.place()
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_AgentDown{AgentDown: &fsmpb.AgentDown{AgentId: "a1", Reason: "lease"}}})
			r.agentUp("a2")
			r.place()
		},
		want: []string{
			"0 agent up a1 up",
			"0 job submitted job-1 default QUEUED",
			"1 task created job-1 job-1.0 default WAITING #1",
			"2 task state job-1 job-1.0 default WAITING>QUEUED #1",
			"0 task state job-1 job-1.0 a1 default QUEUED>ASSIGNED #1",
			"1 job state job-1 default QUEUED>RUNNING",
			"0 agent down a1 up>down reason=lease",
			"1 task state job-1 job-1.0 a1 default ASSIGNED>QUEUED #1 outcome=lost class=agent_lost reason=agent a1 lost: lease",
			"0 agent up a2 up",
			"0 task state job-1 job-1.0 a2 default QUEUED>ASSIGNED #2",
		},
	}, {
		name: "a cancel ends placed and queued tasks",
		run: func(r *recorder) {
			r.agentUp("a1")
			r.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{chTask("a"), chTask("b", "a")}})
			r.place()
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-1", Reason: "stop"}}})
		},
		want: []string{
			"0 agent up a1 up",
			"0 job submitted job-1 default QUEUED",
			"1 task created job-1 job-1.0 default WAITING #1",
			"2 task created job-1 job-1.1 default WAITING #1",
			"3 task state job-1 job-1.0 default WAITING>QUEUED #1",
			"0 task state job-1 job-1.0 a1 default QUEUED>ASSIGNED #1",
			"1 job state job-1 default QUEUED>RUNNING",
			"0 job state job-1 default RUNNING>CANCELLED reason=stop",
			"1 task state job-1 job-1.0 a1 default ASSIGNED>CANCELLED #1 outcome=cancelled",
			"2 task state job-1 job-1.1 default WAITING>CANCELLED",
		},
	}, {
		name: "a task that fails for good hands over to its fallback",
		run: func(r *recorder) {
			r.agentUp("a1")
			tk := chTask("enc")
			tk.Retry.MaxAttempts = 1
			tk.Fallback = &pb.TaskSpec{Command: []string{"cpu"}, Resources: &pb.Resources{CpuMillis: 1000}}
			r.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{tk}})
			r.place()
			r.event("job-1.0", "finished", "failed", 1)
		},
		want: []string{
			"0 agent up a1 up",
			"0 job submitted job-1 default QUEUED",
			"1 task created job-1 job-1.0 default WAITING #1",
			"2 task state job-1 job-1.0 default WAITING>QUEUED #1",
			"0 task state job-1 job-1.0 a1 default QUEUED>ASSIGNED #1",
			"1 job state job-1 default QUEUED>RUNNING",
			"0 task state job-1 job-1.0 a1 default ASSIGNED>FAILED #1 outcome=failed class=failed",
			"1 task created job-1 job-1.1 default WAITING #1",
			"2 task state job-1 job-1.1 default WAITING>QUEUED #1",
			"3 task replaced job-1 job-1.0 default FAILED>FAILED #1 by=job-1.1",
		},
	}, {
		name: "pools",
		run: func(r *recorder) {
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: &pb.Pool{Path: "studio"}, Create: true}}})
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: &pb.Pool{Path: "studio"}}}})
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_PoolPut{PoolPut: &fsmpb.PoolPut{Pool: &pb.Pool{Path: "studio"}, Create: true}}})
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_PoolDelete{PoolDelete: &fsmpb.PoolDelete{Path: "studio"}}})
		},
		want: []string{"0 pool created studio", "0 pool updated studio", "0 pool deleted studio"},
	}, {
		name: "a rejected submission changes nothing",
		run: func(r *recorder) {
			r.submit(&pb.JobSpec{Pool: "nowhere", Tasks: []*pb.TaskSpec{chTask("t")}})
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{fsm: newFSM(t, DefaultDefaults)}
			r.s.RecordChanges(true)
			tc.run(r)
			if got, want := strings.Join(r.got, "\n"), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("changes:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// With recording off (the default), Apply builds no records.
func TestChangeRecordsOff(t *testing.T) {
	r := &recorder{fsm: newFSM(t, DefaultDefaults)}
	r.agentUp("a1")
	r.submit(&pb.JobSpec{Tasks: []*pb.TaskSpec{chTask("t")}})
	r.place()
	if len(r.got) != 0 {
		t.Fatalf("records while off: %v", r.got)
	}
}

// Over random histories (retries, lost agents, cancels, fallbacks,
// snapshots), the change records tell each task's and job's whole story:
// every state change chains from the one before, and the last one is the
// final state. A change Apply made without a record breaks the chain.
func TestChangeRecordsTellTheWholeStory(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			tasks := map[string]string{}
			jobs := map[string]string{}
			var broken []string
			onApply := func(r *Result) {
				for i, ev := range r.Changes {
					if ev.Position != uint32(i) {
						broken = append(broken, fmt.Sprintf("position %d at %d", ev.Position, i))
					}
					var last map[string]string
					var id string
					switch ev.Topic {
					case TopicTask:
						last, id = tasks, ev.TaskId
					case TopicJob:
						last, id = jobs, ev.JobId
					default:
						continue
					}
					prev, seen := last[id]
					switch {
					case ev.Kind == KindCreated || ev.Kind == KindSubmitted:
						if seen {
							broken = append(broken, "created twice: "+renderChange(ev))
						}
					case !seen || prev != ev.PreviousState:
						broken = append(broken, fmt.Sprintf("after %s: %s", prev, renderChange(ev)))
					}
					last[id] = ev.State
				}
			}
			h := runHistoryWith(t, seed, 300, onApply)
			if len(broken) > 0 {
				t.Fatalf("%d broken chains, first: %s", len(broken), broken[0])
			}
			for id, tk := range allTasks(h.s) {
				if tasks[id] != tk.PB.State.String() {
					t.Errorf("task %s: records end at %s, state is %s", id, tasks[id], tk.PB.State)
				}
			}
			for _, j := range h.s.jobs.all {
				id := j.PB.Id
				if jobs[id] != j.PB.State.String() {
					t.Errorf("job %s: records end at %s, state is %s", id, jobs[id], j.PB.State)
				}
			}
		})
	}
}

// BenchmarkChangeRecords measures what change records add to applying a
// submission of 1000 tasks and placing them.
func BenchmarkChangeRecords(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("records=%v", on), func(b *testing.B) {
			spec := &pb.JobSpec{}
			for i := range 1000 {
				spec.Tasks = append(spec.Tasks, &pb.TaskSpec{Name: fmt.Sprint("t", i), Command: []string{"x"},
					Resources: &pb.Resources{CpuMillis: 10, MemoryBytes: 1 << 20}})
			}
			b.ReportAllocs()
			for b.Loop() {
				s := New(DefaultDefaults)
				s.RecordChanges(on)
				s.Apply(&fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_AgentUp{AgentUp: &fsmpb.AgentUp{AgentId: "a",
					Fingerprint: &pb.Fingerprint{Capacity: &pb.Resources{CpuMillis: 1 << 30, MemoryBytes: 1 << 50}}}}})
				s.Apply(&fsmpb.Command{NowUnixMs: 2, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{
					Jobs: []*pb.JobSpec{clone(spec)}}}})
				plan := s.Plan(3, DefaultPlanLimits).Assignments
				s.Apply(&fsmpb.Command{NowUnixMs: 3, Cmd: &fsmpb.Command_Assign{Assign: &fsmpb.Assign{Assignments: plan}}})
			}
		})
	}
}

// Change records name states as the enums' String methods do, numbers
// this build does not know included.
func TestEnumNamesMatchString(t *testing.T) {
	for v := pb.TaskState(-1); v <= pb.TaskState(len(pb.TaskState_name)+1); v++ {
		if got, want := taskStateNames.of(v), v.String(); got != want {
			t.Errorf("task state %d named %q, want %q", v, got, want)
		}
	}
	for v := pb.JobState(-1); v <= pb.JobState(len(pb.JobState_name)+1); v++ {
		if got, want := jobStateNames.of(v), v.String(); got != want {
			t.Errorf("job state %d named %q, want %q", v, got, want)
		}
	}
}

// Under KeepChanges a command returns the records a full recording ends
// with, at the same positions and with the same fields (a reused record
// keeps nothing of the one it replaced), and all of them when it makes no
// more than the bound; the attempts it ended are listed whole either way.
func TestKeepChanges(t *testing.T) {
	const keep = 3
	full := &recorder{fsm: newFSM(t, DefaultDefaults)}
	kept := &recorder{fsm: newFSM(t, DefaultDefaults)}
	full.s.RecordChanges(true)
	kept.s.RecordChanges(true)
	kept.s.KeepChanges(keep)
	tasks := func(names ...string) *pb.JobSpec {
		spec := &pb.JobSpec{}
		for _, n := range names {
			spec.Tasks = append(spec.Tasks, chTask(n))
		}
		return spec
	}
	steps := []struct {
		name string
		do   func(r *recorder)
	}{
		{"an agent up: 1 record", func(r *recorder) { r.agentUp("a1") }},
		{"a job of 3 tasks: 7 records", func(r *recorder) { r.submit(tasks("a", "b", "c")) }},
		{"a job of 1 task: exactly the bound", func(r *recorder) { r.submit(tasks("d")) }},
		{"a job of 10 tasks: 21 records, 18 of them reused", func(r *recorder) {
			r.submit(tasks("e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"))
		}},
		{"placing", func(r *recorder) { r.place() }},
		{"a task fails and is retried", func(r *recorder) { r.event("job-1.0", "finished", "failed", 1) }},
		{"placing again", func(r *recorder) { r.place() }},
		{"cancelling a job ends its placed attempts", func(r *recorder) {
			r.do(&fsmpb.Command{Cmd: &fsmpb.Command_Cancel{Cancel: &fsmpb.CancelJob{JobId: "job-3"}}})
		}},
	}
	for _, st := range steps {
		full.got, kept.got, full.evs, kept.evs, full.ended, kept.ended = nil, nil, nil, nil, nil, nil
		st.do(full)
		st.do(kept)
		want := full.got[max(0, len(full.got)-keep):]
		if strings.Join(kept.got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: kept\n%s\nwant the last %d of\n%s", st.name, strings.Join(kept.got, "\n"), keep,
				strings.Join(full.got, "\n"))
		}
		for i, ev := range full.evs[max(0, len(full.evs)-keep):] {
			if i < len(kept.evs) && !proto.Equal(kept.evs[i], ev) {
				t.Errorf("%s: record %d\n%v\nwant\n%v", st.name, i, kept.evs[i], ev)
			}
		}
		if fmt.Sprint(kept.ended) != fmt.Sprint(full.ended) {
			t.Errorf("%s: ended %v, want %v", st.name, kept.ended, full.ended)
		}
		if (st.name == "a task fails and is retried" || st.name == "cancelling a job ends its placed attempts") &&
			len(full.ended) != 1 {
			t.Errorf("%s: ended %v", st.name, full.ended)
		}
	}
}
