// Command h2frame submits the submit workload's one-task job as one gRPC
// call framed by hand: HTTP/2 frames from golang.org/x/net/http2's Framer
// and hpack, the request encoded field by field (bench/cliprobe/grpcwire),
// and neither grpc-go nor the protobuf module linked. It is a measuring
// probe, not a client: plaintext, no token, no retries, unary only, one
// call per connection. Against grpcgo it shows what linking and running
// grpc-go and the protobuf runtime cost a process; wire, which drops the
// HTTP/2 library too, shows what is left (bench/README.md, "What a CLI
// call costs").
//
// Usage: h2frame ADDR
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/banyan-sched/banyan/bench/cliprobe/grpcwire"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: h2frame ADDR")
		os.Exit(2)
	}
	id, err := submit(os.Args[1], grpcwire.SubmitRequest(grpcwire.RandomKey()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2frame:", err)
		os.Exit(1)
	}
	fmt.Println(id)
}

// submit makes one SubmitJobs call with the encoded request on a new
// connection to addr and returns the first job's id from the reply.
func submit(addr string, req []byte) (string, error) {
	conn, err := grpcwire.Dial(addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	reply, err := call(conn, addr, grpcwire.SubmitMethod, req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", grpcwire.SubmitMethod, err)
	}
	return grpcwire.FirstJobID(reply)
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
	framed := grpcwire.Frame(msg)
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
			if err := callStatus(f); err != nil {
				return nil, err
			}
			return grpcwire.Unframe(body)
		}
	}
}

// callStatus is the call's error from its trailers, nil when grpc-status is
// 0.
func callStatus(f *http2.MetaHeadersFrame) error {
	var code, msg string
	for _, h := range f.RegularFields() {
		switch h.Name {
		case "grpc-status":
			code = h.Value
		case "grpc-message":
			msg = h.Value
		}
	}
	return grpcwire.Status(code, msg)
}
