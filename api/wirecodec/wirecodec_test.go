package wirecodec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/wirecodec/wirecodectest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRoundTripEveryMessage: for every wire message, filled in every field,
// what the codec encodes the protobuf runtime decodes to the same message,
// and what the runtime encodes the codec decodes to the same message.
func TestRoundTripEveryMessage(t *testing.T) {
	var c Codec
	wirecodectest.CheckRoundTrips(t, "banyan.v1", 50, wirecodectest.Codec{
		Marshal: func(m proto.Message) ([]byte, error) {
			if _, ok := m.(vtMessage); !ok {
				return nil, fmt.Errorf("%T has no generated VT methods: run make proto", m)
			}
			data, err := c.Marshal(m)
			if err != nil {
				return nil, err
			}
			defer data.Free()
			return data.Materialize(), nil
		},
		Unmarshal: func(data []byte, m proto.Message) error {
			return c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, m)
		},
	})
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

// TestUnmarshalReplaces: decoding into a message that already holds fields
// replaces them, as grpc-go's own codec does, instead of merging.
func TestUnmarshalReplaces(t *testing.T) {
	var c Codec
	data, err := c.Marshal(&pb.JobSpec{Name: "new"})
	if err != nil {
		t.Fatal(err)
	}
	got := &pb.JobSpec{Name: "old", Pool: "/old", Tasks: []*pb.TaskSpec{{Name: "stale"}}}
	if err := c.Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if want := (&pb.JobSpec{Name: "new"}); !proto.Equal(got, want) {
		t.Fatalf("got %v, want %v (the old fields kept)", got, want)
	}
}

// TestDeepNestingRefused: a message nested past MaxDepth (a TaskSpec's
// fallback chain, inside a submission) is an error naming the message, not
// a stack overflow that ends the process; one within the limit decodes.
func TestDeepNestingRefused(t *testing.T) {
	var c Codec
	const deep = 200_000                                    // about 1 MB on the wire, well within a message
	req := protowire.AppendTag(nil, 1, protowire.BytesType) // SubmitJobsRequest.jobs
	job := protowire.AppendTag(nil, 7, protowire.BytesType) // JobSpec.tasks
	job = protowire.AppendBytes(job, wirecodectest.DeepTaskSpec(deep))
	req = protowire.AppendBytes(req, job)
	err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(req)}, &pb.SubmitJobsRequest{})
	if err == nil || !strings.Contains(err.Error(), "SubmitJobsRequest") || !strings.Contains(err.Error(), "nest") {
		t.Fatalf("a fallback chain %d deep: err = %v, want an error naming the message and its nesting", deep, err)
	}

	// Short messages skip the check; long ones within the limit pass it.
	for _, depth := range []int{100, MaxDepth - 1} {
		data := wirecodectest.DeepTaskSpec(depth)
		var spec pb.TaskSpec
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, &spec); err != nil {
			t.Fatalf("a chain %d deep (%d bytes): %v", depth, len(data), err)
		}
		n := 0
		for f := &spec; f.Fallback != nil; f = f.Fallback {
			n++
		}
		if n != depth {
			t.Fatalf("decoded a chain %d deep, want %d", n, depth)
		}
	}
}

// TestRecursiveTypes: only the types that can hold a TaskSpec are walked
// for their depth; the others are bounded by the schema.
func TestRecursiveTypes(t *testing.T) {
	for _, tc := range []struct {
		m    proto.Message
		want bool
	}{
		{&pb.TaskSpec{}, true}, {&pb.SubmitJobsRequest{}, true}, {&pb.Job{}, true},
		{&pb.Resources{}, false}, {&pb.HeartbeatAck{}, false},
	} {
		if got := recursive(tc.m.ProtoReflect().Descriptor()); got != tc.want {
			t.Errorf("recursive(%T) = %v, want %v", tc.m, got, tc.want)
		}
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
