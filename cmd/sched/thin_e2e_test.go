package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/banyan-sched/banyan/bench/schedbuild"
)

// The thin build (thin.go): the client commands in a binary of their own,
// which execs banyand (the full build, schedBin here) for the rest.

// onceBuilt is a binary built once for the package's tests.
type onceBuilt struct {
	once sync.Once
	path string
	err  error
}

// build builds it (go build, without cgo, the rest of its arguments args)
// the first time, and returns its path.
func (b *onceBuilt) build(t *testing.T, what string, args ...string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp(filepath.Dir(schedBin), what)
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "sched")
		cmd := exec.Command("go", append([]string{"build", "-o", b.path}, args...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the thin client and the front need no cgo
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build the %s: %v\n%s", what, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// thinBuild is the thin sched.
var thinBuild onceBuilt

// thinInstall returns a new directory holding the thin sched and, with
// banyand, the full binary as banyand next to it, as `make build` leaves
// bin/.
func thinInstall(t *testing.T, banyand bool) string {
	t.Helper()
	thin := thinBuild.build(t, "thin", "-tags", schedbuild.ThinTags, ".")
	dir := t.TempDir()
	install(t, thin, filepath.Join(dir, "sched"))
	if banyand {
		install(t, schedBin, filepath.Join(dir, "banyand"))
	}
	return dir
}

// install puts the binary src at dst: a hard link, else a copy.
func install(t *testing.T, src, dst string) {
	t.Helper()
	if os.Link(src, dst) == nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// runBin runs bin with args and extra environment, returning its output
// and exit code.
func runBin(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runIn(t, "", bin, env, args...)
}

// runIn is runBin with the working directory dir ("": this process's).
func runIn(t *testing.T, dir, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// The thin build links none of the daemons' packages (an import added to a
// client file that pulls one in fails here) and builds without cgo.
func TestThinBuildLinksNoDaemonCode(t *testing.T) {
	cmd := exec.Command("go", "list", "-tags", schedbuild.ThinTags, "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -tags %s -deps: %v\n%s", schedbuild.ThinTags, err, stderr.String())
	}
	// Each with the packages under it.
	heavy := []string{
		"github.com/NVIDIA/go-nvml", "github.com/shirou/gopsutil", "github.com/hashicorp/raft",
		"github.com/prometheus", "go.opentelemetry.io", "encoding/gob", "golang.org/x/net/trace",
		"github.com/banyan-sched/banyan/scheduler/server", "github.com/banyan-sched/banyan/scheduler/metrics",
		"github.com/banyan-sched/banyan/agent", "github.com/banyan-sched/banyan/encoder",
	}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		n++
		// The OpenTelemetry edge; its subpackages jobtrace and otelenv import no OpenTelemetry code.
		bad := pkg == "github.com/banyan-sched/banyan/scheduler/tracing"
		for _, h := range heavy {
			bad = bad || pkg == h || strings.HasPrefix(pkg, h+"/")
		}
		if bad {
			t.Errorf("the thin sched links %s", pkg)
		}
	}
	if n < 100 {
		t.Fatalf("go list -deps named only %d packages:\n%s", n, out)
	}
}

// The thin sched runs `sched dev` by exec'ing the banyand next to it (the
// same process, now banyand), and submits and shows a job against it
// itself; `sched --help` lists what banyand's does.
func TestThinSchedExecsBanyand(t *testing.T) {
	dir := thinInstall(t, true)
	sched, banyand := filepath.Join(dir, "sched"), filepath.Join(dir, "banyand")
	thinHelp, _, _ := runBin(t, sched, nil, "--help")
	fullHelp, _, _ := runBin(t, banyand, nil, "--help")
	if thinHelp != fullHelp || !strings.Contains(thinHelp, "  dev ") {
		t.Errorf("sched --help:\n%s\nbanyand --help:\n%s", thinHelp, fullHelp)
	}

	d := startDevBin(t, sched, freeAddr(t), t.TempDir(), 1, nil, "--http-addr", "")
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if exe != banyand {
		t.Fatalf("sched dev runs %s, want %s", exe, banyand)
	}
	file := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(file, []byte("name: thin\ntasks:\n  - command: [\"true\"]\n    resources: {cpu: 10m}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := submit(t, d, file)
	if _, stderr, err := d.run("job", "watch", id); err != nil {
		t.Fatalf("watch: %v: %s", err, stderr)
	}
	if j := showJob(t, d, id); j.State != "succeeded" {
		t.Fatalf("job %s: %s", id, j.State)
	}
	out, stderr, err := d.run("job", "show", id)
	if err != nil || !strings.Contains(out, "  trace: ") {
		t.Fatalf("job show: %v: %s\n%s", err, stderr, out)
	}
}

// Without banyand next to it or on PATH, the thin sched says so for the
// commands that need it (exit code 2), and runs its own commands; a thin
// build installed as banyand is refused rather than exec'd for ever.
func TestThinSchedWithoutBanyand(t *testing.T) {
	dir := thinInstall(t, false)
	sched := filepath.Join(dir, "sched")
	noPath := "PATH=" + t.TempDir()
	for _, tc := range []struct {
		args []string
		env  []string
	}{
		{[]string{"server", "--config", "x.yaml"}, nil},
		{[]string{"server", "--help"}, nil},
		{[]string{"--addr", "127.0.0.1:1", "dev"}, nil},
		{[]string{"agent", "--id", "list"}, nil},
		{[]string{"version"}, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1"}},
	} {
		_, stderr, code := runBin(t, sched, append(tc.env, noPath), tc.args...)
		traced := len(tc.env) > 0
		if code != 2 || !strings.Contains(stderr, filepath.Join(dir, "banyand")+" nor on PATH") ||
			strings.Contains(stderr, "OTEL_SDK_DISABLED=true") != traced || strings.Contains(stderr, "goroutine ") {
			t.Errorf("sched %v without banyand: exit code %d, stderr:\n%s", tc.args, code, stderr)
		}
	}
	if out, stderr, code := runBin(t, sched, []string{noPath}, "version"); code != 0 || !strings.HasPrefix(out, "sched ") {
		t.Errorf("sched version without banyand: exit code %d: %s%s", code, out, stderr)
	}

	install(t, sched, filepath.Join(dir, "banyand")) // the thin build, wrongly installed as banyand
	_, stderr, code := runBin(t, sched, []string{noPath}, "server")
	if code != 2 || !strings.Contains(stderr, "thin sched client") {
		t.Errorf("sched server with a thin banyand: exit code %d, stderr:\n%s", code, stderr)
	}
}

// With the OTEL_* variables asking for traces, the thin sched hands even a
// client command to banyand, which traces it: `sched help server` then
// prints banyand's help, not the thin stand-in's.
func TestThinSchedHandsTracedCallsToBanyand(t *testing.T) {
	dir := thinInstall(t, true)
	sched, banyand := filepath.Join(dir, "sched"), filepath.Join(dir, "banyand")
	env := []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1"}
	full, _, _ := runBin(t, banyand, nil, "help", "server")
	thin, _, _ := runBin(t, sched, []string{"OTEL_SDK_DISABLED=true"}, "help", "server")
	if thin == full {
		t.Fatalf("the thin sched's help for server is banyand's:\n%s", thin)
	}
	traced, stderr, code := runBin(t, sched, env, "help", "server")
	if code != 0 || traced != full {
		t.Fatalf("traced sched help server: exit code %d: %s\n%s\nwant banyand's:\n%s", code, stderr, traced, full)
	}
}

// The thin sched goes to one P early in package initialisation
// (internal/oneproc), before gRPC, protobuf and the API's descriptors
// allocate: shrinking later flushes a second P's span cache, which costs
// page faults on every call.
func TestThinSchedShrinksToOnePEarly(t *testing.T) {
	dir := thinInstall(t, false)
	_, trace, code := runBin(t, filepath.Join(dir, "sched"), []string{"GODEBUG=inittrace=1"}, "--help")
	if code != 0 {
		t.Fatalf("sched --help exited %d:\n%s", code, trace)
	}
	const oneproc = "github.com/banyan-sched/banyan/cmd/sched/internal/oneproc"
	var order []string
	for _, line := range strings.Split(trace, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "init" {
			order = append(order, f[1])
		}
	}
	at := -1
	for i, pkg := range order {
		if pkg == oneproc {
			at = i
			break
		}
		if !strings.Contains(strings.SplitN(pkg, "/", 2)[0], ".") {
			continue // the standard library's own, small and before it in import path order
		}
		t.Errorf("%s is initialised before %s", pkg, oneproc)
	}
	if at < 0 {
		t.Fatalf("the thin sched does not initialise %s (GODEBUG=inittrace=1 listed %d packages)", oneproc, len(order))
	}
}
