package encode

// Per-process accounting. The encoder runs ffmpeg/ffprobe itself (through
// encoder.FFmpeg and encoder.FFprobe) and does not hand back the children's
// rusage, so the benchmark points those variables at links to its own
// executable. Started under such a link with wrapEnv set, the executable
// runs the real tool, waits for it and appends one Record (wait4 rusage of
// that one child) to the log named by logEnv, then exits with the tool's
// status. Go start-up adds a few milliseconds per process; Run measures it
// (Startup.WrapperOverheadS) and it is paid equally by both pipelines per
// process they start.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	wrapEnv     = "BANYAN_ENCODEBENCH_WRAP"
	logEnv      = "BANYAN_ENCODEBENCH_LOG"
	realEnvPref = "BANYAN_ENCODEBENCH_REAL_"
)

// Record is one finished ffmpeg/ffprobe process.
type Record struct {
	Tool    string  `json:"tool"`     // "ffmpeg" or "ffprobe"
	Target  string  `json:"target"`   // see target
	StartNS int64   `json:"start_ns"` // unix nanoseconds
	WallS   float64 `json:"wall_s"`
	UserS   float64 `json:"user_s"`
	SysS    float64 `json:"sys_s"`
	MaxRSS  int64   `json:"maxrss_kb"`
	Exit    int     `json:"exit"`
}

// CPU is user+sys seconds.
func (r Record) CPU() float64 { return r.UserS + r.SysS }

// MaybeRunWrapper must be called first in main (and TestMain). When the
// process was started as the accounting wrapper it runs the real tool and
// exits; otherwise it returns at once.
func MaybeRunWrapper() {
	if os.Getenv(wrapEnv) != "1" {
		return
	}
	tool := filepath.Base(os.Args[0])
	real := os.Getenv(realEnvPref + strings.ToUpper(tool))
	if real == "" {
		return // not started under one of our links: behave normally
	}
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	setDeathSignal(cmd)
	start := time.Now()
	err := cmd.Run()
	rec := Record{Tool: tool, StartNS: start.UnixNano(), WallS: time.Since(start).Seconds()}
	rec.Target = target(os.Args[1:])
	code := 0
	if err != nil {
		code = 127
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if code < 0 {
				code = 128
			}
		} else {
			fmt.Fprintf(os.Stderr, "encodebench wrapper: %v\n", err)
		}
	}
	rec.Exit = code
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			rec.UserS = tvSeconds(ru.Utime)
			rec.SysS = tvSeconds(ru.Stime)
			rec.MaxRSS = int64(ru.Maxrss)
		}
	}
	if p := os.Getenv(logEnv); p != "" {
		if b, err := json.Marshal(rec); err == nil {
			// One write of one line with O_APPEND: concurrent wrappers do
			// not interleave.
			if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
				_, _ = f.Write(append(b, '\n'))
				_ = f.Close()
			}
		}
	}
	os.Exit(code)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// accounting installs the wrapper links and restores the encoder's tool
// names when closed.
type accounting struct {
	dir                 string
	realFFmpeg, realFFp string
	restore             func()
}

// installWrapper points ffmpegVar/ffprobeVar (the encoder's tool names) at
// wrapper links in a fresh temporary directory.
func installWrapper(ffmpegVar, ffprobeVar *string) (*accounting, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("wrapper: %w", err)
	}
	rf, err := exec.LookPath(*ffmpegVar)
	if err != nil {
		return nil, fmt.Errorf("wrapper: %w", err)
	}
	rp, err := exec.LookPath(*ffprobeVar)
	if err != nil {
		return nil, fmt.Errorf("wrapper: %w", err)
	}
	if rf, err = filepath.Abs(rf); err != nil {
		return nil, err
	}
	if rp, err = filepath.Abs(rp); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "encodebench-wrap-")
	if err != nil {
		return nil, fmt.Errorf("wrapper: %w", err)
	}
	for _, n := range []string{"ffmpeg", "ffprobe"} {
		if err := os.Symlink(self, filepath.Join(dir, n)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("wrapper: %w", err)
		}
	}
	oldF, oldP := *ffmpegVar, *ffprobeVar
	oldEnv := map[string]*string{}
	for _, k := range []string{wrapEnv, realEnvPref + "FFMPEG", realEnvPref + "FFPROBE", logEnv} {
		if v, ok := os.LookupEnv(k); ok {
			oldEnv[k] = &v
		} else {
			oldEnv[k] = nil
		}
	}
	os.Setenv(wrapEnv, "1")
	os.Setenv(realEnvPref+"FFMPEG", rf)
	os.Setenv(realEnvPref+"FFPROBE", rp)
	*ffmpegVar = filepath.Join(dir, "ffmpeg")
	*ffprobeVar = filepath.Join(dir, "ffprobe")
	a := &accounting{dir: dir, realFFmpeg: rf, realFFp: rp}
	a.restore = func() {
		*ffmpegVar, *ffprobeVar = oldF, oldP
		for k, v := range oldEnv {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
		os.RemoveAll(dir)
	}
	return a, nil
}

// startLog makes the wrappers started from now on log into a new file. Call
// it only while no tool is being started.
func (a *accounting) startLog(name string) string {
	p := filepath.Join(a.dir, name+".jsonl")
	os.Setenv(logEnv, p)
	return p
}

func (a *accounting) close() { a.restore() }

// readLog reads the records a phase's wrappers wrote.
func readLog(p string) ([]Record, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("wrapper log %s: %w", p, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// childrenCPU is getrusage(RUSAGE_CHILDREN) user+sys seconds: every child
// this process has waited for, and (through the wrappers) their children.
func childrenCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

// systemBusyCPU is the whole machine's busy CPU seconds so far (user, nice,
// system, irq, softirq, steal from /proc/stat; 0 where unavailable).
// Against childrenCPU it shows CPU used by other processes during a phase.
func systemBusyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		var v float64
		fmt.Sscan(f[i], &v)
		ticks += v
	}
	return ticks / 100 // USER_HZ
}

// target names what a run of ffmpeg or ffprobe worked on: its last file
// output (a segment pattern's ".%d" dropped, so a chunk with a pre-roll is
// named by its output), else its last argument (the probed file, or "-"),
// with "file:" stripped.
func target(args []string) string {
	for i := len(args) - 1; i > 0; i-- {
		if strings.HasPrefix(args[i], "file:") && args[i-1] != "-i" {
			return strings.TrimSuffix(strings.TrimPrefix(args[i], "file:"), ".%d")
		}
	}
	if len(args) == 0 {
		return ""
	}
	last := strings.TrimPrefix(args[len(args)-1], "file:")
	if last == "-" {
		for i := len(args) - 2; i >= 0; i-- {
			if args[i] == "-i" {
				return strings.TrimPrefix(args[i+1], "file:")
			}
		}
	}
	return last
}
