package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// fileAt reads the server config file at path, as `sched server` does.
func fileAt(t *testing.T, path string) serverFile {
	t.Helper()
	f, err := readServerFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestServerConfigMaxHeartbeats: --max-heartbeats and max_heartbeats set
// the leader's heartbeat bound, the flag over the file, 0 lifts it, and a
// negative one is a usage error naming the flag.
func TestServerConfigMaxHeartbeats(t *testing.T) {
	base := serverFile{DataDir: "d", Bind: DefaultAddr, Lease: "10s"}
	cfg, err := serverConfig(newServerCmd(&globals{}), serverFile{}, base)
	if err != nil || cfg.MaxHeartbeatRate != server.DefaultMaxHeartbeatRate {
		t.Fatalf("default: %v (%v), want %d", cfg.MaxHeartbeatRate, err, server.DefaultMaxHeartbeatRate)
	}
	path := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(path, []byte("data_dir: d\nmax_heartbeats: 250\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = serverConfig(newServerCmd(&globals{}), fileAt(t, path), serverFile{Bind: DefaultAddr, Lease: "10s"}); err != nil || cfg.MaxHeartbeatRate != 250 {
		t.Fatalf("config file: %v (%v), want 250", cfg.MaxHeartbeatRate, err)
	}
	withFlag := func(v int) (*cobra.Command, serverFile) {
		cmd := newServerCmd(&globals{})
		if err := cmd.Flags().Parse([]string{"--max-heartbeats", strconv.Itoa(v)}); err != nil {
			t.Fatal(err)
		}
		f := base
		f.MaxHeartbeats = &v
		return cmd, f
	}
	for flag, want := range map[int]float64{0: -1, 4000: 4000} {
		cmd, f := withFlag(flag)
		if cfg, err = serverConfig(cmd, fileAt(t, path), f); err != nil || cfg.MaxHeartbeatRate != want {
			t.Fatalf("--max-heartbeats %d over the file's 250: %v (%v), want %v", flag, cfg.MaxHeartbeatRate, err, want)
		}
	}
	cmd, f := withFlag(-5)
	_, err = serverConfig(cmd, serverFile{}, f)
	var u usageError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "--max-heartbeats") {
		t.Fatalf("--max-heartbeats -5: %v, want a usage error naming the flag", err)
	}
	if err := newServerCmd(&globals{}).Flags().Parse([]string{"--max-heartbeats", "lots"}); err == nil {
		t.Fatal("--max-heartbeats lots parsed")
	}
}

// TestServerGCPercent: --gc-percent and gc_percent set the server
// process's collector target, the flag over the file; a bad one is a usage
// error naming the flag; a GOGC variable wins over both.
func TestServerGCPercent(t *testing.T) {
	parse := func(args ...string) *cobra.Command {
		cmd := newServerCmd(&globals{})
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	if pct, err := serverGCPercent(parse(), serverFile{}, "", DefaultGCPercent); err != nil || pct != DefaultGCPercent {
		t.Fatalf("default: %d (%v), want %d", pct, err, DefaultGCPercent)
	}
	path := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(path, []byte("data_dir: d\ngc_percent: 150\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := serverConfig(parse(), fileAt(t, path), serverFile{Bind: DefaultAddr, Lease: "10s"}); err != nil {
		t.Fatalf("a config file with gc_percent: %v", err)
	}
	if pct, err := serverGCPercent(parse(), fileAt(t, path), path, DefaultGCPercent); err != nil || pct != 150 {
		t.Fatalf("config file: %d (%v), want 150", pct, err)
	}
	if pct, err := serverGCPercent(parse("--gc-percent", "400"), fileAt(t, path), path, 400); err != nil || pct != 400 {
		t.Fatalf("--gc-percent 400 over the file's 150: %d (%v)", pct, err)
	}
	for _, bad := range []int{0, -5} {
		_, err := serverGCPercent(parse("--gc-percent", strconv.Itoa(bad)), serverFile{}, "", bad)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--gc-percent") {
			t.Fatalf("--gc-percent %d: %v, want a usage error naming the flag", bad, err)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("data_dir: d\ngc_percent: -7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := serverGCPercent(parse(), fileAt(t, bad), bad, DefaultGCPercent); err == nil || !strings.Contains(err.Error(), "gc_percent in "+bad) {
		t.Fatalf("gc_percent: -7 in a config file: %v, want an error naming the key and the file", err)
	}
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	t.Setenv("GOGC", "")
	setGCPercent(300)
	if got := debug.SetGCPercent(100); got != 300 {
		t.Fatalf("collector target %d after setGCPercent(300), want 300", got)
	}
	t.Setenv("GOGC", "100")
	setGCPercent(300)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC=100 in the environment setGCPercent(300) made it %d", got)
	}
}

// TestServerHeapHugePages: the heap's huge-page advice is on by default;
// heap_huge_pages in the config file turns it off, and the flag wins over
// the file.
func TestServerHeapHugePages(t *testing.T) {
	parse := func(args ...string) (*cobra.Command, bool) {
		cmd := newServerCmd(&globals{})
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		v, err := cmd.Flags().GetBool("heap-huge-pages")
		if err != nil {
			t.Fatal(err)
		}
		return cmd, v
	}
	if cmd, v := parse(); !serverHeapHugePages(cmd, serverFile{}, v) {
		t.Fatal("off by default")
	}
	path := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(path, []byte("data_dir: d\nheap_huge_pages: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := fileAt(t, path)
	if cmd, v := parse(); serverHeapHugePages(cmd, file, v) {
		t.Fatal("on with heap_huge_pages: false in the config file")
	}
	if cmd, v := parse("--heap-huge-pages=true"); !serverHeapHugePages(cmd, file, v) {
		t.Fatal("off with --heap-huge-pages=true over the file's false")
	}
	if cmd, v := parse("--heap-huge-pages=false"); serverHeapHugePages(cmd, serverFile{}, v) {
		t.Fatal("on with --heap-huge-pages=false")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("data_dir: d\nheap_huge_pages: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readServerFile(bad); err == nil || !strings.Contains(err.Error(), "heap_huge_pages") {
		t.Fatalf("heap_huge_pages: maybe: %v, want an error naming the key", err)
	}
}

// TestDeployServerConfigParses: the example config in deploy/ is one the
// server takes.
func TestDeployServerConfigParses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "config", "server.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f serverFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("deploy/config/server.yaml: %v", err)
	}
	if f.MaxHeartbeats == nil || *f.MaxHeartbeats != server.DefaultMaxHeartbeatRate || f.Lease != "10s" {
		t.Fatalf("deploy/config/server.yaml: lease %q, max_heartbeats %v; want the defaults", f.Lease, f.MaxHeartbeats)
	}
}
