// Package storage confines the paths media steps read and write to a set of
// storage roots.
//
// A path is resolved the way the kernel walks it, one component at a time:
// a symbolic link is replaced by its target before any later ".." is
// applied, so "root/lnk/../passwd" with lnk -> /etc/ssl resolves to
// /etc/passwd, not root/passwd. Only then is containment checked, against
// roots that are themselves fully resolved. The resolved path (absolute, no
// links, no "." or "..") is what callers hand to tools such as ffmpeg, so
// the tool opens the file that was checked.
//
// Paths that do not exist yet (outputs) are allowed: the longest existing
// prefix is resolved, and the missing tail must be plain names (no "..").
// An output whose parent is a link pointing outside the roots is therefore
// refused like any other escape.
//
// Where the kernel has openat2 (Linux 5.6+), the existing part of the
// resolved path is then opened from its root with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, so the kernel confirms what user space found; a
// path that changed in between is refused.
//
// The check still precedes the tool's own open: a process that can write
// inside a root could swap a directory for a link between the two.
// Agents run tasks as an unprivileged user (see the README), so such a swap
// gains nothing the task's user could not already reach.
package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxLinks bounds the symbolic links followed while resolving one path, as
// the kernel's ELOOP limit does.
const maxLinks = 40

// Errors that Resolve wraps; test them with errors.Is.
var (
	// ErrOutside means the resolved path lies outside every root.
	ErrOutside = errors.New("outside the storage roots")
	// ErrBadPath means the path itself is unusable (empty, control
	// characters, too many links, a file used as a directory).
	ErrBadPath = errors.New("bad path")
	// ErrNoRoots means no storage root is configured.
	ErrNoRoots = errors.New("no storage roots configured")
)

// Roots is a set of fully resolved storage root directories. The zero value
// has no roots and refuses every path.
type Roots struct {
	dirs []string
}

// NewRoots resolves each directory (relative ones against the working
// directory) and checks it exists and is a directory.
func NewRoots(dirs []string) (*Roots, error) {
	r := &Roots{}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		real, err := resolve(d)
		if err != nil {
			return nil, fmt.Errorf("storage root %q: %w", d, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("storage root %q: %w", d, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("storage root %q: %w: not a directory", d, ErrBadPath)
		}
		r.dirs = append(r.dirs, real)
	}
	if len(r.dirs) == 0 {
		return nil, ErrNoRoots
	}
	return r, nil
}

// Dirs returns the resolved root directories.
func (r *Roots) Dirs() []string { return append([]string(nil), r.dirs...) }

// Resolve resolves p fully (links first, then "..") and returns the
// resolved path if it lies in one of the roots. Errors wrap ErrBadPath or
// ErrOutside and name p.
func (r *Roots) Resolve(p string) (string, error) {
	real, existing, err := resolveParts(p)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	root, ok := r.root(real)
	if !ok {
		return "", fmt.Errorf("path %q (resolved to %s): %w (%s)", p, real, ErrOutside, strings.Join(r.dirs, ", "))
	}
	if rel, ok := relBelow(root, existing); ok {
		if _, err := beneath(root, rel); err != nil {
			return "", fmt.Errorf("path %q (resolved to %s): %w: the kernel's check from %s failed: %w",
				p, real, ErrOutside, root, err)
		}
	}
	return real, nil
}

// Contains reports whether the already resolved path real is one of the
// roots or lies beneath one.
func (r *Roots) Contains(real string) bool {
	_, ok := r.root(real)
	return ok
}

// root returns the root that real lies in.
func (r *Roots) root(real string) (string, bool) {
	for _, d := range r.dirs {
		if real == d || strings.HasPrefix(real, strings.TrimSuffix(d, "/")+"/") {
			return d, true
		}
	}
	return "", false
}

// relBelow returns path relative to root ("." for the root itself), or
// false when path does not lie in root.
func relBelow(root, path string) (string, bool) {
	if path == root {
		return ".", true
	}
	rel, ok := strings.CutPrefix(path, strings.TrimSuffix(root, "/")+"/")
	return rel, ok
}

// resolve walks p component by component from "/" (or the working
// directory), replacing each symbolic link by its target before going on.
// It never cleans p lexically first: that would apply ".." to a link's
// name instead of its target.
func resolve(p string) (string, error) {
	real, _, err := resolveParts(p)
	return real, err
}

// resolveParts is resolve that also returns the longest prefix of the
// result that exists.
func resolveParts(p string) (real, existing string, err error) {
	if p == "" {
		return "", "", fmt.Errorf("%w: empty path", ErrBadPath)
	}
	if strings.ContainsAny(p, "\x00\n\r") {
		return "", "", fmt.Errorf("%w: control character or NUL byte in path", ErrBadPath)
	}
	if !filepath.IsAbs(p) {
		wd, err := os.Getwd()
		if err != nil {
			return "", "", fmt.Errorf("working directory: %w", err)
		}
		p = wd + "/" + p
	}
	todo := strings.Split(p, "/")
	cur := "/"
	links := 0
	missing := false // a component did not exist: the rest must be plain names
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch {
		case name == "" || name == ".":
			continue
		case name == ".." && missing:
			return "", "", fmt.Errorf("%w: \"..\" after a directory that does not exist", ErrBadPath)
		case name == "..":
			cur = filepath.Dir(cur) // cur has no links, so its parent is real
			continue
		}
		next := filepath.Join(cur, name)
		if missing {
			cur = next
			continue
		}
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing, existing = true, cur
			cur = next
			continue
		case err != nil:
			return "", "", fmt.Errorf("%w: %w", ErrBadPath, err)
		case fi.Mode()&os.ModeSymlink != 0:
			links++
			if links > maxLinks {
				return "", "", fmt.Errorf("%w: too many levels of symbolic links at %s", ErrBadPath, next)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", "", fmt.Errorf("%w: %w", ErrBadPath, err)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		case !fi.IsDir() && hasMore(todo):
			return "", "", fmt.Errorf("%w: %s is not a directory", ErrBadPath, next)
		}
		cur = next
	}
	if !missing {
		existing = cur
	}
	return cur, existing, nil
}

// hasMore reports whether todo still names a component ("." and "" do not
// count; ".." does, since it needs a directory).
func hasMore(todo []string) bool {
	for _, n := range todo {
		if n != "" && n != "." {
			return true
		}
	}
	return false
}
