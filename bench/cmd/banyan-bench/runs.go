package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Setup says what a figure was measured on, in the words: the
// servers, the processes, the agents, the job shapes and every setting
// that is not the default.
type Setup struct {
	Servers   int    `json:"servers"`
	Processes string `json:"processes"`
	Agents    string `json:"agents"`
	Jobs      string `json:"jobs"`
	// Settings are the non-default settings, by name; empty means every
	// setting is the default.
	Settings map[string]string `json:"settings"`
}

// RunResult is one run of a scenario.
type RunResult struct {
	Summary string             `json:"summary"`
	Metrics map[string]float64 `json:"metrics"`
	Met     *bool              `json:"met,omitempty"`
	Err     string             `json:"error,omitempty"`
	Seconds float64            `json:"seconds"`
}

// runScenario runs sc o.runs times (each on a fresh cluster) and
// aggregates: every metric is the median over the runs that succeeded,
// with its min and max, and every run's values are kept.
func runScenario(sc scenario, o options) Result {
	var runs []Result
	for i := 0; i < o.runs; i++ {
		start := time.Now()
		spans0, scrapes0 := exportedSpans(), scrapes.Load()
		r := safeRun(sc, o)
		r.Seconds = time.Since(start).Seconds()
		if observeOn && !inProcess && r.Err == "" {
			if r.Metrics == nil {
				r.Metrics = map[string]float64{}
			}
			r.Metrics["spans_exported"] = float64(exportedSpans() - spans0)
			r.Metrics["metrics_scrapes"] = float64(scrapes.Load() - scrapes0)
			if r.Setup != nil {
				if r.Setup.Settings == nil {
					r.Setup.Settings = map[string]string{}
				}
				r.Setup.Settings["observe"] = observeSettings()
			}
		}
		r.Name = sc.name
		fmt.Printf("  %s run %d/%d: %s\n", sc.name, i+1, o.runs, strings.TrimSpace(resultLine(r)))
		runs = append(runs, r)
	}
	return aggregate(sc, runs)
}

// aggregate folds the runs of one scenario into its reported result.
func aggregate(sc scenario, runs []Result) Result {
	out := Result{Name: sc.name, Metrics: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
	values := map[string][]float64{}
	var errs []string
	allMet := true
	for i, r := range runs {
		out.Runs = append(out.Runs, RunResult{Summary: r.Summary, Metrics: r.Metrics, Met: r.Met, Err: r.Err, Seconds: r.Seconds})
		out.Seconds += r.Seconds
		if r.Err != "" {
			errs = append(errs, fmt.Sprintf("run %d: %s", i+1, r.Err))
			allMet = false
			continue
		}
		if out.Target == "" {
			out.Target, out.Notes, out.Setup = r.Target, r.Notes, r.Setup
		}
		if r.Met == nil || !*r.Met {
			allMet = false
		}
		for k, v := range r.Metrics {
			values[k] = append(values[k], v)
		}
	}
	for k, vs := range values {
		out.Metrics[k], out.Min[k], out.Max[k] = median(vs), slicesMin(vs), slicesMax(vs)
	}
	out.Values = values
	if len(errs) > 0 {
		out.Err = strings.Join(errs, "; ")
	}
	switch {
	case len(values) == 0:
	case sc.met != nil && !inProcess: // -tls and -observe runs judge each run as before
		out.Met = met(len(errs) == 0 && sc.met(out.Metrics))
	case out.Target != "":
		out.Met = met(allMet)
	}
	var parts []string
	for _, k := range sc.keys {
		if _, ok := out.Metrics[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %s [%s..%s]", k, num(out.Metrics[k]), num(out.Min[k]), num(out.Max[k])))
		}
	}
	out.Summary = fmt.Sprintf("median of %d runs: %s", len(runs)-len(errs), strings.Join(parts, ", "))
	return out
}

// median of vs (the mean of the middle two for an even count).
func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func slicesMin(vs []float64) float64 {
	m := vs[0]
	for _, v := range vs {
		m = min(m, v)
	}
	return m
}

func slicesMax(vs []float64) float64 {
	m := vs[0]
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

// num prints a figure plainly: whole above 1,000, else 4 significant digits.
func num(v float64) string {
	if v >= 1000 || v <= -1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// memTotal is the machine's memory in bytes (MemTotal), 0 if unknown.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				kb, _ := strconv.ParseInt(fs[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// fsNames maps statfs magic numbers to filesystem names.
var fsNames = map[int64]string{
	0xEF53:     "ext4", // ext2/3/4 share it
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x01021994: "tmpfs",
	0x794C7630: "overlayfs",
	0x2FC12FC1: "zfs",
	0x6969:     "nfs",
	0xF2F52010: "f2fs",
	0x65735546: "fuse",
	0x858458F6: "ramfs",
	0x73717368: "squashfs",
}

// fsType is the filesystem type of dir (statfs magic -> name), with "(no
// journal)" after an ext4 that has none: there every file or directory
// created scans past the inodes deleted in the last minute or more
// (ext4's recently_deleted), which a task's directories make costly at
// hundreds of tasks a second (bench/RESULTS.md, section 8).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	magic := int64(st.Type) & 0xFFFFFFFF
	name, ok := fsNames[magic]
	if !ok {
		return fmt.Sprintf("0x%X", magic)
	}
	if name == "ext4" && ext4WithoutJournal(dir) {
		name += " (no journal)"
	}
	return name
}

// ext4WithoutJournal reports whether the ext4 filesystem that holds dir
// has no journal, as /sys/fs/ext4/DEVICE/journal_task says ("<none>");
// false when that cannot be read.
func ext4WithoutJournal(dir string) bool {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	dev := mountSource(string(mountinfo), abs)
	if !strings.HasPrefix(dev, "/dev/") {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/ext4", filepath.Base(dev), "journal_task"))
	return err == nil && strings.TrimSpace(string(b)) == "<none>"
}

// mountSource returns the source (for a disk, its device) of the mount in
// mountinfo (the text of /proc/self/mountinfo) that holds the absolute,
// clean path: the last-mounted of the longest mount points that are path
// or a parent of it. "" when none is.
func mountSource(mountinfo, path string) string {
	best, source := -1, ""
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := strings.ReplaceAll(f[4], "\\040", " ")
		within := path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")
		if within && len(mp) >= best {
			best, source = len(mp), g[1]
		}
	}
	return source
}

// treeDirty reports whether the work tree has uncommitted changes (nil
// when git cannot tell).
func treeDirty() any {
	out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return nil
	}
	return len(strings.TrimSpace(string(out))) > 0
}
