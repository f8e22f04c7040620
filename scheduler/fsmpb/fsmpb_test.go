package fsmpb

import (
	"testing"

	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/api/wirecodec/wirecodectest"
	"google.golang.org/protobuf/proto"
)

// vtMessage is a command message with its generated encoder and decoder.
type vtMessage interface {
	wirecodec.Message
	MarshalVT() ([]byte, error)
}

// TestGeneratedCodeMatchesRuntime: the server writes raft log entries with
// the generated MarshalVT and every replica reads them with UnmarshalVT;
// for every command message, filled in every field, the runtime agrees
// with both, so logs written by either decode the same.
func TestGeneratedCodeMatchesRuntime(t *testing.T) {
	wirecodectest.CheckRoundTrips(t, "banyan.fsm.v1", 20, wirecodectest.Codec{
		Marshal: func(m proto.Message) ([]byte, error) {
			vt, ok := m.(vtMessage)
			if !ok {
				t.Fatalf("%T has no generated VT methods: run make proto", m)
			}
			return vt.MarshalVT()
		},
		Unmarshal: func(data []byte, m proto.Message) error {
			return wirecodec.Unmarshal(data, m.(vtMessage)) // as the FSM decodes entries
		},
	})
}
