// Command wire submits the submit workload's one-task job as one gRPC call
// with no HTTP/2 or gRPC library: it writes the client preface, its
// SETTINGS, the call's HEADERS (HPACK literals, no Huffman coding) and its
// DATA in one write, reads the server's frames itself, and links only
// golang.org/x/net/http2/hpack, to decode the server's header blocks
// (Huffman codes and the dynamic table). The request and the reply are
// encoded by hand (bench/cliprobe/grpcwire). It is the leanest Go process
// we could write that makes the call and waits for the commit: a measuring
// probe, not a client (plaintext, no token, no retries, unary only, one
// call per connection). Its rate is what a Go client process, one per
// call, reaches against the same server before the work a real CLI adds:
// flags, a job file to parse, TLS, a token, failover (bench/README.md,
// "What a CLI call costs").
//
// Usage: wire ADDR
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/banyan-sched/banyan/bench/cliprobe/grpcwire"
	"golang.org/x/net/http2/hpack"
)

func main() {
	if len(os.Args) != 2 {
		os.Stderr.WriteString("usage: wire ADDR\n")
		os.Exit(2)
	}
	id, err := submit(os.Args[1], grpcwire.SubmitRequest(grpcwire.RandomKey()))
	if err != nil {
		os.Stderr.WriteString("wire: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString(id + "\n")
}

// submit makes one SubmitJobs call with the encoded request on a new
// connection to addr and returns the first job's id from the reply.
func submit(addr string, req []byte) (string, error) {
	out, err := request(addr, grpcwire.SubmitMethod, req)
	if err != nil {
		return "", err
	}
	conn, err := grpcwire.Dial(addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.Write(out); err != nil {
		return "", fmt.Errorf("write: %w", err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return "", fmt.Errorf("%s: %w", grpcwire.SubmitMethod, err)
	}
	return grpcwire.FirstJobID(reply)
}

// HTTP/2 frame types and flags (RFC 9113, section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// clientPreface opens every HTTP/2 connection.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// stream is the call's stream, the connection's first.
const stream = 1

// maxFrame is the largest frame payload either side may send before
// SETTINGS say otherwise; the client sends no SETTINGS_MAX_FRAME_SIZE.
const maxFrame = 1 << 14

// initialWindow is the flow-control window a stream starts with; the
// client sends no WINDOW_UPDATE, so the request's message and the reply
// must each fit in it.
const initialWindow = 1<<16 - 1

// clientSettings is the client's SETTINGS payload:
// SETTINGS_ENABLE_PUSH (0x2) = 0, so that the server pushes nothing.
var clientSettings = []byte{0, 2, 0, 0, 0, 0}

// appendFrame appends one frame: its 9-byte header, then the payload.
func appendFrame(b []byte, typ, flags byte, streamID uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, streamID)
	return append(b, payload...)
}

// request is everything the client sends: the preface, its SETTINGS, the
// call's headers and its one message, ending the stream. HTTP/2 lets a
// client send its first request before the server's SETTINGS arrive. The
// headers and the message must each fit in one frame, and the message in
// the stream's initial window.
func request(authority, method string, msg []byte) ([]byte, error) {
	var h []byte
	h = append(h, 0x80|3, 0x80|6) // indexed: :method POST, :scheme http (static table)
	h = appendLiteral(h, 4, "", method)
	h = appendLiteral(h, 1, "", authority)
	h = appendLiteral(h, 31, "", "application/grpc") // content-type
	h = appendLiteral(h, 0, "te", "trailers")
	data := grpcwire.Frame(msg)
	if len(h) > maxFrame || len(data) > min(maxFrame, initialWindow) {
		return nil, fmt.Errorf("request of %d bytes of headers and %d of message: more than one frame holds (%d)", len(h), len(data), maxFrame)
	}
	b := make([]byte, 0, len(clientPreface)+3*9+len(clientSettings)+len(h)+len(data))
	b = append(b, clientPreface...)
	b = appendFrame(b, frameSettings, 0, 0, clientSettings)
	b = appendFrame(b, frameHeaders, flagEndHeaders, stream, h)
	return appendFrame(b, frameData, flagEndStream, stream, data), nil
}

// appendLiteral appends a header field as an HPACK literal without
// indexing (RFC 7541, section 6.2.2): the name by its static-table index,
// or, with index 0, as a string.
func appendLiteral(b []byte, index int, name, value string) []byte {
	b = appendHPACKInt(b, 0x00, 4, uint64(index))
	if index == 0 {
		b = appendHPACKString(b, name)
	}
	return appendHPACKString(b, value)
}

// appendHPACKString appends s as a plain (not Huffman-coded) string.
func appendHPACKString(b []byte, s string) []byte {
	return append(appendHPACKInt(b, 0x00, 7, uint64(len(s))), s...)
}

// appendHPACKInt appends v as an HPACK integer with an n-bit prefix,
// first byte's other bits high (RFC 7541, section 5.1).
func appendHPACKInt(b []byte, high byte, n uint, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, high|byte(v))
	}
	b = append(b, high|byte(limit))
	v -= limit
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// frame is one frame read.
type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// frameReader reads frames off a connection.
type frameReader struct {
	r   io.Reader
	buf []byte
}

// next reads the next frame; its payload is valid until the next call.
func (fr *frameReader) next() (frame, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return frame{}, err
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if n > maxFrame {
		return frame{}, fmt.Errorf("frame of %d bytes, over the %d allowed", n, maxFrame)
	}
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the header came, its payload did not
		}
		return frame{}, fmt.Errorf("frame payload: %w", err)
	}
	return frame{typ: hdr[3], flags: hdr[4], stream: binary.BigEndian.Uint32(hdr[5:9]) & 0x7fffffff, payload: p}, nil
}

// unpad strips a padded frame's padding (and, for HEADERS with the
// priority flag, its priority fields) from its payload.
func unpad(f frame) ([]byte, error) {
	p := f.payload
	pad := 0
	if f.flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, errors.New("padded frame without its pad length")
		}
		pad, p = int(p[0]), p[1:]
	}
	if f.typ == frameHeaders && f.flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("HEADERS frame too short for its priority")
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, errors.New("padding longer than the frame")
	}
	return p[:len(p)-pad], nil
}

// call is the state of the call's stream while its frames arrive.
type call struct {
	dec        *hpack.Decoder
	status     string // :status
	code, msg  string // grpc-status, grpc-message
	body       []byte
	headers    bool // the response's headers have come (the next block is the trailers)
	inHeaders  bool // a header block continues in CONTINUATION frames
	endsStream bool // the header block being read ends the stream
}

// readReply reads frames until the call's trailers and returns the reply
// message. It answers the server's SETTINGS and PINGs; the reply must fit
// the initial flow-control window (64 KiB less one byte), as a one-job
// call's does: it sends no WINDOW_UPDATE.
func readReply(conn io.ReadWriter) ([]byte, error) {
	// Buffered: one read takes what has arrived, several frames at once.
	fr := &frameReader{r: bufio.NewReaderSize(conn, 9+maxFrame)}
	c := &call{}
	c.dec = hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		switch f.Name {
		case ":status":
			c.status = f.Value
		case "grpc-status":
			c.code = f.Value
		case "grpc-message":
			c.msg = f.Value
		}
	})
	for {
		f, err := fr.next()
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		done, err := c.handle(conn, f)
		if err != nil || done {
			return c.body, err
		}
	}
}

// handle takes one frame; done is true once the stream has ended well,
// the reply then in c.body.
func (c *call) handle(w io.Writer, f frame) (done bool, err error) {
	if c.inHeaders != (f.typ == frameContinuation) {
		if c.inHeaders {
			return false, fmt.Errorf("header block interrupted by a frame of type %d", f.typ)
		}
		return false, errors.New("CONTINUATION frame without a header block")
	}
	switch f.typ {
	case frameSettings, framePing:
		if f.flags&flagAck == 0 { // acknowledged: a PING with its payload, SETTINGS with none
			ack := f.payload
			if f.typ == frameSettings {
				ack = nil
			}
			if _, err := w.Write(appendFrame(nil, f.typ, flagAck, 0, ack)); err != nil {
				return false, fmt.Errorf("write: %w", err)
			}
		}
	case framePushPromise:
		return false, errors.New("server sent PUSH_PROMISE: the client's SETTINGS turn push off")
	case frameGoAway:
		if len(f.payload) < 8 {
			return false, fmt.Errorf("GOAWAY frame of %d bytes: want 8 or more", len(f.payload))
		}
		last, code := binary.BigEndian.Uint32(f.payload[0:4])&0x7fffffff, binary.BigEndian.Uint32(f.payload[4:8])
		if code != 0 || last < stream {
			return false, fmt.Errorf("server sent GOAWAY (code %d): %s", code, f.payload[8:])
		}
		// A graceful GOAWAY that still serves this stream.
	case frameRSTStream:
		if f.stream == stream {
			if len(f.payload) != 4 {
				return false, fmt.Errorf("RST_STREAM frame of %d bytes: want 4", len(f.payload))
			}
			return false, fmt.Errorf("server reset the stream (code %d)", binary.BigEndian.Uint32(f.payload))
		}
	case frameData:
		if f.stream == stream {
			p, err := unpad(f)
			if err != nil {
				return false, err
			}
			c.body = append(c.body, p...)
			if f.flags&flagEndStream != 0 {
				return false, errors.New("stream ended without trailers")
			}
		}
	case frameHeaders, frameContinuation:
		if f.stream != stream {
			return false, fmt.Errorf("header block on stream %d", f.stream)
		}
		p := f.payload
		if f.typ == frameHeaders {
			if p, err = unpad(f); err != nil {
				return false, err
			}
			c.endsStream = f.flags&flagEndStream != 0
		}
		if _, err := c.dec.Write(p); err != nil {
			return false, fmt.Errorf("header block: %w", err)
		}
		c.inHeaders = f.flags&flagEndHeaders == 0
		if c.inHeaders {
			return false, nil
		}
		if err := c.dec.Close(); err != nil {
			return false, fmt.Errorf("header block: %w", err)
		}
		if !c.headers { // the response's headers (or, ending the stream, all of it)
			if c.status != "200" {
				return false, fmt.Errorf("HTTP status %q: want 200", c.status)
			}
			c.headers = true
		}
		if !c.endsStream {
			return false, nil // the trailers end the stream
		}
		if err := grpcwire.Status(c.code, c.msg); err != nil {
			return false, err
		}
		c.body, err = grpcwire.Unframe(c.body)
		return err == nil, err
	}
	return false, nil
}
