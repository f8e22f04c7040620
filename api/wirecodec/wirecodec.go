// Package wirecodec is the gRPC codec of Banyan's wire API. It speaks the
// same protobuf encoding as grpc-go's default codec (content subtype
// "proto"), so either side may use either codec, but it encodes and
// decodes the banyanv1 messages with the code protoc-gen-go-vtproto
// generates next to them (MarshalVT, UnmarshalVT, SizeVT) instead of the
// protobuf runtime's reflection.
//
// Why: the protobuf runtime builds a message type's coder lazily, by
// reflection, the first time a process encodes or decodes that type. A
// long-lived server pays it once; `sched job submit`, one process per call,
// paid it on every call: about 1.2 ms to encode its first SubmitJobsRequest
// and 0.4 ms to decode the reply, on a 2-cpu VM where the whole call took
// 13 ms. The generated code needs no set-up (README, "Two binaries").
//
// Messages without the generated methods (another package's, a health
// check's) go through grpc-go's own proto codec.
package wirecodec

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Name is the codec's name: the content subtype it speaks, protobuf's.
const Name = grpcproto.Name

// vtMessage is a message with protoc-gen-go-vtproto's generated methods.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// Codec is the wire codec (encoding.CodecV2). The zero value is ready.
type Codec struct{}

// Name returns "proto", the content subtype the codec speaks.
func (Codec) Name() string { return Name }

// Marshal encodes v with its generated MarshalVT code when it has one, and
// with grpc-go's proto codec otherwise.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if err := marshalInto(m, buf); err != nil {
			return nil, fmt.Errorf("marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if err := marshalInto(m, (*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// marshalInto encodes m into buf, which is exactly SizeVT bytes long (the
// generated code writes from the end backwards).
func marshalInto(m vtMessage, buf []byte) error {
	n, err := m.MarshalToSizedBufferVT(buf)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return fmt.Errorf("encoded %d bytes, sized %d (was the message changed while being sent?)", n, len(buf))
	}
	return nil
}

// Unmarshal decodes data into v, which grpc-go hands over freshly made,
// with its generated UnmarshalVT code when it has one, and with grpc-go's
// proto codec otherwise.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// The generated code copies strings and bytes out of buf (the unsafe
	// variant, which would alias it, is not generated), so buf may go back
	// to the pool.
	if err := m.UnmarshalVT(buf.ReadOnlyData()); err != nil {
		return fmt.Errorf("unmarshal %T: %w", v, err)
	}
	return nil
}

// fallback is grpc-go's own proto codec, registered by its package's init.
func fallback() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

// DialOption makes a client's calls use the codec.
func DialOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{}))
}

// ServerOption makes a server use the codec for every call it serves.
func ServerOption() grpc.ServerOption { return grpc.ForceServerCodecV2(Codec{}) }
