package raftlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestLinesGoThroughSlogHandler(t *testing.T) {
	var buf bytes.Buffer
	sl := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := New(sl.With("node", "s1"), "raft", hclog.Debug)
	// raft's own "node" must not collide with the server's.
	l.With("peer", "s2").Warn("heartbeat failed", "err", errors.New("timeout"), "attempt", 3, "node", stringer("raft-node"))
	l.Named("snapshot").Info("done", "size", hclog.Fmt("%d KiB", 12))
	l.Trace("dropped: below the minimum")
	l.Info("odd", "lonely")
	got := jsonLines(t, &buf)
	if len(got) != 3 {
		t.Fatalf("want 3 lines, got %d: %s", len(got), buf.String())
	}
	kv := func(i int) map[string]any {
		m, _ := got[i]["raft"].(map[string]any)
		return m
	}
	if got[0]["level"] != "WARN" || got[0]["logger"] != "raft" || got[0]["node"] != "s1" || got[0]["msg"] != "heartbeat failed" ||
		kv(0)["peer"] != "s2" || kv(0)["err"] != "timeout" || kv(0)["attempt"] != float64(3) || kv(0)["node"] != "raft-node" {
		t.Errorf("line 0: %v", got[0])
	}
	if got[1]["logger"] != "raft.snapshot" || kv(1)["size"] != "12 KiB" {
		t.Errorf("line 1: %v", got[1])
	}
	if kv(2)[hclog.MissingKey] != "lonely" {
		t.Errorf("line 2: %v", got[2])
	}
}

func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	// The handler's level wins over a lower hclog minimum...
	sl := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l := New(sl, "raft", hclog.Trace)
	if l.IsInfo() || !l.IsWarn() {
		t.Errorf("IsInfo %v IsWarn %v under a warn handler", l.IsInfo(), l.IsWarn())
	}
	l.Info("hidden")
	// ...and the hclog minimum wins over a lower handler level.
	l.SetLevel(hclog.Error)
	l.Warn("hidden too")
	l.Error("shown")
	l.SetLevel(hclog.Off)
	l.Error("off")
	got := jsonLines(t, &buf)
	if len(got) != 1 || got[0]["msg"] != "shown" {
		t.Fatalf("got %v", got)
	}
	if SlogLevel(hclog.Trace) >= slog.LevelDebug {
		t.Error("trace must sit below debug")
	}
}

func TestStandardWriterReadsLevelPrefix(t *testing.T) {
	var buf bytes.Buffer
	sl := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	std := New(sl, "raft-net", hclog.Debug).StandardLogger(nil)
	std.Print("[WARN] raft-net: failed to accept connection")
	std.Print("plain line")
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg="raft-net: failed to accept connection"`) ||
		!strings.Contains(out, `level=INFO msg="plain line"`) {
		t.Fatalf("got %s", out)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }
