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
// 13 ms. The generated code needs no set-up (README, "Three binaries").
//
// Messages without the generated methods (another package's, a health
// check's) go through grpc-go's own proto codec. Like the runtime, the
// codec refuses messages nested more than MaxDepth deep (the generated
// decoder alone has no limit). Unmarshal is the same decoding for bytes
// that do not come over gRPC: the server reads its raft log entries with
// it.
package wirecodec

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Name is the codec's name: the content subtype it speaks, protobuf's.
const Name = grpcproto.Name

// vtMessage is a message with protoc-gen-go-vtproto's generated encoder.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
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

// Unmarshal decodes data into v, replacing what v held, with its
// generated UnmarshalVT code when it has one, and with grpc-go's proto
// codec otherwise.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(Message)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// The generated code copies strings and bytes out of buf (the unsafe
	// variant, which would alias it, is not generated), so buf may go back
	// to the pool.
	return Unmarshal(buf.ReadOnlyData(), m)
}

// Message is a protobuf message with protoc-gen-go-vtproto's generated
// decoder.
type Message interface {
	proto.Message
	Reset()
	UnmarshalVT(dAtA []byte) error
}

// Unmarshal decodes data into m with its generated decoder, replacing what
// m held (as proto.Unmarshal does; the generated decoder alone merges),
// and refuses a message that nests more than MaxDepth deep.
func Unmarshal(data []byte, m Message) error {
	m.Reset()
	// Each level of nesting takes at least two bytes (a tag and a
	// length), so a message shorter than 2*MaxDepth cannot nest too deep:
	// a CLI's small replies skip the check and its one-time cost (the
	// schema's field tables).
	if len(data) >= 2*MaxDepth {
		if err := checkDepth(data, m.ProtoReflect().Descriptor(), 0); err != nil {
			return fmt.Errorf("unmarshal %T: %w", m, err)
		}
	}
	if err := m.UnmarshalVT(data); err != nil {
		return fmt.Errorf("unmarshal %T: %w", m, err)
	}
	return nil
}

// MaxDepth is how deeply messages may nest in what the codec decodes: the
// protobuf runtime's default recursion limit. The generated decoder has no
// limit of its own, and the wire API has a recursive message (a TaskSpec's
// fallback is a TaskSpec), so a message nested millions deep, which fits
// in a few megabytes, would overflow the decoding goroutine's stack and
// end the process. The check runs before the decoder, on the bytes, and
// only for messages long enough and of types that can nest without bound.
const MaxDepth = 10000

// errTooDeep is what a message nested deeper than MaxDepth gets.
var errTooDeep = fmt.Errorf("messages nest more than %d deep", MaxDepth)

// checkDepth returns errTooDeep when data, a message of type md, nests
// more than MaxDepth deep. Malformed bytes pass: the decoder reports them.
func checkDepth(data []byte, md protoreflect.MessageDescriptor, depth int) error {
	if !recursive(md) {
		return nil // its nesting is bounded by its schema
	}
	if depth >= MaxDepth {
		return errTooDeep
	}
	fields := md.Fields()
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return nil
		}
		data = data[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return nil
			}
			data = data[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return nil
		}
		data = data[n:]
		if fd := fields.ByNumber(num); fd != nil && fd.Message() != nil { // a message, or a map's entry
			if err := checkDepth(v, fd.Message(), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// recursiveTypes caches recursive's answer by message name.
var recursiveTypes sync.Map // protoreflect.FullName -> bool

// recursive reports whether a message of type md can hold, at any depth, a
// message of a type that can hold itself.
func recursive(md protoreflect.MessageDescriptor) bool {
	if r, ok := recursiveTypes.Load(md.FullName()); ok {
		return r.(bool)
	}
	r := reachesCycle(md, map[protoreflect.FullName]bool{}, map[protoreflect.FullName]bool{})
	recursiveTypes.Store(md.FullName(), r)
	return r
}

// reachesCycle walks the message types md holds, depth first: onPath
// holds the types on the way down, done the ones already walked without
// finding a cycle.
func reachesCycle(md protoreflect.MessageDescriptor, onPath, done map[protoreflect.FullName]bool) bool {
	name := md.FullName()
	if onPath[name] {
		return true
	}
	if done[name] {
		return false
	}
	onPath[name] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if sub := fields.Get(i).Message(); sub != nil && reachesCycle(sub, onPath, done) {
			return true
		}
	}
	delete(onPath, name)
	done[name] = true
	return false
}

// fallback is grpc-go's own proto codec, registered by its package's init.
func fallback() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

// DialOption makes a client's calls use the codec.
func DialOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{}))
}

// ServerOption makes a server use the codec for every call it serves.
func ServerOption() grpc.ServerOption { return grpc.ForceServerCodecV2(Codec{}) }
