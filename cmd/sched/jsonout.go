package main

import (
	"encoding/base64"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The CLI's -o json is meant for scripts, so it says what the flags say:
// integers are JSON numbers (protojson writes 64-bit ones as strings), and
// enum values are the words the CLI takes ("succeeded", "batch"), not
// "JOB_STATE_SUCCEEDED". Field names are the proto names (snake_case);
// fields at their zero value are left out.

// jsonValue converts a message to plain JSON values.
func jsonValue(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		out[string(fd.Name())] = fieldValue(fd, v)
		return true
	})
	return out
}

func fieldValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = scalarValue(fd, l.Get(i))
		}
		return out
	case fd.IsMap():
		out := map[string]any{}
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			out[k.String()] = scalarValue(fd.MapValue(), mv)
			return true
		})
		return out
	}
	return scalarValue(fd, v)
}

func scalarValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return jsonValue(v.Message())
	case protoreflect.EnumKind:
		return enumWord(fd.Enum(), v.Enum())
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	}
	return v.Interface() // bool, string, int32/64, uint32/64, float, double: JSON as they are
}

// enumWord is an enum value without its type's prefix, in lower case:
// JOB_STATE_SUCCEEDED -> "succeeded", NVENC_LIMIT_PER_SYSTEM -> "per_system".
// An unknown number is rendered as the number.
func enumWord(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) any {
	vd := ed.Values().ByNumber(n)
	if vd == nil {
		return int32(n)
	}
	return strings.ToLower(strings.TrimPrefix(string(vd.Name()), enumPrefix(ed)))
}

// enumPrefix is the prefix all of an enum's value names share, up to an
// underscore ("JOB_STATE_").
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	if vals.Len() < 2 {
		return ""
	}
	prefix := string(vals.Get(0).Name())
	for i := 1; i < vals.Len(); i++ {
		name := string(vals.Get(i).Name())
		for !strings.HasPrefix(name, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	if i := strings.LastIndexByte(prefix, '_'); i >= 0 {
		return prefix[:i+1]
	}
	return ""
}
