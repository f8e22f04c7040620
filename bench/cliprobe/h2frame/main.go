// Command h2frame submits the submit workload's one-task job as one gRPC
// call framed by hand: HTTP/2 frames from golang.org/x/net/http2's Framer
// and hpack, the request encoded field by field with protowire, and
// neither grpc-go nor the protobuf runtime linked. It is a measuring
// probe, not a client: plaintext, no token, no retries, unary only, one
// call per connection. Its rate bounds what any Go client process that
// waits for the job's commit could reach against the same server, and
// against grpcgo it shows what linking and running grpc-go and the
// protobuf runtime cost a process (bench/README.md, "What a CLI call
// costs").
//
// Usage: h2frame ADDR
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
)

// submitMethod is JobService.SubmitJobs's gRPC path.
const submitMethod = "/banyan.v1.JobService/SubmitJobs"

// callTimeout bounds the whole call, connect to trailers.
const callTimeout = 30 * time.Second

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: h2frame ADDR")
		os.Exit(2)
	}
	id, err := submit(os.Args[1], submitRequest(randomKey()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2frame:", err)
		os.Exit(1)
	}
	fmt.Println(id)
}

// randomKey is an idempotency key like the one `sched job submit` gives
// each job.
func randomKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "probe-" + hex.EncodeToString(b[:])
}

// submitRequest encodes a SubmitJobsRequest holding peers.SubmitJobYAML's
// job (one task "t" running `true` with 1 cpu and 16 MiB) with the given
// idempotency key. Field numbers are banyan.proto's.
func submitRequest(key string) []byte {
	var res []byte // Resources: cpu_millis, memory_bytes
	res = protowire.AppendTag(res, 1, protowire.VarintType)
	res = protowire.AppendVarint(res, 1000)
	res = protowire.AppendTag(res, 2, protowire.VarintType)
	res = protowire.AppendVarint(res, 16<<20)
	// TaskSpec: name, command, resources.
	task := appendString(nil, 1, "t")
	task = appendString(task, 2, "true")
	task = appendBytes(task, 4, res)
	// JobSpec: name, idempotency_key, tasks.
	job := appendString(nil, 1, "one")
	job = appendString(job, 5, key)
	job = appendBytes(job, 7, task)
	return appendBytes(nil, 1, job) // SubmitJobsRequest.jobs
}

func appendString(b []byte, field protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, field, protowire.BytesType), s)
}

func appendBytes(b []byte, field protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, field, protowire.BytesType), v)
}

// submit makes one SubmitJobs call with the encoded request on a new
// connection to addr and returns the first job's id from the reply.
func submit(addr string, req []byte) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, callTimeout)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(callTimeout)); err != nil {
		return "", fmt.Errorf("connect %s: %w", addr, err)
	}
	reply, err := call(conn, addr, submitMethod, req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", submitMethod, err)
	}
	return firstJobID(reply)
}

// call writes the client preface, the call's headers and its one message,
// then reads frames until the call's trailers and returns the reply
// message. The request and the reply must each fit the initial
// flow-control window (64 KiB less one byte), as a one-job call's do: the
// probe sends no WINDOW_UPDATE.
func call(conn net.Conn, authority, method string, msg []byte) ([]byte, error) {
	const stream = 1
	w := bufio.NewWriter(conn)
	fr := http2.NewFramer(w, bufio.NewReader(conn))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return nil, fmt.Errorf("encode headers: %w", err)
		}
	}
	framed := make([]byte, 5+len(msg)) // gRPC's prefix: not compressed, then the length
	binary.BigEndian.PutUint32(framed[1:5], uint32(len(msg)))
	copy(framed[5:], msg)
	if _, err := w.WriteString(http2.ClientPreface); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if err := errors.Join(fr.WriteSettings(),
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: hdr.Bytes(), EndHeaders: true}),
		fr.WriteData(stream, true, framed), w.Flush()); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	var body []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := errors.Join(fr.WriteSettingsAck(), w.Flush()); err != nil {
					return nil, fmt.Errorf("write: %w", err)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := errors.Join(fr.WritePing(true, f.Data), w.Flush()); err != nil {
					return nil, fmt.Errorf("write: %w", err)
				}
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo || f.LastStreamID < stream {
				return nil, fmt.Errorf("server sent GOAWAY (%v): %s", f.ErrCode, f.DebugData())
			}
			// A graceful GOAWAY that still serves this stream.
		case *http2.RSTStreamFrame:
			return nil, fmt.Errorf("server reset the stream (%v)", f.ErrCode)
		case *http2.DataFrame:
			body = append(body, f.Data()...)
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && s != "200" {
				return nil, fmt.Errorf("HTTP status %s", s)
			}
			if !f.StreamEnded() {
				continue // the response's headers; the trailers end the stream
			}
			if err := grpcStatus(f); err != nil {
				return nil, err
			}
			return unframe(body)
		}
	}
}

// grpcStatus is the call's error from its trailers, nil when grpc-status
// is 0.
func grpcStatus(f *http2.MetaHeadersFrame) error {
	code := ""
	msg := ""
	for _, h := range f.RegularFields() {
		switch h.Name {
		case "grpc-status":
			code = h.Value
		case "grpc-message":
			msg = h.Value
		}
	}
	if code == "" {
		return errors.New("trailers without grpc-status")
	}
	if code == "0" {
		return nil
	}
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	if n, err := strconv.Atoi(code); err == nil {
		return fmt.Errorf("gRPC status %d: %s", n, msg)
	}
	return fmt.Errorf("gRPC status %q: %s", code, msg)
}

// unframe is the one message of a reply's body.
func unframe(body []byte) ([]byte, error) {
	if len(body) < 5 {
		return nil, fmt.Errorf("reply of %d bytes: want a message", len(body))
	}
	if body[0] != 0 {
		return nil, errors.New("reply is compressed: not asked for")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if int(n) != len(body)-5 {
		return nil, fmt.Errorf("reply message of %d bytes in a body of %d: want one message", n, len(body)-5)
	}
	return body[5:], nil
}

// firstJobID reads SubmitJobsResponse.jobs[0].id from an encoded reply.
func firstJobID(reply []byte) (string, error) {
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

// field is the first length-delimited field numbered num in the encoded
// message b.
func field(b []byte, num protowire.Number) ([]byte, bool, error) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false, protowire.ParseError(l)
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil, false, protowire.ParseError(l)
			}
			return v, true, nil
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil, false, protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil, false, nil
}
