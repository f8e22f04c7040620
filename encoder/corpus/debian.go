package corpus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Real files shipped by Debian 12 packages. The truths were measured with
// ffprobe/ffmpeg 5.1 on gnome-user-docs 43.0-2 and xine-ui 0.99.14-1.
func debianEntries() []Entry {
	return []Entry{
		{
			Name: "debian-gnome-screencast", Package: "gnome-user-docs", Ext: "webm", Valid: true,
			File: "/usr/share/help/C/gnome-help/figures/display-dual-monitors.webm",
			Traits: []string{"a real GNOME Shell screencast: VP8 in WebM, 1024x768 at 15 fps, 37 s, no audio",
				"keyframes at irregular intervals (0, 1, 3.27 s, then every 4 s)", "no stream durations in the container"},
			Format: "matroska,webm", VideoCodec: "vp8", PixFmt: "yuv420p", Frames: 557,
			Width: 1024, Height: 768, SAR: "1:1", DisplayWidth: 1024, DisplayHeight: 768, FrameRate: "15/1",
			VideoDuration: us(37133000),
		},
		{
			Name: "debian-xine-logo-mpeg2-ps", Package: "xine-ui", Ext: "mpg", Valid: true,
			File:   "/usr/share/xine/skins/xine-ui_logo.mpg",
			Traits: []string{"a real MPEG-2 program stream: 600x450 (width not a multiple of 16), 25 fps, 1 s, starting at 0.54 s, no audio"},
			Format: "mpeg", VideoCodec: "mpeg2video", Profile: "Main", PixFmt: "yuv420p", Frames: 25,
			Width: 600, Height: 450, SAR: "1:1", DisplayWidth: 600, DisplayHeight: 450, FrameRate: "25/1",
			VideoStart: ms(540), VideoDuration: ms(1000),
		},
		{
			Name: "debian-xine-visual-mpeg1-es", Package: "xine-ui", Ext: "mpv", Valid: true,
			File: "/usr/share/xine/visuals/default.mpv",
			Traits: []string{"a real MPEG-1 video elementary stream (no container, no timestamps): 384x288, 100 frames at 25 fps with B-frames",
				"the container duration is wrong (ffprobe: 0.04 s); ffmpeg guesses timestamps and leaves an 80 ms gap after the first frame, so 100 frames span 4.04 s"},
			Format: "mpegvideo", VideoCodec: "mpeg1video", PixFmt: "yuv420p", Frames: 100,
			Width: 384, Height: 288, SAR: "1:1", DisplayWidth: 384, DisplayHeight: 288,
			VFR: true, MaxFrameGap: ms(80), VideoDuration: ms(4040),
		},
	}
}

// Packages returns the Debian packages whose files DebianEntries lists.
// Installing them with apt-get pulls in heavy dependencies (gnome-user-docs
// brings yelp and WebKitGTK; xine-ui brings libxine2 and X libraries);
// FetchDebian unpacks just the packages instead.
func Packages() []string { return []string{"gnome-user-docs", "xine-ui"} }

// DebianEntries returns the real files from Packages that are present on
// this machine, with File set: each is looked for at its installed path,
// then under each of roots (directories where FetchDebian, or
// `dpkg-deb -x`, unpacked the packages). It runs no program.
func DebianEntries(roots ...string) []Entry {
	var out []Entry
	for _, e := range debianEntries() {
		for _, r := range append([]string{"/"}, roots...) {
			p := filepath.Join(r, e.File)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				e.File = p
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// BuildCached builds (or reuses) the whole corpus in CacheDir and adds the
// real files unpacked under DebianRoot (or installed): what the tests run.
func BuildCached(ctx context.Context) ([]Entry, error) {
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	root, err := DebianRoot()
	if err != nil {
		return nil, err
	}
	es, err := Build(ctx, dir)
	if err != nil {
		return nil, err
	}
	return append(es, DebianEntries(root)...), nil
}

// DebianRoot is where `make corpus` unpacks Packages:
// $BANYAN_CORPUS_DEBIAN when set, else debian/ under CacheDir.
func DebianRoot() (string, error) {
	if r := os.Getenv("BANYAN_CORPUS_DEBIAN"); r != "" {
		return filepath.Abs(r)
	}
	d, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "debian"), nil
}

// FetchDebian downloads Packages with `apt-get download` (no dependencies,
// no root needed once `apt-get update` has run) and unpacks each into
// root with `dpkg-deb -x`, skipping packages already unpacked there. Pass
// root to DebianEntries afterwards.
func FetchDebian(ctx context.Context, root string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("corpus debian: %w", err)
	}
	debs := filepath.Join(root, ".debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return fmt.Errorf("corpus debian: %w", err)
	}
	var errs []error
	for _, pkg := range Packages() {
		done := filepath.Join(debs, pkg+".unpacked")
		if _, err := os.Stat(done); err == nil {
			continue
		}
		if err := fetchOne(ctx, debs, root, pkg); err != nil {
			errs = append(errs, fmt.Errorf("corpus debian %s: %w", pkg, err))
			continue
		}
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("corpus debian %s: %w", pkg, err))
		}
	}
	return errors.Join(errs...)
}

func fetchOne(ctx context.Context, debs, root, pkg string) error {
	old, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
	for _, f := range old {
		os.Remove(f)
	}
	if err := runIn(ctx, debs, "apt-get", "download", pkg); err != nil {
		return err
	}
	got, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
	if len(got) != 1 {
		return fmt.Errorf("apt-get download left %d .deb files", len(got))
	}
	return runIn(ctx, debs, "dpkg-deb", "-x", got[0], root)
}

func runIn(ctx context.Context, dir, prog string, args ...string) error {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, tail(out.String(), 300))
	}
	return nil
}
