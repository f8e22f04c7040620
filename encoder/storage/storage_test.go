package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// layout builds, under a temp dir:
//
//	root/                  the storage root
//	root/media/a.mp4
//	root/lnk -> ../outside (relative link out)
//	root/abs -> <outside>  (absolute link out)
//	root/in -> media       (link that stays inside)
//	root/file -> <outside>/secret (link to a file outside)
//	root/loop1 <-> root/loop2
//	root/rootlink -> root  (a link to the root itself, through its parent)
//	outside/secret
//	outside/sub/
func layout(t *testing.T) (base, root string) {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root = filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(root, "media"), filepath.Join(outside, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(root, "media", "a.mp4"), filepath.Join(outside, "secret")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"lnk":      "../outside/sub",
		"abs":      outside,
		"in":       "media",
		"file":     filepath.Join(outside, "secret"),
		"loop1":    "loop2",
		"loop2":    "loop1",
		"rootlink": "../root",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return base, root
}

func TestResolve(t *testing.T) {
	base, root := layout(t)
	roots, err := NewRoots([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(base, "outside")
	cases := []struct {
		name, path string
		want       string // resolved path when allowed
		err        error  // wrapped error when refused
	}{
		{"plain file", root + "/media/a.mp4", root + "/media/a.mp4", nil},
		{"the root itself", root, root, nil},
		{"dot and double slash", root + "/./media//a.mp4", root + "/media/a.mp4", nil},
		{"dotdot inside", root + "/media/../media/a.mp4", root + "/media/a.mp4", nil},
		{"link inside", root + "/in/a.mp4", root + "/media/a.mp4", nil},
		{"link to the root", root + "/rootlink/media", root + "/media", nil},
		{"new output", root + "/media/out/new.mp4", root + "/media/out/new.mp4", nil},
		{"new output through inside link", root + "/in/new.mp4", root + "/media/new.mp4", nil},
		// The incident: ".." after a link applies to the link's target.
		{"dotdot after link escapes", root + "/lnk/../secret", "", ErrOutside},
		{"absolute link", root + "/abs/secret", "", ErrOutside},
		{"relative link out", root + "/lnk", "", ErrOutside},
		{"link to a file outside", root + "/file", "", ErrOutside},
		{"output whose parent links outside", root + "/abs/new.mp4", "", ErrOutside},
		{"output in a new dir under a link outside", root + "/lnk/new/out.mp4", "", ErrOutside},
		{"dotdot out of the root", root + "/../outside/secret", "", ErrOutside},
		{"plain path outside", outside + "/secret", "", ErrOutside},
		{"link loop", root + "/loop1/x", "", ErrBadPath},
		{"NUL byte", root + "/media/a.mp4\x00/../../x", "", ErrBadPath},
		{"newline", root + "/media/a\n.mp4", "", ErrBadPath},
		{"empty", "", "", ErrBadPath},
		{"file used as directory", root + "/media/a.mp4/x", "", ErrBadPath},
		{"dotdot after a missing dir", root + "/media/nope/../../../outside/secret", "", ErrBadPath},
		{"prefix is not containment", root + "x/file", "", ErrOutside},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := roots.Resolve(c.path)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Resolve(%q) = %q, %v; want error %v", c.path, got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", c.path, got, err, c.want)
			}
		})
	}
}

func TestResolveRelative(t *testing.T) {
	_, root := layout(t)
	t.Chdir(root)
	roots, err := NewRoots([]string{"."})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roots.Resolve("in/a.mp4"); err != nil || got != root+"/media/a.mp4" {
		t.Fatalf("Resolve(in/a.mp4) = %q, %v", got, err)
	}
	if _, err := roots.Resolve("lnk/../secret"); !errors.Is(err, ErrOutside) {
		t.Fatalf("Resolve(lnk/../secret) = %v, want ErrOutside", err)
	}
}

func TestRootThroughLink(t *testing.T) {
	base, root := layout(t)
	alias := filepath.Join(base, "alias")
	if err := os.Symlink(root, alias); err != nil {
		t.Fatal(err)
	}
	roots, err := NewRoots([]string{alias})
	if err != nil {
		t.Fatal(err)
	}
	if got := roots.Dirs(); len(got) != 1 || got[0] != root {
		t.Fatalf("Dirs() = %v, want [%s]", got, root)
	}
	if got, err := roots.Resolve(alias + "/media/a.mp4"); err != nil || got != root+"/media/a.mp4" {
		t.Fatalf("Resolve through aliased root = %q, %v", got, err)
	}
}

func TestNewRootsErrors(t *testing.T) {
	_, root := layout(t)
	if _, err := NewRoots(nil); !errors.Is(err, ErrNoRoots) {
		t.Fatalf("NewRoots(nil) = %v, want ErrNoRoots", err)
	}
	if _, err := NewRoots([]string{"", ""}); !errors.Is(err, ErrNoRoots) {
		t.Fatalf("NewRoots(empty) = %v, want ErrNoRoots", err)
	}
	if _, err := NewRoots([]string{root + "/media/a.mp4"}); !errors.Is(err, ErrBadPath) {
		t.Fatalf("NewRoots(file) = %v, want ErrBadPath", err)
	}
	if _, err := NewRoots([]string{root + "/missing"}); err == nil {
		t.Fatal("NewRoots(missing dir) succeeded")
	}
	var zero Roots
	if _, err := zero.Resolve(root); !errors.Is(err, ErrOutside) {
		t.Fatalf("zero Roots Resolve = %v, want ErrOutside", err)
	}
}

// TestKernelCheck: openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS accepts
// what user space resolved and refuses links and escapes, so a path that
// changed between the two walks is caught.
func TestKernelCheck(t *testing.T) {
	_, root := layout(t)
	checked, err := beneath(root, "media/a.mp4")
	if !checked {
		t.Log("openat2 is not available on this kernel or platform: Resolve relies on its own walk")
		return
	}
	if err != nil {
		t.Fatalf("beneath(media/a.mp4) = %v", err)
	}
	for _, rel := range []string{"in/a.mp4", "lnk", "../outside/secret", "rootlink/media"} {
		if _, err := beneath(root, rel); err == nil {
			t.Errorf("beneath(%s) accepted a link or an escape", rel)
		}
	}
	if _, err := beneath(root, "."); err != nil {
		t.Errorf("beneath(.) = %v", err)
	}
}
