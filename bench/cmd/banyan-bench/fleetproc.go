package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/simagent"
)

// The simulated agents run in a process of their own,
// `banyan-bench simagents ...`, so that the servers' CPU and memory are
// theirs alone. The child reports on stdout, one line each:
//
//	READY
//	S <unix-ns> <assigned> <finished> <acked> <connected> <running> <heartbeats> <cancelled> <refusals>
//	A <task-name> <unix-ns>        (tasks whose name has -report-prefix)
//	R <rtt-us>                     (heartbeat round trips, with -rtt)
//
// and stops when its stdin closes.

// fleetOpts configure a simagents child.
type fleetOpts struct {
	servers      []string
	n            int
	cpuMillis    int64
	memBytes     int64
	duration     time.Duration
	perConn      int
	reportPrefix string
	rtt          bool
}

func (f fleetOpts) args() []string {
	a := []string{"simagents", "-n", strconv.Itoa(f.n), "-servers", strings.Join(f.servers, ","),
		"-cpu", strconv.FormatInt(f.cpuMillis, 10), "-mem", strconv.FormatInt(f.memBytes, 10),
		"-duration", f.duration.String(), "-per-conn", strconv.Itoa(max(f.perConn, 1))}
	if f.reportPrefix != "" {
		a = append(a, "-report-prefix", f.reportPrefix)
	}
	if f.rtt {
		a = append(a, "-rtt")
	}
	return a
}

// simagentsMain is the child: `banyan-bench simagents -n N -servers A,B,C ...`.
func simagentsMain(args []string) int {
	fs := flag.NewFlagSet("simagents", flag.ContinueOnError)
	n := fs.Int("n", 100, "number of simulated agents")
	servers := fs.String("servers", "", "comma-separated server addresses")
	cpu := fs.Int64("cpu", 8000, "cpu millicores per agent")
	mem := fs.Int64("mem", 32<<30, "memory bytes per agent")
	dur := fs.Duration("duration", 0, "simulated task duration (0: complete at once)")
	perConn := fs.Int("per-conn", 1, "agents per gRPC connection")
	prefix := fs.String("report-prefix", "", "report the assignment time of tasks whose name has this prefix")
	rtt := fs.Bool("rtt", false, "report heartbeat round trips")
	every := fs.Duration("every", 50*time.Millisecond, "stats interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *servers == "" || *n <= 0 {
		fmt.Fprintln(os.Stderr, "simagents: -servers and a positive -n are required")
		return 2
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	var mu sync.Mutex
	emit := func(format string, a ...any) {
		mu.Lock()
		fmt.Fprintf(out, format, a...)
		mu.Unlock()
	}
	cfg := simagent.Config{Servers: strings.Split(*servers, ","), N: *n, AgentsPerConn: *perConn,
		Capacity: &pb.Resources{CpuMillis: *cpu, MemoryBytes: *mem}, Duration: *dur}
	if *prefix != "" {
		cfg.OnAssign = func(a simagent.Assignment) {
			if name := a.Task.GetSpec().GetName(); strings.HasPrefix(name, *prefix) {
				emit("A %s %d\n", name, a.At.UnixNano())
			}
		}
	}
	if *rtt {
		cfg.OnHeartbeatRTT = func(d time.Duration) { emit("R %d\n", d.Microseconds()) }
	}
	// An agent holds open the connection its session is on (simagent
	// redials a server that refused it, so as not to keep one to every
	// server): 10,000 agents need about 10,000 files, more for a moment
	// while they find the leader. Raise the limit to twice that where
	// allowed; where not, say so (agents past the limit cannot connect,
	// and the run fails waiting for them).
	conns := (*n + *perConn - 1) / *perConn
	if lim, err := raiseFileLimit(uint64(2*conns + 1024)); err != nil {
		fmt.Fprintf(os.Stderr, "simagents: %v; going on with %d\n", err, lim)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	fleet, err := simagent.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "simagents:", err)
		return 1
	}
	defer fleet.Stop()
	go func() { // stdin closing is the parent's stop
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	emit("READY\n")
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			mu.Lock()
			_ = out.Flush()
			mu.Unlock()
			return 0
		case now := <-t.C:
			s := fleet.Stats()
			emit("S %d %d %d %d %d %d %d %d %d\n", now.UnixNano(), s.Assigned, s.Finished, s.Acked, s.Connected,
				fleet.Running(), s.Heartbeats, s.Cancelled, s.Refusals)
			mu.Lock()
			err := out.Flush()
			mu.Unlock()
			if err != nil {
				return 0 // the parent went away
			}
		}
	}
}

// fleetSample is one S line.
type fleetSample struct {
	at                                    time.Time
	assigned, finished, acked, connected  int64
	running, heartbeats, cancelled, refus int64
}

// remoteFleet is the parent's handle on a simagents child.
type remoteFleet struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	mu       sync.Mutex
	ready    bool
	series   []fleetSample
	assigned map[string]time.Time
	rtts     []time.Duration
	rttOn    bool
}

// startFleet starts a simagents child of this binary and waits for READY.
func startFleet(f fleetOpts, logPath string) (*remoteFleet, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("simagents: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("simagents log: %w", err)
	}
	cmd := exec.Command(self, f.args()...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("simagents: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("simagents: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start simagents: %w", err)
	}
	r := &remoteFleet{cmd: cmd, stdin: stdin, done: make(chan struct{}), assigned: map[string]time.Time{}}
	readyc := make(chan struct{})
	go func() { // owned by the fleet: ends when the child's stdout closes
		defer close(r.done)
		defer logf.Close()
		r.read(stdout, readyc)
		_ = cmd.Wait()
	}()
	select {
	case <-readyc:
		return r, nil
	case <-r.done:
		return nil, errors.New("simagents exited before it was ready (see its log)")
	case <-time.After(30 * time.Second):
		r.stop()
		return nil, errors.New("simagents not ready after 30s")
	}
}

func (r *remoteFleet) read(stdout io.Reader, readyc chan struct{}) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "READY":
			r.mu.Lock()
			if !r.ready {
				r.ready = true
				close(readyc)
			}
			r.mu.Unlock()
		case "S":
			if len(f) != 10 {
				continue
			}
			var v [9]int64
			for i := range v {
				v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
			}
			s := fleetSample{at: time.Unix(0, v[0]), assigned: v[1], finished: v[2], acked: v[3], connected: v[4],
				running: v[5], heartbeats: v[6], cancelled: v[7], refus: v[8]}
			r.mu.Lock()
			r.series = append(r.series, s)
			r.mu.Unlock()
		case "A":
			if len(f) != 3 {
				continue
			}
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			r.mu.Lock()
			if _, ok := r.assigned[f[1]]; !ok {
				r.assigned[f[1]] = time.Unix(0, ns)
			}
			r.mu.Unlock()
		case "R":
			if len(f) != 2 {
				continue
			}
			us, _ := strconv.ParseInt(f[1], 10, 64)
			r.mu.Lock()
			if r.rttOn {
				r.rtts = append(r.rtts, time.Duration(us)*time.Microsecond)
			}
			r.mu.Unlock()
		}
	}
}

// pid is the child's process id.
func (r *remoteFleet) pid() int { return r.cmd.Process.Pid }

// last is the latest sample (zero before the first).
func (r *remoteFleet) last() fleetSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.series) == 0 {
		return fleetSample{}
	}
	return r.series[len(r.series)-1]
}

// samples returns a copy of the series.
func (r *remoteFleet) samples() []fleetSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fleetSample(nil), r.series...)
}

// assignedAt is when the named task reached an agent.
func (r *remoteFleet) assignedAt(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.assigned[name]
	return t, ok
}

// measureRTT starts (true) or stops (false) collecting round trips and
// returns those collected so far.
func (r *remoteFleet) measureRTT(on bool) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rttOn = on
	return append([]time.Duration(nil), r.rtts...)
}

// waitConnected waits until n agents have a session.
func (r *remoteFleet) waitConnected(within time.Duration, n int) error {
	if !waitUntil(within, 20*time.Millisecond, func() bool { return r.last().connected >= int64(n) }) {
		return fmt.Errorf("only %d of %d simulated agents connected after %s", r.last().connected, n, within)
	}
	return nil
}

// stop closes the child's stdin and waits for it (SIGKILL after 20 s).
func (r *remoteFleet) stop() {
	r.stdin.Close()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	}
}

// rateBetween is the assignment rate (per second) between two times, from
// the samples nearest to them.
func rateBetween(s []fleetSample, from, to time.Time, value func(fleetSample) int64) float64 {
	a, b := sampleAt(s, from), sampleAt(s, to)
	if a == nil || b == nil || !b.at.After(a.at) {
		return 0
	}
	return float64(value(*b)-value(*a)) / b.at.Sub(a.at).Seconds()
}

// sampleAt is the last sample at or before t (the first one if none).
func sampleAt(s []fleetSample, t time.Time) *fleetSample {
	if len(s) == 0 {
		return nil
	}
	best := &s[0]
	for i := range s {
		if s[i].at.After(t) {
			break
		}
		best = &s[i]
	}
	return best
}

// currentUser is the name tasks of real agents run as.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}
