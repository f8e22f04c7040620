package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/bench/chaos"
	"github.com/banyan-sched/banyan/bench/schedbuild"
	"google.golang.org/grpc"
)

// The cluster harness: the real binaries, built once per benchmark (the
// front `sched`, the thin `sched-client` it execs, and the full `banyand`
// that execs for daemon commands, as users install them), run as three `sched server` processes on loopback (plaintext gRPC and
// raft: loopback only, so the servers need no --insecure), each with its
// own data dir on disk under the benchmark's data root.

// schedBuild is the sched binary this process built (schedBinary).
var schedBuild struct {
	once sync.Once
	path string
	err  error
}

// schedBinary builds ./cmd/sched once per process into dir, as banyand
// (full) and sched (thin, which execs banyand for `sched server`, `sched
// dev` and the agent), and returns sched's path, or returns
// $BANYAN_SCHED_BIN when set. Every scenario gets the
// first build, so dir must live as long as the process: the benchmark's
// work dir (options.work), never a scenario's temporary one (the cli
// scenario's was, and with -only cli its second run found no binary).
func schedBinary(dir string) (string, error) {
	if b := os.Getenv("BANYAN_SCHED_BIN"); b != "" {
		return b, nil // a binary built elsewhere (an A/B comparison)
	}
	schedBuild.once.Do(func() {
		schedBuild.path, schedBuild.err = schedbuild.Build(context.Background(), dir, os.Stderr)
	})
	return schedBuild.path, schedBuild.err
}

// child is a process the benchmark started and owns.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startChild starts bin with args, its output going to logPath.
func startChild(name, logPath, bin string, args ...string) (*child, error) {
	return startChildEnv(name, logPath, nil, bin, args...)
}

// startChildEnv is startChild with the environment env (nil: this
// process's).
func startChildEnv(name, logPath string, env []string, bin string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// kill9 sends SIGKILL and waits for the process to go.
func (c *child) kill9() error {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit after SIGKILL", c.name)
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	if !c.alive() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.kill9()
	}
}

// clusterServer is one `sched server` process.
type clusterServer struct {
	id, addr, httpAddr string
	proc               *child
}

// cluster is three `sched server` processes bootstrapped from one --peers
// list, with their data dirs and logs under dir.
type cluster struct {
	dir     string
	sched   string
	servers []*clusterServer
	conns   map[string]*grpc.ClientConn
	mu      sync.Mutex
	others  []*child // agents and fleets started on this cluster
}

// startCluster starts n `sched server` processes bootstrapped from one
// --peers list and waits for a leader. Beyond --node-id, --data-dir,
// --bind and --peers every server gets only --http-addr (the read-only
// /metrics endpoint; the server's metrics observer runs either way) and
// the scenario's extra flags (which its Setup records).
func startCluster(o options, name string, n int, extra ...string) (*cluster, error) {
	sched, err := schedBinary(o.work)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.dataRoot, "banyan-bench-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	c := &cluster{dir: dir, sched: sched, conns: map[string]*grpc.ClientConn{}}
	var peers []string
	ports, err := chaos.FreeLoopbackAddrs(2 * n) // gRPC and HTTP of each server
	if err != nil {
		c.close()
		return nil, err
	}
	for i := 0; i < n; i++ {
		id := "s" + strconv.Itoa(i+1)
		c.servers = append(c.servers, &clusterServer{id: id, addr: ports[2*i], httpAddr: ports[2*i+1]})
		peers = append(peers, id+"="+ports[2*i])
	}
	for _, s := range c.servers {
		args := append([]string{"server", "--node-id", s.id, "--data-dir", filepath.Join(dir, s.id),
			"--bind", s.addr, "--peers", strings.Join(peers, ","), "--http-addr", s.httpAddr}, extra...)
		env, err := observeEnv()
		if err != nil {
			c.close()
			return nil, err
		}
		p, err := startChildEnv(s.id, filepath.Join(dir, s.id+".log"), env, sched, args...)
		if err != nil {
			c.close()
			return nil, err
		}
		s.proc = p
	}
	scrapeServers(c)
	if _, err := c.waitLeader(30 * time.Second); err != nil {
		var tails []string
		for _, s := range c.servers {
			tails = append(tails, s.id+": "+c.tail(s))
		}
		c.close()
		return nil, fmt.Errorf("%w; logs: %s", err, strings.Join(tails, "; "))
	}
	return c, nil
}

// startLedCluster is startCluster, then the leader once it serves reads.
func startLedCluster(o options, name string, n int, extra ...string) (*cluster, *clusterServer, error) {
	c, err := startCluster(o, name, n, extra...)
	if err != nil {
		return nil, nil, err
	}
	leader, err := c.waitLeader(10 * time.Second)
	if err != nil {
		c.close()
		return nil, nil, err
	}
	return c, leader, nil
}

// addrs are the servers' gRPC addresses.
func (c *cluster) addrs() []string {
	var a []string
	for _, s := range c.servers {
		a = append(a, s.addr)
	}
	return a
}

// conn is a shared client connection to addr.
func (c *cluster) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := dial(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// members asks server s for the raft configuration, the leader and the
// commit index.
func (c *cluster) members(s *clusterServer) (*pb.MembersResponse, error) {
	cc, err := c.conn(s.addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return pb.NewClusterServiceClient(cc).Members(ctx, &pb.MembersRequest{})
}

// waitLeader finds the leader through the API (ClusterService.Members on
// the live servers) and waits until it serves reads.
func (c *cluster) waitLeader(within time.Duration) (*clusterServer, error) {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		for _, s := range c.servers {
			if !s.proc.alive() {
				continue
			}
			m, err := c.members(s)
			if err != nil {
				last = err
				continue
			}
			for _, l := range c.servers {
				if l.addr == m.LeaderAddress && l.proc.alive() && c.serves(l) {
					return l, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no leader within %s (last error: %v)", within, last)
}

// serves reports whether s answers a read (its leader loop is ready).
func (c *cluster) serves(s *clusterServer) bool {
	cc, err := c.conn(s.addr)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = pb.NewPoolServiceClient(cc).ListPools(ctx, &pb.ListPoolsRequest{})
	return err == nil
}

// commitIndex is the leader's raft commit index, read through the API.
func (c *cluster) commitIndex(leader *clusterServer) (uint64, error) {
	m, err := c.members(leader)
	if err != nil {
		return 0, err
	}
	return m.CommitIndex, nil
}

// metric reads one unlabelled series (a gauge or a histogram's _sum or
// _count) from s's /metrics.
func (c *cluster) metric(s *clusterServer, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", s.id, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scrape %s: %w", s.id, err)
	}
	return 0, fmt.Errorf("%s: no series %s", s.id, name)
}

// startAgents starts n real `sched agent` processes on the cluster (tasks
// run as this process's user).
func (c *cluster) startAgents(n int, extra ...string) error {
	for i := 0; i < n; i++ {
		id := "agent-" + strconv.Itoa(i+1)
		work := filepath.Join(c.dir, id)
		if err := os.MkdirAll(work, 0o755); err != nil {
			return fmt.Errorf("agent dir: %w", err)
		}
		args := append([]string{"agent", "--id", id, "--servers", strings.Join(c.addrs(), ","),
			"--work-dir", work, "--task-dir", filepath.Join(work, "tasks"), "--run-as", currentUser()}, extra...)
		p, err := startChild(id, filepath.Join(c.dir, id+".log"), c.sched, args...)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.others = append(c.others, p)
		c.mu.Unlock()
	}
	return nil
}

// close stops every process and removes the data dirs.
func (c *cluster) close() {
	c.mu.Lock()
	others := c.others
	c.others = nil
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	for _, p := range others {
		p.stop(10 * time.Second)
	}
	for _, s := range c.servers {
		if s.proc != nil {
			s.proc.stop(10 * time.Second)
		}
	}
	os.RemoveAll(c.dir)
}

// tail returns the last lines of a server's log, for error messages.
func (c *cluster) tail(s *clusterServer) string {
	data, err := os.ReadFile(filepath.Join(c.dir, s.id+".log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// leadershipLines returns the servers' log lines that tell why leadership
// moved (raft's heartbeat timeouts and step-downs, and who became leader),
// the last few of each server, for the error of a run that saw an election
// too many: the logs go with the cluster's dir.
func (c *cluster) leadershipLines() string {
	var out []string
	for _, s := range c.servers {
		data, err := os.ReadFile(filepath.Join(c.dir, s.id+".log"))
		if err != nil {
			continue
		}
		var mine []string
		for _, line := range strings.Split(string(data), "\n") {
			for _, k := range []string{"heartbeat timeout", "stepping down", "failed to contact", `msg="became leader"`, "lost leadership"} {
				if strings.Contains(line, k) {
					mine = append(mine, s.id+": "+line)
					break
				}
			}
		}
		out = append(out, mine[max(0, len(mine)-4):]...)
	}
	return strings.Join(out, " | ")
}

// elections counts the times a server of the cluster became leader, from
// their logs: a figure read from "the leader" is only the leader's when
// this stayed 1 through the run.
func (c *cluster) elections() int {
	n := 0
	for _, s := range c.servers {
		data, err := os.ReadFile(filepath.Join(c.dir, s.id+".log"))
		if err != nil {
			continue
		}
		n += strings.Count(string(data), `msg="became leader"`)
	}
	return n
}
