package grpcwire

import (
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestSubmitRequestDecodes: the hand-encoded request is the workload's
// job as the protobuf runtime reads it.
func TestSubmitRequestDecodes(t *testing.T) {
	var req pb.SubmitJobsRequest
	if err := proto.Unmarshal(SubmitRequest("probe-k"), &req); err != nil {
		t.Fatal(err)
	}
	want := &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{{Name: "one", IdempotencyKey: "probe-k",
		Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 16 << 20}}}}}}
	if !proto.Equal(&req, want) {
		t.Errorf("decoded %v, want %v", &req, want)
	}
	if a, b := RandomKey(), RandomKey(); a == b || !strings.HasPrefix(a, "probe-") || len(a) != len("probe-")+24 {
		t.Errorf("keys %q and %q: want two different probe-<24 hex digits>", a, b)
	}
}

// TestAppendVarint: appendVarint matches protowire's encoding at the edges of each
// byte count.
func TestAppendVarint(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1 << 35, 1<<63 - 1, 1<<64 - 1} {
		got, want := appendVarint(nil, v), protowire.AppendVarint(nil, v)
		if string(got) != string(want) {
			t.Errorf("%d: % x, want % x", v, got, want)
		}
		back, n, err := consumeVarint(got)
		if err != nil || back != v || n != len(got) {
			t.Errorf("%d: read back %d (%d bytes, %v)", v, back, n, err)
		}
	}
}

// TestFirstJobID reads the id out of replies, past fields of every wire
// type, and names what is wrong with bad ones.
func TestFirstJobID(t *testing.T) {
	job := func(id string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
			protowire.AppendString(protowire.AppendTag(protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "one"), 1, protowire.BytesType), id))
	}
	existing := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 0)
	fixed := protowire.AppendFixed32(protowire.AppendTag(protowire.AppendFixed64(protowire.AppendTag(nil, 9, protowire.Fixed64Type), 7), 10, protowire.Fixed32Type), 7)
	for _, c := range []struct {
		name  string
		reply []byte
		id    string
		err   string
	}{
		{"one job", job("job-9"), "job-9", ""},
		{"other fields first", append(append(append([]byte(nil), existing...), fixed...), job("job-3")...), "job-3", ""},
		{"empty", nil, "", "reply without a job"},
		{"job without id", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0x12, 1, 'x'}), "", "no id"},
		{"truncated", job("job-9")[:4], "", "ends inside a field"},
		{"eleven-byte varint", []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "", "overflows 64 bits"},
		{"group", []byte{0x0b}, "", "wire type 3"},
		{"varint past 64 bits", []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, "", "overflows 64 bits"},
		{"field number 0", []byte{0x02, 0x00}, "", "field number 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := FirstJobID(c.reply)
			if c.err == "" {
				if err != nil || id != c.id {
					t.Errorf("got %q, %v; want %q", id, err, c.id)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("got %q, %v; want an error with %q", id, err, c.err)
			}
		})
	}
}

// TestFrame writes gRPC's prefix: a zero byte, then the length, big-endian.
func TestFrame(t *testing.T) {
	if got, want := Frame(make([]byte, 258)), append([]byte{0, 0, 0, 1, 2}, make([]byte, 258)...); string(got) != string(want) {
		t.Errorf("prefix % x, want % x", got[:5], want[:5])
	}
}

// TestUnframe takes one uncompressed message and refuses anything else;
// Frame makes what it takes.
func TestUnframe(t *testing.T) {
	for _, c := range []struct {
		body []byte
		want string
		err  string
	}{
		{[]byte{0, 0, 0, 0, 2, 'h', 'i'}, "hi", ""},
		{Frame([]byte("hi")), "hi", ""},
		{Frame(nil), "", ""},
		{append([]byte{0, 0, 0, 1, 0}, make([]byte, 256)...), string(make([]byte, 256)), ""},
		{[]byte{0, 0, 0}, "", "want a message"},
		{[]byte{1, 0, 0, 0, 1, 'x'}, "", "compressed"},
		{[]byte{0, 0, 0, 0, 3, 'h', 'i'}, "", "want one message"},
	} {
		got, err := Unframe(c.body)
		if c.err == "" {
			if err != nil || string(got) != c.want {
				t.Errorf("%v: got %q, %v; want %q", c.body, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v: got %q, %v; want an error with %q", c.body, got, err, c.err)
		}
	}
}

// TestStatus: code 0 is no error; any other code is one with the message
// percent-decoded; no code at all is an error of its own.
func TestStatus(t *testing.T) {
	for _, c := range []struct{ code, msg, err string }{
		{"0", "", ""},
		{"3", "pool%20%22x%22%3A%20100%25%20full", `gRPC status 3: pool "x": 100% full`},
		{"14", "bad %zz escape", "gRPC status 14: bad %zz escape"},
		{"x", "m", `gRPC status "x": m`},
		{"", "", "without grpc-status"},
	} {
		err := Status(c.code, c.msg)
		if c.err == "" {
			if err != nil {
				t.Errorf("%q: %v, want nil", c.code, err)
			}
			continue
		}
		if err == nil || err.Error() != c.err && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q %q: %v, want %q", c.code, c.msg, err, c.err)
		}
	}
}
