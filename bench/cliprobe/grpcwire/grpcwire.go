// Package grpcwire holds what the hand-framed CLI probes (bench/cliprobe/
// h2frame and wire) share of one SubmitJobs call: the submit workload's
// request, encoded field by field, gRPC's message prefix, the reply's job
// id and the call's status from its trailers.
//
// It encodes and decodes protobuf by hand (varints and length-delimited
// fields, the only kinds the call uses) and does not import the protobuf
// module, so that a probe built on it links none of the protobuf runtime
// (nor protobuf's detrand, whose package initialisation reads the
// executable). Field numbers are banyan.proto's; the probes' tests check
// the request against the server's own decoding of it
// (bench/cliprobe/probetest).
package grpcwire

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// SubmitMethod is JobService.SubmitJobs's gRPC path.
const SubmitMethod = "/banyan.v1.JobService/SubmitJobs"

// CallTimeout bounds a probe's whole call, connect to trailers.
const CallTimeout = 30 * time.Second

// Dial connects to addr for one call: within CallTimeout, and with the
// connection's deadline CallTimeout away, so that the whole call is
// bounded too.
func Dial(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, CallTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	if err := conn.SetDeadline(time.Now().Add(CallTimeout)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return conn, nil
}

// RandomKey is an idempotency key like the one `sched job submit` gives
// each job: "probe-" and 24 random hex digits.
func RandomKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "probe-" + hex.EncodeToString(b[:])
}

// SubmitRequest encodes a SubmitJobsRequest holding peers.SubmitJobYAML's
// job (one task "t" running `true` with 1 cpu and 16 MiB) with the given
// idempotency key.
func SubmitRequest(key string) []byte {
	res := appendVarintField(nil, 1, 1000)        // Resources.cpu_millis
	res = appendVarintField(res, 2, 16<<20)       // Resources.memory_bytes
	task := appendBytesField(nil, 1, []byte("t")) // TaskSpec.name
	task = appendBytesField(task, 2, []byte("true"))
	task = appendBytesField(task, 4, res)
	job := appendBytesField(nil, 1, []byte("one")) // JobSpec.name
	job = appendBytesField(job, 5, []byte(key))
	job = appendBytesField(job, 7, task)
	return appendBytesField(nil, 1, job) // SubmitJobsRequest.jobs
}

// Wire types of the protobuf encoding.
const (
	varintType = 0
	fixed64    = 1
	bytesType  = 2
	fixed32    = 5
)

// appendVarint appends v as a base-128 varint.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendVarintField(b []byte, num int, v uint64) []byte {
	return appendVarint(appendVarint(b, uint64(num)<<3|varintType), v)
}

func appendBytesField(b []byte, num int, v []byte) []byte {
	b = appendVarint(appendVarint(b, uint64(num)<<3|bytesType), uint64(len(v)))
	return append(b, v...)
}

// maxFieldNumber is the largest field number protobuf allows.
const maxFieldNumber = 1<<29 - 1

// errTruncated is a message that ends inside a field.
var errTruncated = errors.New("message ends inside a field")

// consumeVarint reads a varint off the front of b and returns it and its
// length.
func consumeVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		if i == 9 && b[i] > 1 { // a tenth byte holds bit 63 alone, and ends the varint
			return 0, 0, errors.New("varint overflows 64 bits")
		}
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errTruncated
}

// field is the first length-delimited field numbered num in the encoded
// message b.
func field(b []byte, num uint64) ([]byte, bool, error) {
	for len(b) > 0 {
		tag, n, err := consumeVarint(b)
		if err != nil {
			return nil, false, err
		}
		b = b[n:]
		if num := tag >> 3; num == 0 || num > maxFieldNumber {
			return nil, false, fmt.Errorf("field number %d: not one protobuf allows", num)
		}
		var size uint64
		switch tag & 7 {
		case varintType:
			_, n, err = consumeVarint(b)
			if err != nil {
				return nil, false, err
			}
			size = uint64(n)
		case fixed64:
			size = 8
		case fixed32:
			size = 4
		case bytesType:
			l, n, err := consumeVarint(b)
			if err != nil {
				return nil, false, err
			}
			if l > uint64(len(b)-n) {
				return nil, false, errTruncated
			}
			if tag>>3 == num {
				return b[n : n+int(l)], true, nil
			}
			size = uint64(n) + l
		default:
			return nil, false, fmt.Errorf("wire type %d is not one a reply holds", tag&7)
		}
		if size > uint64(len(b)) {
			return nil, false, errTruncated
		}
		b = b[size:]
	}
	return nil, false, nil
}

// FirstJobID reads SubmitJobsResponse.jobs[0].id from an encoded reply.
func FirstJobID(reply []byte) (string, error) {
	job, ok, err := field(reply, 1)
	if err != nil {
		return "", fmt.Errorf("reply: %w", err)
	}
	if !ok {
		return "", errors.New("reply without a job")
	}
	id, _, err := field(job, 1)
	if err != nil {
		return "", fmt.Errorf("reply's job: %w", err)
	}
	if len(id) == 0 {
		return "", errors.New("reply's job has no id")
	}
	return string(id), nil
}

// Frame prefixes msg as gRPC sends a message: not compressed, then its
// length.
func Frame(msg []byte) []byte {
	framed := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(framed[1:5], uint32(len(msg)))
	return append(framed, msg...)
}

// Unframe is the one message of a reply's body.
func Unframe(body []byte) ([]byte, error) {
	if len(body) < 5 {
		return nil, fmt.Errorf("reply of %d bytes: want a message", len(body))
	}
	if body[0] != 0 {
		return nil, errors.New("reply is compressed: not asked for")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) != uint64(len(body)-5) {
		return nil, fmt.Errorf("reply message of %d bytes in a body of %d: want one message", n, len(body)-5)
	}
	return body[5:], nil
}

// Status is the call's error from its trailers' grpc-status and
// grpc-message (percent-encoded on the wire): nil when the code is 0.
func Status(code, msg string) error {
	if code == "" {
		return errors.New("trailers without grpc-status")
	}
	if code == "0" {
		return nil
	}
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	if _, err := strconv.Atoi(code); err != nil {
		code = strconv.Quote(code)
	}
	return fmt.Errorf("gRPC status %s: %s", code, msg)
}
