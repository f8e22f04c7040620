package helperwire

import (
	"errors"
	"io"
	"strconv"
)

// Magic opens every connection to a helper: a front and a helper of
// different frame versions refuse each other rather than misread.
const Magic = "banyan-helper 1\n"

// Request kinds.
const (
	// Run asks the helper to run a call (Args, Env, Dir, Seed).
	Run byte = 1
	// Stop asks the helper to exit once the calls it is running are done.
	Stop byte = 2
	// Status asks the helper for a line on itself (Response.Stdout).
	Status byte = 3
)

// Response kinds.
const (
	// Ran: the helper ran the call; Code, Stdout and Stderr are its
	// outcome.
	Ran byte = 1
	// Declined: the helper did not run the call and sent nothing to any
	// server; the front runs it itself.
	Declined byte = 2
	// Done answers Stop and Status.
	Done byte = 3
)

// Limits of a frame: a request carries arguments and an environment, an
// answer what a call printed.
const (
	MaxRequest  = 4 << 20
	MaxResponse = 1 << 30
)

// Request is one call handed to a helper.
type Request struct {
	Kind byte
	// Args are the call's arguments without the program name; Env its
	// environment (KEY=VALUE); Dir its working directory, against which
	// a relative file name is read.
	Args, Env []string
	Dir       string
	// Seed derives the idempotency keys of the call's jobs that have none
	// (EnvSeed).
	Seed string
}

// Response is a helper's answer.
type Response struct {
	Kind byte
	// Code is the call's exit status; Stdout and Stderr what it printed.
	Code           int
	Stdout, Stderr []byte
}

// ErrFrame is wrapped by every error about a malformed frame.
var ErrFrame = errors.New("malformed helper frame")

func frameErr(what string) error { return errors.Join(ErrFrame, errors.New(what)) }

// WriteRequest writes r as one frame.
func WriteRequest(w io.Writer, r *Request) error {
	b := []byte{r.Kind}
	b = appendString(b, r.Dir)
	b = appendString(b, r.Seed)
	b = appendStrings(b, r.Args)
	b = appendStrings(b, r.Env)
	return writeFrame(w, b)
}

// ReadRequest reads one request frame.
func ReadRequest(r io.Reader) (*Request, error) {
	b, err := readFrame(r, MaxRequest)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	req := &Request{Kind: d.byte()}
	req.Dir = d.string()
	req.Seed = d.string()
	req.Args = d.strings()
	req.Env = d.strings()
	if err := d.end(); err != nil {
		return nil, err
	}
	if req.Kind < Run || req.Kind > Status {
		return nil, frameErr("request kind " + strconv.Itoa(int(req.Kind)))
	}
	return req, nil
}

// WriteResponse writes r as one frame.
func WriteResponse(w io.Writer, r *Response) error {
	b := []byte{r.Kind}
	b = appendUint32(b, uint32(int32(r.Code)))
	b = appendBytes(b, r.Stdout)
	b = appendBytes(b, r.Stderr)
	return writeFrame(w, b)
}

// ReadResponse reads one response frame.
func ReadResponse(r io.Reader) (*Response, error) {
	b, err := readFrame(r, MaxResponse)
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	resp := &Response{Kind: d.byte()}
	resp.Code = int(int32(d.uint32()))
	resp.Stdout = d.bytes()
	resp.Stderr = d.bytes()
	if err := d.end(); err != nil {
		return nil, err
	}
	if resp.Kind < Ran || resp.Kind > Done {
		return nil, frameErr("response kind " + strconv.Itoa(int(resp.Kind)))
	}
	return resp, nil
}

// Call sends req on a new connection to a helper (the magic, then the
// request) and reads the helper's answer.
func Call(rw io.ReadWriter, req *Request) (*Response, error) {
	if err := WriteMagic(rw); err != nil {
		return nil, err
	}
	if err := WriteRequest(rw, req); err != nil {
		return nil, err
	}
	return ReadResponse(rw)
}

// WriteMagic and ReadMagic open a connection, from the front's side and the
// helper's.
func WriteMagic(w io.Writer) error {
	_, err := io.WriteString(w, Magic)
	return err
}

// ReadMagic reads and checks the opening a front writes.
func ReadMagic(r io.Reader) error {
	b := make([]byte, len(Magic))
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if string(b) != Magic {
		return frameErr("not a sched front (or another frame version)")
	}
	return nil
}

func writeFrame(w io.Writer, payload []byte) error {
	b := appendUint32(make([]byte, 0, 4+len(payload)), uint32(len(payload)))
	_, err := w.Write(append(b, payload...))
	return err
}

func readFrame(r io.Reader, max int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	n32 := uint32(n[0])<<24 | uint32(n[1])<<16 | uint32(n[2])<<8 | uint32(n[3])
	if uint64(n32) > uint64(max) { // compared unsigned: an int may be 32 bits
		return nil, frameErr("frame of " + strconv.FormatUint(uint64(n32), 10) + " bytes, over the limit of " + strconv.Itoa(max))
	}
	size := int(n32)
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendBytes(b, s []byte) []byte { return append(appendUint32(b, uint32(len(s))), s...) }

func appendString(b []byte, s string) []byte { return append(appendUint32(b, uint32(len(s))), s...) }

func appendStrings(b []byte, ss []string) []byte {
	b = appendUint32(b, uint32(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// decoder reads a payload's fields; the first field that does not fit
// sets err, and every later read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) { // negative: a length past 2^31 on a 32-bit int
		d.err = frameErr("a field runs past the frame's end")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	v := d.take(4)
	if v == nil {
		return 0
	}
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
}

func (d *decoder) bytes() []byte {
	n := d.uint32()
	v := d.take(int(n))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) string() string { return string(d.take(int(d.uint32()))) }

func (d *decoder) strings() []string {
	n := int(d.uint32())
	if n < 0 || n > len(d.b)/4 { // each string takes at least its 4-byte length
		if d.err == nil {
			d.err = frameErr("a list longer than its frame")
		}
		return nil
	}
	ss := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		ss = append(ss, d.string())
	}
	return ss
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = frameErr(strconv.Itoa(len(d.b)) + " bytes after the last field")
	}
	return d.err
}
