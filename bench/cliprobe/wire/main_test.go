package main

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/bench/cliprobe/grpcwire"
	"github.com/banyan-sched/banyan/bench/cliprobe/probetest"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestSubmit: the hand-framed call reaches a grpc-go server as the
// workload's job and the reply's job id comes back; a refusal is reported
// with its code and its message, percent-decoded, and a closed port is an
// error, not a hang.
func TestSubmit(t *testing.T) {
	probetest.CheckClient(t, func(addr string) (string, error) {
		return submit(addr, grpcwire.SubmitRequest(grpcwire.RandomKey()))
	}, "gRPC status 3: "+probetest.Refusal)
}

// TestRequestFrames: what the probe writes is, to x/net/http2's reader,
// the preface, a SETTINGS that turns push off, the call's headers and one
// DATA frame that ends the stream; a message too large for one frame is
// refused before anything is sent.
func TestRequestFrames(t *testing.T) {
	msg := []byte("message")
	b, err := request("127.0.0.1:7", grpcwire.SubmitMethod, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(http2.ClientPreface)) {
		t.Fatalf("no client preface: %q", b[:24])
	}
	fr := http2.NewFramer(nil, bytes.NewReader(b[len(http2.ClientPreface):]))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	f, err := fr.ReadFrame()
	if s, ok := f.(*http2.SettingsFrame); err != nil || !ok || s.IsAck() || s.NumSettings() != 1 {
		t.Fatalf("first frame %v, %v: want a SETTINGS of one setting", f, err)
	} else if v, ok := s.Value(http2.SettingEnablePush); !ok || v != 0 {
		t.Errorf("SETTINGS_ENABLE_PUSH %d (%v): want 0", v, ok)
	}
	f, err = fr.ReadFrame()
	h, ok := f.(*http2.MetaHeadersFrame)
	if err != nil || !ok || h.StreamID != 1 || h.StreamEnded() {
		t.Fatalf("second frame %v, %v: want the headers of stream 1", f, err)
	}
	got := map[string]string{}
	for _, hf := range h.Fields {
		got[hf.Name] = hf.Value
	}
	want := map[string]string{":method": "POST", ":scheme": "http", ":path": grpcwire.SubmitMethod, ":authority": "127.0.0.1:7",
		"content-type": "application/grpc", "te": "trailers"}
	if len(got) != len(want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header %s: %q, want %q", k, got[k], v)
		}
	}
	f, err = fr.ReadFrame()
	d, ok := f.(*http2.DataFrame)
	if err != nil || !ok || d.StreamID != 1 || !d.StreamEnded() || !bytes.Equal(d.Data(), grpcwire.Frame(msg)) {
		t.Fatalf("third frame %v, %v: want the message, ending stream 1", f, err)
	}
	if _, err := request("127.0.0.1:7", grpcwire.SubmitMethod, make([]byte, maxFrame)); err == nil || !strings.Contains(err.Error(), "more than one frame") {
		t.Errorf("a %d-byte message: %v, want it refused", maxFrame, err)
	}
}

// TestHPACKInt matches the examples of RFC 7541, appendix C.1.
func TestHPACKInt(t *testing.T) {
	for _, c := range []struct {
		v    uint64
		n    uint
		want []byte
	}{
		{10, 5, []byte{10}},
		{1337, 5, []byte{31, 154, 10}},
		{42, 8, []byte{42}},
		{15, 4, []byte{15, 0}},
	} {
		if got := appendHPACKInt(nil, 0, c.n, c.v); !bytes.Equal(got, c.want) {
			t.Errorf("%d with a %d-bit prefix: % x, want % x", c.v, c.n, got, c.want)
		}
	}
}

// conn is a connection to a scripted server: reads come from what the
// script wrote, writes are recorded.
type conn struct {
	*bytes.Reader
	wrote bytes.Buffer
}

func (c *conn) Write(p []byte) (int, error) { return c.wrote.Write(p) }

// headerBlock encodes fields as the server's header block.
func headerBlock(t *testing.T, enc *hpack.Encoder, buf *bytes.Buffer, fields ...string) []byte {
	t.Helper()
	buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		if err := enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TestReadReply feeds the reader frames as a server may send them, padded,
// split, interleaved with control frames, and broken, and checks the reply
// or the error, and what the probe wrote back.
func TestReadReply(t *testing.T) {
	reply := []byte{0x0a, 0x07, 0x0a, 0x05, 'j', 'o', 'b', '-', '1'}
	for _, c := range []struct {
		name   string
		script func(t *testing.T, fr *http2.Framer, block func(...string) []byte)
		err    string // "" for a good reply
		wrote  string // what the probe should have written, as frame types
	}{
		{"plain", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14}))
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200", "content-type", "application/grpc"), EndHeaders: true}))
			check(t, fr.WriteData(1, false, grpcwire.Frame(reply)))
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("grpc-status", "0"), EndHeaders: true, EndStream: true}))
		}, "", "SETTINGS ack"},
		{"padded, split and pinged", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			hb := block(":status", "200", "content-type", "application/grpc", "grpc-accept-encoding", "identity,deflate,gzip")
			check(t, fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}))
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb[:3], PadLength: 4,
				Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}}))
			check(t, fr.WriteContinuation(1, false, hb[3:5]))
			check(t, fr.WriteContinuation(1, true, hb[5:]))
			framed := grpcwire.Frame(reply)
			check(t, fr.WriteDataPadded(1, false, framed[:4], []byte{0, 0, 0}))
			check(t, fr.WriteWindowUpdate(0, 100))
			check(t, fr.WriteData(1, false, framed[4:]))
			check(t, fr.WriteGoAway(1, http2.ErrCodeNo, nil))
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("grpc-status", "0", "grpc-message", ""), EndHeaders: true, EndStream: true}))
		}, "", "PING ack 0102030405060708"},
		{"trailers only", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200", "grpc-status", "7", "grpc-message", "no%20token"), EndHeaders: true, EndStream: true}))
		}, "gRPC status 7: no token", ""},
		{"http error", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "503"), EndHeaders: true, EndStream: true}))
		}, `HTTP status "503"`, ""},
		{"headers without :status", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("content-type", "application/grpc"), EndHeaders: true}))
		}, `HTTP status ""`, ""},
		{"push promise", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: block(":method", "GET"), EndHeaders: true}))
		}, "PUSH_PROMISE", ""},
		{"reset", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteRSTStream(1, http2.ErrCodeRefusedStream))
		}, "reset the stream (code 7)", ""},
		{"goaway before the stream", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteGoAway(0, http2.ErrCodeNo, []byte("draining")))
		}, "GOAWAY (code 0): draining", ""},
		{"goaway with an error", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteGoAway(1, http2.ErrCodeProtocol, nil))
		}, "GOAWAY (code 1)", ""},
		{"ended without trailers", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteData(1, true, grpcwire.Frame(reply)))
		}, "without trailers", ""},
		{"interrupted header block", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200")[:1]}))
			check(t, fr.WriteData(1, false, nil))
		}, "header block interrupted", ""},
		{"stray continuation", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteContinuation(1, true, block(":status", "200")))
		}, "CONTINUATION frame without a header block", ""},
		{"cut short", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":status", "200"), EndHeaders: true}))
		}, "read: EOF", ""},
		{"bad compression", func(t *testing.T, fr *http2.Framer, block func(...string) []byte) {
			// An indexed field of index 0, which HPACK reserves.
			check(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x80}, EndHeaders: true}))
		}, "header block: decoding error: invalid indexed representation index 0", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var script, hbuf bytes.Buffer
			enc := hpack.NewEncoder(&hbuf)
			c.script(t, http2.NewFramer(&script, nil), func(f ...string) []byte { return headerBlock(t, enc, &hbuf, f...) })
			cn := &conn{Reader: bytes.NewReader(script.Bytes())}
			got, err := readReply(cn)
			if c.err == "" {
				if err != nil || !bytes.Equal(got, reply) {
					t.Fatalf("got % x, %v; want % x", got, err, reply)
				}
			} else if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("got % x, %v; want an error with %q", got, err, c.err)
			}
			if w := written(t, cn.wrote.Bytes()); w != c.wrote {
				t.Errorf("wrote %q, want %q", w, c.wrote)
			}
		})
	}
}

// TestMalformedFrames: frames no x/net/http2 Framer writes, each refused
// with what is wrong with it.
func TestMalformedFrames(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		err  string
	}{
		{"oversize", appendFrame(nil, frameData, 0, 1, make([]byte, maxFrame+1)), "frame of 16385 bytes, over the 16384 allowed"},
		{"payload cut short", appendFrame(nil, frameData, 0, 1, make([]byte, 10))[:12], "read: frame payload: unexpected EOF"},
		{"short RST_STREAM", appendFrame(nil, frameRSTStream, 0, 1, []byte{0, 0}), "RST_STREAM frame of 2 bytes"},
		{"short GOAWAY", appendFrame(nil, frameGoAway, 0, 0, []byte{0, 0, 0, 1}), "GOAWAY frame of 4 bytes"},
		{"padding past the end", appendFrame(nil, frameData, flagPadded, 1, []byte{9, 'x'}), "padding longer than the frame"},
		{"padded without a length", appendFrame(nil, frameData, flagPadded, 1, nil), "without its pad length"},
		{"priority cut short", appendFrame(nil, frameHeaders, flagPriority|flagEndHeaders, 1, []byte{0, 0}), "too short for its priority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readReply(&conn{Reader: bytes.NewReader(c.b)})
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("error %v: want one with %q", err, c.err)
			}
		})
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// written names the frames in b, as "SETTINGS ack" or "PING ack DATA".
func written(t *testing.T, b []byte) string {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	var out []string
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return strings.Join(out, " ")
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				t.Errorf("wrote SETTINGS that is not an ack")
			}
			out = append(out, "SETTINGS ack")
		case *http2.PingFrame:
			if !f.IsAck() {
				t.Errorf("wrote a PING that is not an ack")
			}
			out = append(out, "PING ack "+hex.EncodeToString(f.Data[:]))
		default:
			out = append(out, f.Header().Type.String())
		}
	}
}
