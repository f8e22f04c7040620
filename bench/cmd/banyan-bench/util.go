package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"github.com/banyan-sched/banyan/scheduler/server"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// quiet logs only errors: the server logs every submission at info.
func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// tempDir makes a data dir that cleanup removes.
func tempDir(prefix string) (string, func()) {
	d, err := os.MkdirTemp("", "banyan-bench-"+prefix+"-")
	if err != nil {
		panic(err)
	}
	return d, func() { os.RemoveAll(d) }
}

// startSingle starts a one-server cluster on loopback (raft on disk, fsync
// on every commit as raft-boltdb does by default) and waits until it leads.
func startSingle(dir string, mod func(*server.Config)) (*server.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := server.Config{NodeID: "bench", DataDir: dir, Listener: ln, Bootstrap: true, Logger: quiet(),
		RaftLogLevel: "error", TLS: serverSource("bench")}
	if mod != nil {
		mod(&cfg)
	}
	watch := observed(&cfg)
	s, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	watch(s)
	if err := waitLeader(10*time.Second, s); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func waitLeader(within time.Duration, servers ...*server.Server) error {
	_, err := findLeader(within, servers...)
	return err
}

func findLeader(within time.Duration, servers ...*server.Server) (*server.Server, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, s := range servers {
			if s != nil && s.IsLeader() {
				// The leader serves only once earlier entries are applied.
				if readyLeader(s) {
					return s, nil
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, errors.New("no leader elected")
}

// readyLeader probes the leader with a cheap read through gRPC-free state
// access: a ListPools call succeeds once the leader loop is ready.
func readyLeader(s *server.Server) bool {
	conn, err := dial(s.Addr())
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = pb.NewPoolServiceClient(conn).ListPools(ctx, &pb.ListPoolsRequest{})
	return err == nil
}

func dial(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tlsKit != nil {
		var err error
		if creds, err = clientCreds(); err != nil {
			return nil, err
		}
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)), wirecodec.DialOption())
}

// queueLen reads the leader's queue length in process.
func queueLen(s *server.Server) int {
	n := 0
	s.FSM().Read(func(st *state.State) { n = st.QueueLen() })
	return n
}

// percentile returns the p-th percentile (0..100) of sorted durations in ms.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return float64(sorted[i].Microseconds()) / 1000
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
}

// waitUntil polls cond every step until it holds or the deadline passes.
func waitUntil(within, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// The bounds of waitJob. A job's wait is bounded by progress, not by a
// fixed time: on a slow host a run of cold Python calls (a few a second on
// 2 cpus) still yields its figure, while a stuck job still fails.
const (
	// jobStall is how long a job's task counts may stay unchanged.
	jobStall = 2 * time.Minute
	// jobWaitLimit bounds the whole wait, however the counts move (a
	// backstop against tasks that retry for ever).
	jobWaitLimit = 30 * time.Minute
	// jobPollTimeout bounds one GetJob call.
	jobPollTimeout = 30 * time.Second
)

// waitJob waits for job id to end (waitJobDone with the bounds above and
// the wall clock) and returns it.
func waitJob(ctx context.Context, jobs pb.JobServiceClient, id string) (*pb.Job, error) {
	return waitJobDone(func() (*pb.Job, error) {
		cctx, cancel := context.WithTimeout(ctx, jobPollTimeout)
		defer cancel()
		return jobs.GetJob(cctx, &pb.GetJobRequest{Id: id})
	}, jobStall, jobWaitLimit, 20*time.Millisecond, time.Now, time.Sleep)
}

// waitJobDone calls get every step until the job it returns has ended
// (state.IsJobFinal: succeeded, failed or cancelled alike), and
// returns that job. It gives up with an error when get has failed for
// stall (the server's last error), when the job's task counts have not
// changed for stall (the counts, and get's last error if its last call
// failed), or after limit. now and sleep are the clock (time.Now and
// time.Sleep outside tests).
func waitJobDone(get func() (*pb.Job, error), stall, limit, step time.Duration, now func() time.Time, sleep func(time.Duration)) (*pb.Job, error) {
	start := now()
	moved, answered := start, start // the counts' last change; get's last success
	var counts *pb.TaskCounts
	seen := false
	for {
		job, err := get()
		at := now()
		if err == nil && job == nil {
			err = errors.New("the server answered with no job")
		}
		if err == nil {
			if state.IsJobFinal(job.GetState()) {
				return job, nil
			}
			answered = at
			if !seen || !proto.Equal(counts, job.GetCounts()) {
				seen, counts, moved = true, job.GetCounts(), at
			}
		}
		switch {
		case at.Sub(answered) >= stall:
			return nil, fmt.Errorf("job not done: the server has not answered for %v: %w", at.Sub(answered).Round(time.Second), err)
		case at.Sub(moved) >= stall:
			msg := fmt.Sprintf("job not done: its task counts have not changed for %v: %v", at.Sub(moved).Round(time.Second), counts)
			if err != nil {
				return nil, fmt.Errorf("%s (the last poll: %w)", msg, err)
			}
			return nil, errors.New(msg)
		case at.Sub(start) >= limit:
			return nil, fmt.Errorf("job not done after %v, its task counts still moving: %v", limit, counts)
		}
		sleep(step)
	}
}

// procCPU returns a process's user+system CPU time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ")".
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// procRSS returns a process's resident set size in bytes.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// startCPUProfile profiles this process during one scenario when -profile
// is set; the returned function stops it.
func startCPUProfile(o options, name string) func() {
	if o.profile == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(o.profile, name+".cpu.pprof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func writeHeapProfile(o options, name string) {
	if o.profile == "" {
		return
	}
	f, err := os.Create(filepath.Join(o.profile, name+".heap.pprof"))
	if err != nil {
		return
	}
	defer f.Close()
	runtime.GC()
	_ = pprof.WriteHeapProfile(f)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
