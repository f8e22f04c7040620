package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/api/failure"
	"github.com/banyan-sched/banyan/encoder"
)

// rootsFixture makes a storage root holding lnk -> a directory outside it,
// next to which lies secret (the root/lnk -> /etc/ssl and
// root/lnk/../passwd), and sets $BANYAN_STORAGE_ROOTS to the root.
func rootsFixture(t *testing.T) (root, outside string) {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, filepath.Join(outside, "ssl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "ladder.yaml"), []byte("name: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "ssl"), filepath.Join(root, "lnk")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(StorageRootsEnv, root)
	return root, outside
}

func TestCheckRootsResolvesAndRefusesEscapes(t *testing.T) {
	root, outside := rootsFixture(t)
	escape := root + "/lnk/../secret" // not filepath.Join: it would clean ".."
	if err := checkRoots(&escape); !errors.Is(err, encoder.ErrBadInput) || !strings.Contains(err.Error(), "outside the storage roots") {
		t.Fatalf("checkRoots(root/lnk/../secret) = %v, want a bad-input error naming the roots", err)
	}
	out := root + "/lnk/out/a.mp4" // a new output whose parent links outside
	if err := checkRoots(&out); err == nil {
		t.Fatalf("an output reached through a link outside passed: %s", out)
	}
	ok := root + "/./lnk/../../root/new.mp4" // out through the link and back in
	if err := checkRoots(&ok); err != nil || ok != filepath.Join(root, "new.mp4") {
		t.Fatalf("checkRoots(inside) = %q, %v; want the resolved path", ok, err)
	}
	ladder := filepath.Join(outside, "ladder.yaml")
	if err := checkLadder(&ladder); !errors.Is(err, encoder.ErrBadInput) {
		t.Fatalf("ladder file outside the roots: %v", err)
	}
	builtin := "default"
	if err := checkLadder(&builtin); err != nil || builtin != "default" {
		t.Fatalf("built-in ladder: %q, %v", builtin, err)
	}
}

func TestEncoderStepRefusesEscapeBeforeFFmpeg(t *testing.T) {
	root, _ := rootsFixture(t)
	cmd := newEncodeAudioCmd()
	cmd.SetArgs([]string{"--source", root + "/lnk/../secret", "--out", filepath.Join(root, "a.mp4")})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	if code, _ := encoderExitCode(err); !errors.Is(err, encoder.ErrBadInput) || code == 0 {
		t.Fatalf("encode-audio with an escaping source = %v (exit %d), want bad input", err, code)
	}
}

func TestEncoderStepNeedsStorageRoot(t *testing.T) {
	t.Setenv(StorageRootsEnv, "")
	p := "/tmp/x.mp4"
	err := checkRoots(&p)
	if !errors.Is(err, encoder.ErrBadInput) || !strings.Contains(err.Error(), "--storage-root") {
		t.Fatalf("checkRoots without roots = %v, want an error naming --storage-root", err)
	}
}

// TestEncoderExitCodeSessionLimit: an NVENC session limit exits 69, which
// the scheduler classes as nvenc_session_limit; it is still a tool error,
// but the session limit wins.
func TestEncoderExitCodeSessionLimit(t *testing.T) {
	tool := &encoder.ToolError{Tool: "ffmpeg", Reason: "OpenEncodeSessionEx failed: out of memory (10)", Err: errors.New("exit status 1")}
	err := fmt.Errorf("encode chunk 3 of /t.mov: %w", fmt.Errorf("%w: %w", encoder.ErrNVENCSessionLimit, tool))
	if code, ok := encoderExitCode(err); !ok || code != failure.ExitNVENCSessionLimit {
		t.Fatalf("exit code %d, %v; want %d", code, ok, failure.ExitNVENCSessionLimit)
	}
	if code, _ := encoderExitCode(fmt.Errorf("encode chunk 3: %w", tool)); code != failure.ExitEncoderError {
		t.Fatalf("plain tool error: exit %d, want %d", code, failure.ExitEncoderError)
	}
}
