// Package wirecodectest checks, for every message of a protobuf package,
// that generated encoders (protoc-gen-go-vtproto's) and the protobuf
// runtime agree: what one encodes the other decodes to the same message.
// The wire API's codec and the raft log's commands are both tested with it.
package wirecodectest

import (
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Codec is one side of the comparison: an encoder and a decoder.
type Codec struct {
	Marshal   func(m proto.Message) ([]byte, error)
	Unmarshal func(data []byte, m proto.Message) error
}

// CheckRoundTrips fills every message type of the protobuf package pkg
// (at least minTypes of them must be registered) in every field, once for
// each member of its largest oneof (and at least three times), and checks that c's bytes decode
// with the runtime, and the runtime's with c, to the same message.
func CheckRoundTrips(t *testing.T, pkg protoreflect.FullName, minTypes int, c Codec) {
	t.Helper()
	var types []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if mt.Descriptor().ParentFile().Package() == pkg && !mt.Descriptor().IsMapEntry() {
			types = append(types, mt)
		}
		return true
	})
	if len(types) < minTypes {
		t.Fatalf("found %d %s message types; want at least %d", len(types), pkg, minTypes)
	}
	runtime := Codec{Marshal: proto.Marshal, Unmarshal: proto.Unmarshal}
	for _, mt := range types {
		for variant := 0; variant < variants(mt.Descriptor()); variant++ {
			want := mt.New()
			Fill(want, variant, 3)
			name := fmt.Sprintf("%s/%d", mt.Descriptor().FullName(), variant)

			roundTrip(t, name+": generated -> runtime", want.Interface(), c, runtime)
			roundTrip(t, name+": runtime -> generated", want.Interface(), runtime, c)
		}
	}
}

// roundTrip encodes want with enc and decodes it with dec, and fails the
// test unless the result equals want.
func roundTrip(t *testing.T, name string, want proto.Message, enc, dec Codec) {
	t.Helper()
	data, err := enc.Marshal(want)
	if err != nil {
		t.Fatalf("%s: marshal: %v", name, err)
	}
	got := want.ProtoReflect().New().Interface()
	if err := dec.Unmarshal(data, got); err != nil {
		t.Fatalf("%s: unmarshal: %v", name, err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s changed the message:\n got %v\nwant %v", name, got, want)
	}
}

// variants is how many fillings of md test each member of each of its
// oneofs at least once (and each message at least three times).
func variants(md protoreflect.MessageDescriptor) int {
	n := 3
	for i := 0; i < md.Oneofs().Len(); i++ {
		n = max(n, md.Oneofs().Get(i).Fields().Len())
	}
	return n
}

// Fill sets every field of m (the variant-th member of each oneof, two
// elements in each list and map) to a value that differs from its zero,
// recursing depth levels into message fields.
func Fill(m protoreflect.Message, variant, depth int) {
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
					Fill(e.Message(), variant+k, depth-1)
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
					Fill(v.Message(), variant+k, depth-1)
					mp.Set(key, v)
				} else {
					mp.Set(key, scalar(fd.MapValue(), k+1))
				}
			}
		case fd.Message() != nil:
			Fill(m.Mutable(fd).Message(), variant, depth-1)
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

// DeepTaskSpec encodes a banyan.v1.TaskSpec whose fallback chain is depth
// long (the wire API's one recursive field), from the innermost task
// outwards at the end of one buffer: a decoder without a depth limit would
// recurse depth deep.
func DeepTaskSpec(depth int) []byte {
	leaf := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "leaf") // name
	buf := make([]byte, len(leaf)+depth*(1+protowire.SizeVarint(math.MaxUint64)))            // a tag and a length a level, at most
	at := len(buf) - copy(buf[len(buf)-len(leaf):], leaf)
	for i := 0; i < depth; i++ {
		head := protowire.AppendVarint(protowire.AppendTag(nil, 11, protowire.BytesType), uint64(len(buf)-at)) // fallback
		at -= copy(buf[at-len(head):], head)
	}
	return buf[at:]
}
