package wirecodec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
)

// wireMessages is every message type of the wire API (package banyan.v1).
func wireMessages(t *testing.T) []protoreflect.MessageType {
	t.Helper()
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if mt.Descriptor().ParentFile().Package() == "banyan.v1" && !mt.Descriptor().IsMapEntry() {
			out = append(out, mt)
		}
		return true
	})
	if len(out) < 50 {
		t.Fatalf("found %d banyan.v1 message types; want the whole wire API", len(out))
	}
	return out
}

// fill sets every field of m (the variant-th member of each oneof, two
// elements in each list and map) to a value that differs from its zero,
// recursing depth levels into message fields.
func fill(m protoreflect.Message, variant, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			if o.Fields().Get(variant%o.Fields().Len()) != fd {
				continue
			}
		}
		if fd.Message() != nil && depth == 0 {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for k := 0; k < 2; k++ {
				if fd.Message() != nil {
					e := l.NewElement()
					fill(e.Message(), variant+k, depth-1)
					l.Append(e)
				} else {
					l.Append(scalar(fd, k+1))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for k := 0; k < 2; k++ {
				key := scalar(fd.MapKey(), k+1).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					fill(v.Message(), variant+k, depth-1)
					mp.Set(key, v)
				} else {
					mp.Set(key, scalar(fd.MapValue(), k+1))
				}
			}
		case fd.Message() != nil:
			fill(m.Mutable(fd).Message(), variant, depth-1)
		default:
			m.Set(fd, scalar(fd, variant+1))
		}
	}
}

// scalar is a non-zero value of fd's kind, different for each n.
func scalar(fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(n % vals.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(-1000 * n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(1000 * n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(-1) << (30 + n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(1) << (40 + n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n) + 0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.25)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d-é", fd.Name(), n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0, byte(n), 0xff})
	}
	panic(fmt.Sprintf("field %s: kind %s has no test value", fd.FullName(), fd.Kind()))
}

// TestRoundTripEveryMessage: for every wire message, filled in every field,
// what the codec encodes the protobuf runtime decodes to the same message,
// and what the runtime encodes the codec decodes to the same message.
func TestRoundTripEveryMessage(t *testing.T) {
	var c Codec
	for _, mt := range wireMessages(t) {
		for variant := 0; variant < 3; variant++ {
			want := mt.New()
			fill(want, variant, 3)
			name := fmt.Sprintf("%s/%d", mt.Descriptor().FullName(), variant)
			if _, ok := want.Interface().(vtMessage); !ok {
				t.Fatalf("%s has no generated VT methods: run make proto", name)
			}

			data, err := c.Marshal(want.Interface())
			if err != nil {
				t.Fatalf("%s: codec marshal: %v", name, err)
			}
			got := mt.New().Interface()
			if err := proto.Unmarshal(data.Materialize(), got); err != nil {
				t.Fatalf("%s: runtime unmarshal of the codec's bytes: %v", name, err)
			}
			if !proto.Equal(got, want.Interface()) {
				t.Fatalf("%s: codec -> runtime changed the message:\n got %v\nwant %v", name, got, want)
			}
			data.Free()

			raw, err := proto.Marshal(want.Interface())
			if err != nil {
				t.Fatalf("%s: runtime marshal: %v", name, err)
			}
			back := mt.New().Interface()
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, back); err != nil {
				t.Fatalf("%s: codec unmarshal of the runtime's bytes: %v", name, err)
			}
			if !proto.Equal(back, want.Interface()) {
				t.Fatalf("%s: runtime -> codec changed the message:\n got %v\nwant %v", name, back, want)
			}
		}
	}
}

// TestLargeMessagePooled: a message above grpc-go's pooling threshold is
// encoded into a pooled buffer and still decodes whole.
func TestLargeMessagePooled(t *testing.T) {
	var c Codec
	req := &pb.SubmitJobsRequest{}
	for i := 0; i < 2000; i++ {
		req.Jobs = append(req.Jobs, &pb.JobSpec{Name: fmt.Sprintf("job-%d", i), Pool: "/studio/ingest",
			Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"/bin/true"}, Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 16 << 20}}}})
	}
	data, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Free()
	if data.Len() != proto.Size(req) || data.Len() < 64<<10 {
		t.Fatalf("encoded %d bytes, want %d (and a large message)", data.Len(), proto.Size(req))
	}
	var got pb.SubmitJobsRequest
	if err := c.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, req) {
		t.Fatal("the large request changed on the way")
	}
}

// TestBadInputNamed: truncated bytes are an error naming the message, not
// a panic or a half-decoded message passed on.
func TestBadInputNamed(t *testing.T) {
	var c Codec
	raw, err := proto.Marshal(&pb.JobSpec{Name: "clip", Pool: "/studio"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw[:len(raw)-3])}, &pb.JobSpec{})
	if err == nil || !strings.Contains(err.Error(), "JobSpec") {
		t.Fatalf("truncated JobSpec: err = %v, want an error naming the message", err)
	}
}

// TestFallbackForOtherMessages: a message without generated VT methods
// goes through grpc-go's proto codec, and a value that is no message at
// all is an error.
func TestFallbackForOtherMessages(t *testing.T) {
	var c Codec
	want := durationpb.New(1500)
	data, err := c.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := &durationpb.Duration{}
	if err := c.Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshalling a string: no error")
	}
}

// echoJobs answers SubmitJobs with one job per spec.
type echoJobs struct {
	pb.UnimplementedJobServiceServer
}

func (echoJobs) SubmitJobs(_ context.Context, req *pb.SubmitJobsRequest) (*pb.SubmitJobsResponse, error) {
	resp := &pb.SubmitJobsResponse{}
	for i, s := range req.Jobs {
		resp.Jobs = append(resp.Jobs, &pb.Job{Id: fmt.Sprintf("job-%d", i+1), Name: s.Name,
			Tasks: []*pb.Task{{Name: s.Tasks[0].Name, Spec: s.Tasks[0]}}})
		resp.Existing = append(resp.Existing, false)
	}
	return resp, nil
}

// TestInteroperatesWithDefaultCodec: a client with the codec and a server
// without it, and the other way round, exchange the same messages over a
// real gRPC connection on loopback.
func TestInteroperatesWithDefaultCodec(t *testing.T) {
	cases := []struct {
		name   string
		server []grpc.ServerOption
		dial   []grpc.DialOption
	}{
		{"codec client, default server", nil, []grpc.DialOption{DialOption()}},
		{"default client, codec server", []grpc.ServerOption{ServerOption()}, nil},
		{"codec on both", []grpc.ServerOption{ServerOption()}, []grpc.DialOption{DialOption()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer(tc.server...)
			pb.RegisterJobServiceServer(srv, echoJobs{})
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()
			defer func() {
				srv.Stop()
				if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
					t.Errorf("serve: %v", err)
				}
			}()
			conn, err := grpc.NewClient(lis.Addr().String(), append(tc.dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			spec := &pb.JobSpec{Name: "one", Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"true"},
				Env: map[string]string{"A": "1"}, Resources: &pb.Resources{CpuMillis: 1000}}}}
			resp, err := pb.NewJobServiceClient(conn).SubmitJobs(context.Background(), &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Jobs) != 1 || resp.Jobs[0].Id != "job-1" || resp.Jobs[0].Name != "one" || !proto.Equal(resp.Jobs[0].Tasks[0].Spec, spec.Tasks[0]) {
				t.Fatalf("reply %v, want job-1 echoing the spec", resp)
			}
		})
	}
}
