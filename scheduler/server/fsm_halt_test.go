package server

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/wirecodec/wirecodectest"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"github.com/banyan-sched/banyan/scheduler/state"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func submitEntry(t *testing.T, index uint64, name string) *raft.Log {
	t.Helper()
	data, err := proto.Marshal(&fsmpb.Command{NowUnixMs: 1000, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Jobs: []*pb.JobSpec{{
		Name: name, Pool: "default", Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"true"},
			Resources: &pb.Resources{CpuMillis: 100, MemoryBytes: 1 << 20}}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 2, Type: raft.LogCommand, Data: data}
}

// TestFSMHaltsOnEntryItCannotApply replays a log with a damaged entry (and,
// separately, one from a newer version) and checks that nothing after it
// is applied, so no later job is renumbered, and that the reason names the
// entry.
func TestFSMHaltsOnEntryItCannotApply(t *testing.T) {
	unknown := protowire.AppendTag(nil, 99, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("a command from the future"))
	// Command.submit > SubmitJobs.jobs > JobSpec.tasks > a fallback chain
	// far deeper than any decoder may recurse.
	deep := wirecodectest.DeepTaskSpec(100_000)
	for _, field := range []protowire.Number{7, 1, 2} {
		deep = protowire.AppendBytes(protowire.AppendTag(nil, field, protowire.BytesType), deep)
	}
	for _, tc := range []struct {
		name string
		bad  []byte
		want string
	}{
		{"garbled", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}, "entry 3 (term 2) cannot be decoded"},
		{"newer version", unknown, "entry 3 (term 2) holds a command this version does not know"},
		{"nested too deep", deep, "entry 3 (term 2) cannot be decoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(state.DefaultDefaults)
			if r := f.Apply(submitEntry(t, 2, "first")).(*state.Result); r.Err != nil {
				t.Fatal(r.Err)
			}
			select {
			case <-f.Halted():
				t.Fatal("halted before the bad entry")
			default:
			}
			r := f.Apply(&raft.Log{Index: 3, Term: 2, Type: raft.LogCommand, Data: tc.bad}).(*state.Result)
			if !errors.Is(r.Err, ErrHalted) || !strings.Contains(r.Err.Error(), tc.want) {
				t.Fatalf("bad entry: %v, want halted with %q", r.Err, tc.want)
			}
			select {
			case <-f.Halted():
			default:
				t.Fatal("Halted not closed")
			}
			r = f.Apply(submitEntry(t, 4, "second")).(*state.Result)
			if !errors.Is(r.Err, ErrHalted) {
				t.Fatalf("entry after the bad one: %v, want it refused", r.Err)
			}
			var names []string
			f.Read(func(st *state.State) {
				for _, id := range st.JobIDs() {
					j, _ := st.Job(id)
					names = append(names, j.PB.Name)
				}
			})
			if len(names) != 1 || names[0] != "first" {
				t.Fatalf("jobs after the halt: %v, want only the one before it", names)
			}
			if !strings.Contains(f.Halt().Error(), tc.want) {
				t.Fatalf("Halt() = %v", f.Halt())
			}
		})
	}
}
