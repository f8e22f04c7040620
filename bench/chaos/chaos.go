// Package chaos is Banyan's fault harness: it starts a cluster of servers
// and agents as separate `sched` processes, runs a workload whose tasks
// leave evidence of every run, injects faults in rounds (kill -9, SIGSTOP
// past timeouts, network partitions in namespaces it creates, a data dir
// that fills up) and then checks every acknowledged job: present,
// finished, succeeded, with the id it was acknowledged with, run at most
// once. `make chaos` runs it (cmd/chaos); a short run is in `make test`.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Fault is one kind of fault a round injects.
type Fault string

// The faults (AllFaults orders them).
const (
	LeaderKill   Fault = "leader-kill"   // kill -9 the leader, restart it
	LeaderFreeze Fault = "leader-freeze" // SIGSTOP the leader past the election timeout, SIGCONT
	FollowerKill Fault = "follower-kill" // kill -9 a follower, restart it
	AgentKill    Fault = "agent-kill"    // kill -9 an agent, restart it
	AgentFreeze  Fault = "agent-freeze"  // SIGSTOP an agent past its lease, SIGCONT
	Partition    Fault = "partition"     // cut the leader off the network, heal
	DiskFull     Fault = "disk-full"     // fill the leader's data dir, free it
	// FullFollower fills the data dir of the follower first in line to
	// replace the leader to under the servers' disk reserve (writable, so
	// its log keeps up), kills -9 the leader, restarts it and frees the
	// follower's: the full follower must not lead.
	FullFollower Fault = "full-follower"
)

// AllFaults lists every fault, in the order a run cycles through them.
// FullFollower comes before DiskFull: a server whose disk was full falls
// behind and catches up slowly (the leader's retries back off up to
// seconds apart), and FullFollower waits for that first.
var AllFaults = []Fault{LeaderKill, LeaderFreeze, FollowerKill, AgentKill, AgentFreeze, Partition, FullFollower, DiskFull}

// ParseFaults reads a comma-separated list of fault names ("all" for all).
func ParseFaults(s string) ([]Fault, error) {
	if s == "" || s == "all" {
		return AllFaults, nil
	}
	var out []Fault
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(AllFaults, Fault(f)) {
			return nil, fmt.Errorf("unknown fault %q (want some of %v)", f, AllFaults)
		}
		out = append(out, Fault(f))
	}
	return out, nil
}

// Config configures a run. Zero values take the documented defaults.
type Config struct {
	// Sched is the sched binary.
	Sched string
	// Dir holds data dirs, logs and the tasks' evidence.
	Dir string
	// Network places the processes (default: loopback, no partitions).
	Network Network
	// Servers and Agents count the processes (default 3 and 3).
	Servers, Agents int
	// Rounds is how many rounds of each fault (default 1).
	Rounds int
	// Faults are the kinds to inject (default all).
	Faults []Fault
	// SubmitEvery is the workload's submission interval (default 200ms).
	SubmitEvery time.Duration
	// Lease is the agents' lease (default 3s, shorter than the server's
	// 10s default so that agent rounds stay short; passed as --lease).
	Lease time.Duration
	// Hold is how long a freeze, partition or full disk lasts (default 5s,
	// past raft's election timeout).
	Hold time.Duration
	// DiskSize, when set (e.g. "64m"), puts each server's data dir on a
	// tmpfs of that size, so the disk-full fault can fill it. It needs
	// root in a private mount namespace (cmd/chaos arranges that).
	DiskSize string
	// Drain bounds the wait for the workload to finish (default 2m).
	Drain time.Duration
	// ServerArgs and AgentArgs are added to every server's and agent's
	// command line; Dial to the harness's own connections.
	ServerArgs, AgentArgs []string
	Dial                  []grpc.DialOption
	// Logf receives progress lines (default: discarded).
	Logf func(format string, args ...any)
}

func (c *Config) fill() error {
	if c.Sched == "" || c.Dir == "" {
		return errors.New("chaos: the sched binary and a directory are required")
	}
	if c.Servers == 0 {
		c.Servers = 3
	}
	if c.Agents == 0 {
		c.Agents = 3
	}
	if c.Rounds == 0 {
		c.Rounds = 1
	}
	if len(c.Faults) == 0 {
		c.Faults = AllFaults
	}
	if c.SubmitEvery == 0 {
		c.SubmitEvery = 200 * time.Millisecond
	}
	if c.Lease == 0 {
		c.Lease = 3 * time.Second
	}
	if c.Hold == 0 {
		c.Hold = 5 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Minute
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Network == nil {
		n, err := NewLoopback(c.Servers)
		if err != nil {
			return err
		}
		c.Network = n
	}
	if len(c.Dial) == 0 {
		c.Dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return nil
}

// harness is one run.
type harness struct {
	cfg     Config
	servers []*proc
	agents  []*proc
	conns   []*grpc.ClientConn
	jobs    []pb.JobServiceClient
	cluster []pb.ClusterServiceClient
	agentsC []pb.AgentServiceClient
	evDir   string

	mu      sync.Mutex
	acked   []ack
	seq     int
	windows []window
}

// window is a time when an agent could not act on its tasks (frozen or
// killed): a task that finished in it, or ran on past it, may have been
// declared lost and run again.
type window struct {
	agent    string
	from, to time.Time
}

func (h *harness) agentDown(v int, from time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.windows = append(h.windows, window{agent: h.agents[v].name, from: from, to: time.Now()})
}

// ack is one acknowledged submission.
type ack struct {
	name, id string
	at       time.Time
}

// Run starts the cluster, runs the workload and the fault rounds, drains,
// checks and stops everything it started. The report is returned even
// when a check failed; an error means the run itself could not be made.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, evDir: filepath.Join(cfg.Dir, "evidence")}
	if err := os.MkdirAll(h.evDir, 0o777); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer h.stopAll()
	if err := h.startCluster(ctx); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Partitions: cfg.Network.CanPartition(), DiskFull: cfg.DiskSize != ""}
	if err := h.waitHealthy(ctx, 60*time.Second); err != nil {
		return nil, fmt.Errorf("chaos: cluster did not come up: %w", err)
	}
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.submitLoop(wctx)
	}()
	for r := range cfg.Rounds {
		for _, f := range cfg.Faults {
			if ctx.Err() != nil {
				break
			}
			cfg.Logf("round %d %s: start", r+1, f)
			res := h.round(ctx, f, r)
			cfg.Logf("round %d %s: %s", r+1, f, res)
			rep.add(res)
		}
	}
	stopWork()
	wg.Wait()
	h.check(ctx, rep)
	rep.Finished = time.Now()
	return rep, nil
}

func (h *harness) startCluster(ctx context.Context) error {
	cfg := h.cfg
	var peers []string
	for i := range cfg.Servers {
		peers = append(peers, "s"+strconv.Itoa(i+1)+"="+cfg.Network.ServerAddr(i))
	}
	var addrs []string
	for i := range cfg.Servers {
		addrs = append(addrs, cfg.Network.ServerAddr(i))
	}
	for i := range cfg.Servers {
		root := filepath.Join(cfg.Dir, "s"+strconv.Itoa(i+1))
		if err := os.MkdirAll(root, 0o700); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		if cfg.DiskSize != "" {
			if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size="+cfg.DiskSize, "tmpfs", root).CombinedOutput(); err != nil {
				return fmt.Errorf("chaos: tmpfs for %s: %v: %s", root, err, out)
			}
		}
		args := append([]string{"server", "--node-id", "s" + strconv.Itoa(i+1), "--data-dir", filepath.Join(root, "data"),
			"--bind", cfg.Network.ServerAddr(i), "--peers", strings.Join(peers, ","), "--lease", cfg.Lease.String()}, cfg.ServerArgs...)
		p := &proc{name: "s" + strconv.Itoa(i+1), logPath: filepath.Join(cfg.Dir, "s"+strconv.Itoa(i+1)+".log")}
		p.newCmd = func() *exec.Cmd { return cfg.Network.Command(i, cfg.Sched, args...) }
		h.servers = append(h.servers, p)
	}
	// Tasks run as the harness's own user (an agent started as root
	// needs to be told).
	me, err := user.Current()
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	runAs := me.Username
	for i := range cfg.Agents {
		id := "a" + strconv.Itoa(i+1)
		work := filepath.Join(cfg.Dir, id)
		if err := os.MkdirAll(work, 0o777); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		// Its task dir is its own, not a temp dir: an agent killed with
		// SIGKILL cannot remove one, and its restart finds its task logs.
		args := append([]string{"agent", "--id", id, "--servers", strings.Join(addrs, ","), "--work-dir", work,
			"--task-dir", filepath.Join(work, "tasks"), "--run-as", runAs}, cfg.AgentArgs...)
		p := &proc{name: id, logPath: filepath.Join(cfg.Dir, id+".log")}
		p.newCmd = func() *exec.Cmd { return exec.Command(cfg.Sched, args...) }
		h.agents = append(h.agents, p)
	}
	for _, p := range append(slices.Clone(h.servers), h.agents...) {
		if err := p.start(); err != nil {
			return err
		}
	}
	for _, a := range addrs {
		c, err := grpc.NewClient(a, cfg.Dial...)
		if err != nil {
			return fmt.Errorf("chaos: dial %s: %w", a, err)
		}
		h.conns = append(h.conns, c)
		h.jobs = append(h.jobs, pb.NewJobServiceClient(c))
		h.cluster = append(h.cluster, pb.NewClusterServiceClient(c))
		h.agentsC = append(h.agentsC, pb.NewAgentServiceClient(c))
	}
	return nil
}

func (h *harness) stopAll() {
	for _, p := range h.agents {
		p.stop()
	}
	for _, p := range h.servers {
		p.stop()
	}
	for _, c := range h.conns {
		c.Close()
	}
	if h.cfg.DiskSize != "" {
		for i := range h.servers {
			_ = exec.Command("umount", "-l", filepath.Join(h.cfg.Dir, "s"+strconv.Itoa(i+1))).Run()
		}
	}
}

// jobSpec is one workload job: one task that records its start and end in
// its evidence file; one in ten runs 6 s (long enough to be cut by most
// faults), the rest 1 s.
func (h *harness) jobSpec(name string, long bool) *pb.JobSpec {
	dur := "1"
	if long {
		dur = "6"
	}
	script := `echo "start $BANYAN_ATTEMPT" >> "$EVID/$BANYAN_TASK_ID"; sleep "$DUR"; echo "end $BANYAN_ATTEMPT" >> "$EVID/$BANYAN_TASK_ID"`
	return &pb.JobSpec{Name: name, Pool: "default", IdempotencyKey: name, Tasks: []*pb.TaskSpec{{
		Name: "run", Command: []string{"sh", "-c", script}, Env: map[string]string{"EVID": h.evDir, "DUR": dur},
		Resources: &pb.Resources{CpuMillis: 100, MemoryBytes: 32 << 20},
	}}}
}

// submit sends one job to the servers in turn from a random one until one
// acknowledges it or ctx ends, each try bounded by per.
func (h *harness) submit(ctx context.Context, spec *pb.JobSpec, per time.Duration) (*pb.Job, error) {
	start := rand.IntN(len(h.jobs))
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cctx, cancel := context.WithTimeout(ctx, per)
		resp, err := h.jobs[(start+i)%len(h.jobs)].SubmitJobs(cctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{spec}})
		cancel()
		if err == nil && len(resp.Jobs) == 1 {
			return resp.Jobs[0], nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// submitLoop is the workload: one job every SubmitEvery, each retried
// (same idempotency key) until acknowledged.
func (h *harness) submitLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.SubmitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		h.seq++
		n := h.seq
		h.mu.Unlock()
		name := fmt.Sprintf("chaos-%06d", n)
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		j, err := h.submit(sctx, h.jobSpec(name, n%10 == 0), 3*time.Second)
		cancel()
		if err != nil {
			continue // never acknowledged: not counted
		}
		h.mu.Lock()
		h.acked = append(h.acked, ack{name: name, id: j.Id, at: time.Now()})
		h.mu.Unlock()
	}
}

// leader asks the servers who leads and returns its index (-1: none).
func (h *harness) leader(ctx context.Context) int {
	for i, c := range h.cluster {
		if !h.servers[i].running() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		m, err := c.Members(cctx, &pb.MembersRequest{})
		cancel()
		if err != nil || m.LeaderId == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(m.LeaderId, "s"))
		if err == nil && n >= 1 && n <= len(h.servers) {
			return n - 1
		}
	}
	return -1
}

// healthy says why the cluster is not yet whole ("" when it is): every
// server answers with the same leader and every agent is up.
func (h *harness) healthy(ctx context.Context) string {
	leaders := map[string]bool{}
	for i, c := range h.cluster {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		m, err := c.Members(cctx, &pb.MembersRequest{})
		cancel()
		if err != nil {
			return fmt.Sprintf("server s%d: %v", i+1, err)
		}
		if m.LeaderId == "" {
			return fmt.Sprintf("server s%d knows no leader", i+1)
		}
		leaders[m.LeaderId] = true
	}
	if len(leaders) != 1 {
		return fmt.Sprintf("servers disagree on the leader: %v", leaders)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	l, err := h.agentsC[rand.IntN(len(h.agentsC))].ListAgents(cctx, &pb.ListAgentsRequest{})
	if err != nil {
		return fmt.Sprintf("list agents: %v", err)
	}
	up := 0
	var down []string
	for _, a := range l.Agents {
		if a.State == "up" {
			up++
		} else {
			down = append(down, a.Id)
		}
	}
	if up < len(h.agents) {
		return fmt.Sprintf("%d of %d agents up (down: %v)", up, len(h.agents), down)
	}
	return ""
}

func (h *harness) waitHealthy(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	why := ""
	for time.Now().Before(deadline) {
		if why = h.healthy(ctx); why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New(why)
}

// probe measures, from t0, when a new submission is acknowledged and when
// its task starts on an agent.
func (h *harness) probe(ctx context.Context, t0 time.Time, round int, f Fault) (submit, place time.Duration, err error) {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	name := fmt.Sprintf("probe-%s-%d", f, round)
	spec := &pb.JobSpec{Name: name, Pool: "default", Class: pb.JobClass_JOB_CLASS_LATENCY, IdempotencyKey: name + "-" + strconv.FormatInt(t0.UnixNano(), 36),
		Tasks: []*pb.TaskSpec{{Name: "probe", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 10, MemoryBytes: 1 << 20}}}}
	j, err := h.submit(pctx, spec, 2*time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("probe not acknowledged: %w", err)
	}
	submit = time.Since(t0)
	for pctx.Err() == nil {
		for _, c := range h.jobs {
			cctx, cancel := context.WithTimeout(pctx, time.Second)
			got, err := c.GetJob(cctx, &pb.GetJobRequest{Id: j.Id, WithTasks: true})
			cancel()
			if err != nil || len(got.Tasks) == 0 {
				continue
			}
			for _, a := range got.Tasks[0].Attempts {
				if a.StartedUnixMs > 0 {
					return submit, time.UnixMilli(a.StartedUnixMs).Sub(t0), nil
				}
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return submit, 0, fmt.Errorf("probe %s acknowledged but not started within 60s", j.Id)
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// round injects one fault, measures the recovery and puts the cluster
// back together.
func (h *harness) round(ctx context.Context, f Fault, n int) RoundResult {
	res := RoundResult{Fault: f}
	fail := func(format string, a ...any) RoundResult {
		res.Problems = append(res.Problems, fmt.Sprintf(format, a...))
		return res
	}
	l := h.leader(ctx)
	if l < 0 {
		return fail("no leader before the round")
	}
	var err error
	t0 := time.Now()
	switch f {
	case LeaderKill:
		if err = h.servers[l].kill9(); err != nil {
			return fail("%v", err)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		if rerr := h.servers[l].start(); rerr != nil {
			return fail("restart s%d: %v", l+1, rerr)
		}
	case LeaderFreeze:
		if err = h.servers[l].signal(syscall.SIGSTOP); err != nil {
			return fail("%v", err)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		sleepCtx(ctx, time.Until(t0.Add(h.cfg.Hold)))
		if cerr := h.servers[l].signal(syscall.SIGCONT); cerr != nil {
			return fail("%v", cerr)
		}
	case FollowerKill:
		v := (l + 1 + rand.IntN(len(h.servers)-1)) % len(h.servers)
		if err = h.servers[v].kill9(); err != nil {
			return fail("%v", err)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		sleepCtx(ctx, time.Second)
		if rerr := h.servers[v].start(); rerr != nil {
			return fail("restart s%d: %v", v+1, rerr)
		}
	case AgentKill:
		v := rand.IntN(len(h.agents))
		if err = h.agents[v].kill9(); err != nil {
			return fail("%v", err)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		sleepCtx(ctx, time.Second)
		h.agentDown(v, t0)
		if rerr := h.agents[v].start(); rerr != nil {
			return fail("restart a%d: %v", v+1, rerr)
		}
	case AgentFreeze:
		v := rand.IntN(len(h.agents))
		if err = h.agents[v].signal(syscall.SIGSTOP); err != nil {
			return fail("%v", err)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		sleepCtx(ctx, time.Until(t0.Add(h.cfg.Lease+2*time.Second)))
		h.agentDown(v, t0)
		if cerr := h.agents[v].signal(syscall.SIGCONT); cerr != nil {
			return fail("%v", cerr)
		}
	case Partition:
		if !h.cfg.Network.CanPartition() {
			res.Skipped = "no network namespaces (run as root through cmd/chaos)"
			return res
		}
		if err = h.cfg.Network.Partition(ctx, l); err != nil {
			return fail("%v", err)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		sleepCtx(ctx, time.Until(t0.Add(h.cfg.Hold)))
		if herr := h.cfg.Network.Heal(ctx, l); herr != nil {
			return fail("heal: %v", herr)
		}
	case DiskFull:
		if h.cfg.DiskSize == "" {
			res.Skipped = "data dirs are not on a tmpfs (run as root through cmd/chaos)"
			return res
		}
		filler := filepath.Join(h.cfg.Dir, "s"+strconv.Itoa(l+1), "filler")
		if ferr := fill(filler); ferr != nil {
			return fail("fill s%d: %v", l+1, ferr)
		}
		res.Submit, res.Place, err = h.probe(ctx, t0, n, f)
		sleepCtx(ctx, time.Until(t0.Add(h.cfg.Hold)))
		if rerr := os.Remove(filler); rerr != nil {
			return fail("free s%d: %v", l+1, rerr)
		}
	case FullFollower:
		if h.cfg.DiskSize == "" {
			res.Skipped = "data dirs are not on a tmpfs (run as root through cmd/chaos)"
			return res
		}
		if len(h.servers) < 3 {
			res.Skipped = "needs 3 servers or more: a quorum must outlive the killed leader"
			return res
		}
		var problem string
		if res.Submit, res.Place, problem, err = h.fullFollower(ctx, l, n); problem != "" {
			return fail("%s", problem)
		}
	}
	if err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	healStart := time.Now()
	if herr := h.waitHealthy(ctx, 30*time.Second); herr != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("not whole 30s after the fault ended: %v", herr))
		h.repair(ctx)
	}
	res.Heal = time.Since(healStart)
	return res
}

// fullFollower is the FullFollower round against leader l: problem says
// what kept the fault from being made (or undone), err what the probe and
// the check of who led found.
//
// The round needs a peer that can win: one whose log is as complete as the
// full follower's. A round before may have left a server behind (a full
// disk of its own, a restart), so it first waits until every follower's
// commit index is within a few entries of the leader's.
func (h *harness) fullFollower(ctx context.Context, l, n int) (submit, place time.Duration, problem string, err error) {
	if why := h.waitCaughtUp(ctx, time.Minute); why != "" {
		return 0, 0, "the followers did not catch up with the leader within a minute: " + why, nil
	}
	v := firstInLine(len(h.servers), l)
	name := "s" + strconv.Itoa(v+1)
	filler := filepath.Join(h.cfg.Dir, name, "filler")
	if ferr := fillTo(filler, diskReserve/2); ferr != nil {
		return 0, 0, fmt.Sprintf("fill %s: %v", name, ferr), nil
	}
	defer func() {
		// Free it, and wait until the server has seen it free, so that a
		// later fill is news to it.
		rerr := os.Remove(filler)
		if rerr != nil && problem == "" {
			problem = fmt.Sprintf("free %s: %v", name, rerr)
		} else if lastDiskSaid(h.servers[v].logPath) == refusing &&
			!waitDiskSaid(ctx, h.servers[v].logPath, spaceAgain, 5*time.Second) && problem == "" {
			problem = fmt.Sprintf("%s did not say %q within 5 s of its data dir being freed", name, spaceAgain)
		}
	}()
	// Its guard looks twice a second and says so when it finds the disk
	// full; a look more, and it has acted on it as a follower.
	if !waitDiskSaid(ctx, h.servers[v].logPath, refusing, 5*time.Second) {
		return 0, 0, fmt.Sprintf("%s did not say %q within 5 s of its data dir falling under the reserve", name, refusing), nil
	}
	sleepCtx(ctx, 600*time.Millisecond)
	handed := countLog(h.servers[v].logPath, handedOn)
	t0 := time.Now()
	if kerr := h.servers[l].kill9(); kerr != nil {
		return 0, 0, kerr.Error(), nil
	}
	submit, place, err = h.probe(ctx, t0, n, FullFollower)
	if rerr := h.servers[l].start(); rerr != nil {
		return submit, place, fmt.Sprintf("restart s%d: %v", l+1, rerr), err
	}
	if countLog(h.servers[v].logPath, handedOn) > handed || h.leader(ctx) == v {
		// What the round checks, not a failure to inject: the round goes
		// on to wait for the cluster to be whole.
		err = errors.Join(err, fmt.Errorf("%s, its data dir under the reserve, led after s%d was killed", name, l+1))
	}
	return submit, place, "", err
}

// waitCaughtUp waits up to within until every server's commit index is
// within caughtUpSlack entries of the highest, and says why not ("" when
// they are).
func (h *harness) waitCaughtUp(ctx context.Context, within time.Duration) string {
	why := ""
	for deadline := time.Now().Add(within); ; sleepCtx(ctx, 100*time.Millisecond) {
		var idx []uint64
		why = ""
		for i, c := range h.cluster {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			m, err := c.Members(cctx, &pb.MembersRequest{})
			cancel()
			if err != nil {
				why = fmt.Sprintf("server s%d: %v", i+1, err)
				break
			}
			idx = append(idx, m.CommitIndex)
		}
		if why == "" && slices.Max(idx)-slices.Min(idx) <= caughtUpSlack {
			return ""
		}
		if why == "" {
			why = fmt.Sprintf("commit indexes %v", idx)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return why
		}
	}
}

// caughtUpSlack is how far behind the highest commit index a server may be
// and count as caught up: the workload commits an entry or two every
// 200 ms.
const caughtUpSlack = 5

// The server's disk reserve (its default, which the harness keeps) and
// the lines a server with a full data dir logs (scheduler/server/diskguard.go).
const (
	diskReserve = 32 << 20
	refusing    = "data dir is full; refusing writes"
	spaceAgain  = "data dir has space again; taking writes"
	handedOn    = "handed leadership to a peer: this server's data dir is full"
)

// firstInLine is the server that stands first when leader l's process is
// gone: the first by ID among the others (scheduler/deadleader).
func firstInLine(servers, l int) int {
	var ids []string
	for i := range servers {
		if i != l {
			ids = append(ids, "s"+strconv.Itoa(i+1))
		}
	}
	slices.Sort(ids)
	n, _ := strconv.Atoi(strings.TrimPrefix(ids[0], "s"))
	return n - 1
}

// countLog counts the lines of the log at path that hold s.
func countLog(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// waitDiskSaid waits up to within until said (refusing or spaceAgain) is
// the last thing the server's log at path says of its data dir's space.
// (A count of new lines would not do: the guard says only what changed,
// and a round before may have filled and freed the disk between two of
// its looks.)
func waitDiskSaid(ctx context.Context, path, said string, within time.Duration) bool {
	for deadline := time.Now().Add(within); ; sleepCtx(ctx, 100*time.Millisecond) {
		if lastDiskSaid(path) == said {
			return true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
	}
}

// lastDiskSaid is the last of refusing and spaceAgain in the log at path
// ("" if neither).
func lastDiskSaid(path string) string {
	b, _ := os.ReadFile(path)
	full, room := strings.LastIndex(string(b), refusing), strings.LastIndex(string(b), spaceAgain)
	switch {
	case full > room:
		return refusing
	case room >= 0:
		return spaceAgain
	}
	return ""
}

// repair restarts whatever is not running and thaws anything frozen, so
// that one bad round does not spoil the rest.
func (h *harness) repair(ctx context.Context) {
	for _, p := range append(slices.Clone(h.servers), h.agents...) {
		if !p.running() {
			_ = p.start()
		} else if p.frozen {
			_ = p.signal(syscall.SIGCONT)
		}
	}
	if h.cfg.Network.CanPartition() {
		for i := range h.servers {
			_ = h.cfg.Network.Heal(ctx, i)
		}
	}
	_ = h.waitHealthy(ctx, 30*time.Second)
}

// fillTo writes path until the file system has less than leave bytes
// free (the file may overshoot by up to 1 MiB).
func fillTo(path string, leave uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
			return err
		}
		if st.Bavail*uint64(st.Bsize) < leave {
			return nil
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
}

// fill writes path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return nil
		}
		return err
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 4 << 10, 512} {
		buf := make([]byte, size)
		for {
			_, err := f.Write(buf)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				return err
			}
			break
		}
	}
	return nil
}
