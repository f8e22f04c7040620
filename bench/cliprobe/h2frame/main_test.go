package main

import (
	"net"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/bench/cliprobe/probetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestSubmit: the hand-framed call reaches a grpc-go server as the
// workload's job, and the reply's job id comes back.
func TestSubmit(t *testing.T) {
	srv := probetest.Start(t, nil)
	id, err := submit(srv.Addr, submitRequest(randomKey()))
	if err != nil {
		t.Fatal(err)
	}
	if id != "job-1" {
		t.Errorf("id %q, want job-1", id)
	}
	srv.CheckSubmitted(t)
}

// TestSubmitFails: a refusal is reported with its code and its message,
// percent-decoded, and a closed port is an error, not a hang.
func TestSubmitFails(t *testing.T) {
	srv := probetest.Start(t, status.Error(codes.InvalidArgument, `pool "x": 100% full, naïve`))
	_, err := submit(srv.Addr, submitRequest(randomKey()))
	if err == nil || !strings.Contains(err.Error(), `gRPC status 3: pool "x": 100% full, naïve`) {
		t.Errorf("error %v: want gRPC status 3 and the server's message", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := submit(addr, submitRequest(randomKey())); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("closed port: error %v, want a connect error", err)
	}
}

// TestFirstJobID reads the id out of replies and names what is wrong
// with bad ones.
func TestFirstJobID(t *testing.T) {
	msg := func(fields ...[]byte) []byte {
		var b []byte
		for _, f := range fields {
			b = append(b, f...)
		}
		return b
	}
	job := func(id string) []byte { return appendBytes(nil, 1, appendString(appendString(nil, 2, "one"), 1, id)) }
	existing := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 0)
	for _, c := range []struct {
		name  string
		reply []byte
		id    string
		err   string
	}{
		{"one job", job("job-9"), "job-9", ""},
		{"existing flag first", msg(existing, job("job-3")), "job-3", ""},
		{"empty", nil, "", "reply without a job"},
		{"job without id", appendBytes(nil, 1, appendString(nil, 2, "one")), "", "no id"},
		{"truncated", job("job-9")[:4], "", "reply"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := firstJobID(c.reply)
			if c.err == "" {
				if err != nil || id != c.id {
					t.Errorf("got %q, %v; want %q", id, err, c.id)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("got %q, %v; want an error with %q", id, err, c.err)
			}
		})
	}
}

// TestUnframe takes one uncompressed message and refuses anything else.
func TestUnframe(t *testing.T) {
	for _, c := range []struct {
		body []byte
		want string
		err  string
	}{
		{[]byte{0, 0, 0, 0, 2, 'h', 'i'}, "hi", ""},
		{[]byte{0, 0, 0, 0, 0}, "", ""},
		{[]byte{0, 0, 0}, "", "want a message"},
		{[]byte{1, 0, 0, 0, 1, 'x'}, "", "compressed"},
		{[]byte{0, 0, 0, 0, 3, 'h', 'i'}, "", "want one message"},
	} {
		got, err := unframe(c.body)
		if c.err == "" {
			if err != nil || string(got) != c.want {
				t.Errorf("%v: got %q, %v; want %q", c.body, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v: got %q, %v; want an error with %q", c.body, got, err, c.err)
		}
	}
}
