package main_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Operating a cluster for a year (issue 14): three `sched server`
// processes with data dirs on disk and two `sched agent` processes, started
// as the README's three-server example shows (plain loopback, --peers,
// --join to add one), driven only through the CLI: drain an agent under a
// long job, back up and restore after losing every data dir, lose a server
// for good and add another, and upgrade every server in turn from the
// fixture data dir of the earlier release while a job runs.

// opProc is one `sched server` or `sched agent` process, restartable with
// the same arguments.
type opProc struct {
	id   string
	addr string // servers only
	args []string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// alive reports whether the process was started and not reaped yet.
func (p *opProc) alive() bool { return p.cmd != nil && p.cmd.ProcessState == nil }

// opCluster is the servers and agents of one test, each a process of the
// sched binary.
type opCluster struct {
	t       *testing.T
	dir     string
	servers []*opProc // in start order; killed for good ones are removed
	agents  []*opProc
	ended   []*opProc // killed for good or detached, kept for their logs and cleanup
}

func newOpCluster(t *testing.T) *opCluster {
	c := &opCluster{t: t, dir: t.TempDir()}
	t.Cleanup(func() {
		for _, p := range slices.Concat(c.servers, c.ended, c.agents) {
			c.kill9(p)
		}
		if t.Failed() {
			t.Logf("process logs:\n%s", c.logs())
		}
	})
	return c
}

// launch starts p's process with its arguments.
func (c *opCluster) launch(p *opProc) {
	c.t.Helper()
	var log syncBuffer
	if p.log != nil { // a restart: keep what the last run said
		_, _ = log.Write([]byte(p.log.String() + "--- restarted\n"))
	}
	cmd := exec.Command(schedBin, p.args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", p.id, err)
	}
	p.cmd, p.log = cmd, &log
}

// startServer starts `sched server --node-id ID --data-dir DIR/data-ID
// --bind ADDR` with extra flags.
func (c *opCluster) startServer(id, addr string, extra ...string) *opProc {
	c.t.Helper()
	args := append([]string{"server", "--node-id", id, "--data-dir", c.dataDir(id), "--bind", addr,
		"--log-level", "warn"}, extra...)
	p := &opProc{id: id, addr: addr, args: args}
	c.launch(p)
	c.servers = append(c.servers, p)
	return p
}

// dataDir is server id's data dir.
func (c *opCluster) dataDir(id string) string { return filepath.Join(c.dir, "data-"+id) }

// startAgent starts `sched agent --servers ... --id ID` against the
// servers running now.
func (c *opCluster) startAgent(id string) *opProc {
	c.t.Helper()
	u := currentUser(c.t)
	p := &opProc{id: id, args: []string{"agent", "--servers", strings.Join(c.addrs(), ","), "--id", id, "--no-gpu",
		"--run-as", u, "--task-dir", filepath.Join(c.dir, "tasks-"+id), "--log-level", "warn"}}
	if err := os.MkdirAll(filepath.Join(c.dir, "tasks-"+id), 0o755); err != nil {
		c.t.Fatal(err)
	}
	c.launch(p)
	c.agents = append(c.agents, p)
	return p
}

// server is the running server with this id.
func (c *opCluster) server(id string) *opProc {
	c.t.Helper()
	for _, p := range c.servers {
		if p.id == id {
			return p
		}
	}
	c.t.Fatalf("no server %s", id)
	return nil
}

// kill9 kills p with SIGKILL and reaps it.
func (c *opCluster) kill9(p *opProc) {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// stop sends p SIGTERM and waits for it to exit (SIGKILL after 20 s).
func (c *opCluster) stop(p *opProc) {
	c.t.Helper()
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-done
		c.t.Fatalf("server %s did not stop within 20 s of SIGTERM", p.id)
	}
}

// forget kills server id for good: it is no longer addressed.
func (c *opCluster) forget(id string) {
	p := c.server(id)
	c.kill9(p)
	c.servers = slices.DeleteFunc(c.servers, func(q *opProc) bool { return q == p })
	c.ended = append(c.ended, p)
}

// detach stops addressing server id (it is no longer a member) but leaves
// it running.
func (c *opCluster) detach(id string) {
	p := c.server(id)
	c.servers = slices.DeleteFunc(c.servers, func(q *opProc) bool { return q == p })
	c.ended = append(c.ended, p)
}

// attach addresses a detached server again.
func (c *opCluster) attach(p *opProc) {
	c.ended = slices.DeleteFunc(c.ended, func(q *opProc) bool { return q == p })
	c.servers = append(c.servers, p)
}

// addrs are the addresses of the servers addressed (not killed for good
// or detached).
func (c *opCluster) addrs() []string {
	var a []string
	for _, p := range c.servers {
		a = append(a, p.addr)
	}
	return a
}

// sched runs the CLI with SCHED_ADDR naming every server (it fails over).
func (c *opCluster) sched(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(schedBin, args...)
	cmd.Env = append(os.Environ(), "SCHED_ADDR="+strings.Join(c.addrs(), ","))
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// must is sched that fails the test on an error.
func (c *opCluster) must(args ...string) string {
	c.t.Helper()
	out, stderr, err := c.sched(args...)
	if err != nil {
		c.t.Fatalf("sched %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// mustJSON runs sched with -o json and decodes its output into v.
func (c *opCluster) mustJSON(v any, args ...string) {
	c.t.Helper()
	out := c.must(append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("sched %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// eventually retries f until it returns nil, or fails the test after d.
func (c *opCluster) eventually(what string, d time.Duration, f func() error) {
	c.t.Helper()
	retryFor(c.t, what, d, f, func() string { return "" })
}

// logs is every process's output so far, for a failing test.
func (c *opCluster) logs() string {
	var b strings.Builder
	for _, p := range slices.Concat(c.servers, c.ended, c.agents) {
		if p.log != nil {
			fmt.Fprintf(&b, "--- %s\n%s", p.id, p.log.String())
		}
	}
	return b.String()
}

// opMember is a server in `server members -o json`.
type opMember struct {
	ID          string `json:"id"`
	Address     string `json:"address"`
	Suffrage    string `json:"suffrage"`
	Leader      bool   `json:"leader"`
	Version     string `json:"version"`
	StateFormat int    `json:"state_format"`
}

// members is `server members -o json`, asked of the server at addr (any
// server when addr is "").
func (c *opCluster) members(addr string) ([]opMember, error) {
	args := []string{"-o", "json", "server", "members"}
	if addr != "" {
		args = append([]string{"--addr", addr}, args...)
	}
	out, stderr, err := c.sched(args...)
	if err != nil {
		return nil, fmt.Errorf("server members: %v: %s", err, stderr)
	}
	var resp struct {
		Members []opMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("server members -o json: %v: %s", err, out)
	}
	return resp.Members, nil
}

// peers is `operator raft list-peers` as printed: node id -> voter column.
func (c *opCluster) peers() (map[string]string, string, error) {
	out, stderr, err := c.sched("operator", "raft", "list-peers")
	if err != nil {
		return nil, "", fmt.Errorf("list-peers: %v: %s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NODE") {
		return nil, out, fmt.Errorf("list-peers printed no table: %q", out)
	}
	m := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 4 {
			return nil, out, fmt.Errorf("list-peers row %q", l)
		}
		m[f[0]] = f[3]
	}
	return m, out, nil
}

// leader is the id of the server that leads now.
func (c *opCluster) leader() string {
	c.t.Helper()
	var id string
	c.eventually("a leader", 30*time.Second, func() error {
		ms, err := c.members("")
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Leader {
				id = m.ID
				return nil
			}
		}
		return fmt.Errorf("no leader among %+v", ms)
	})
	return id
}

// waitHealthy waits until the servers running now are exactly the raft
// voters, list-peers says so, one leads, and every one of them answers
// (members carries its version) and serves reads.
func (c *opCluster) waitHealthy(within time.Duration) {
	c.t.Helper()
	want := map[string]string{}
	for _, p := range c.servers {
		want[p.id] = p.addr
	}
	c.eventually("a healthy cluster of "+strings.Join(slices.Sorted(maps.Keys(want)), ","), within, func() error {
		ms, err := c.members("")
		if err != nil {
			return err
		}
		leaders := 0
		got := map[string]string{}
		for _, m := range ms {
			if m.Suffrage != "voter" {
				return fmt.Errorf("%s is a %s", m.ID, m.Suffrage)
			}
			if m.Version == "" || m.StateFormat == 0 {
				return fmt.Errorf("%s does not answer (no version): %+v", m.ID, m)
			}
			if m.Leader {
				leaders++
			}
			got[m.ID] = m.Address
		}
		if !reflect.DeepEqual(got, want) || leaders != 1 {
			return fmt.Errorf("members %+v, want %v with one leader", ms, want)
		}
		peers, out, err := c.peers()
		if err != nil {
			return err
		}
		for id := range want {
			if peers[id] != "true" {
				return fmt.Errorf("list-peers does not show %s as a voter:\n%s", id, out)
			}
		}
		if len(peers) != len(want) {
			return fmt.Errorf("list-peers shows other servers:\n%s", out)
		}
		for _, p := range c.servers {
			if _, stderr, err := c.sched("--addr", p.addr, "job", "list"); err != nil {
				return fmt.Errorf("%s does not serve job list: %v %s", p.id, err, stderr)
			}
		}
		return nil
	})
}

// waitAgentsUp waits until `agent list` shows every agent up.
func (c *opCluster) waitAgentsUp(within time.Duration) {
	c.t.Helper()
	c.eventually("agents up", within, func() error {
		as, err := c.agentList()
		if err != nil {
			return err
		}
		for _, p := range c.agents {
			if a, ok := as[p.id]; !ok || a.State != "up" {
				return fmt.Errorf("agent %s: %+v", p.id, a)
			}
		}
		return nil
	})
}

// opAgent is an agent in `agent list -o json`.
type opAgent struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	RunningTasks int    `json:"running_tasks"`
	Ineligible   bool   `json:"ineligible"`
	Fingerprint  struct {
		Capacity struct {
			CPUMillis int64 `json:"cpu_millis"`
		} `json:"capacity"`
	} `json:"fingerprint"`
	Drain *struct {
		StartedMs  int64 `json:"started_unix_ms"`
		DeadlineMs int64 `json:"deadline_unix_ms"`
		Complete   bool  `json:"complete"`
	} `json:"drain"`
}

// agentList is `agent list -o json` by agent id.
func (c *opCluster) agentList() (map[string]opAgent, error) {
	out, stderr, err := c.sched("-o", "json", "agent", "list")
	if err != nil {
		return nil, fmt.Errorf("agent list: %v: %s", err, stderr)
	}
	var resp struct {
		Agents []opAgent `json:"agents"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("agent list -o json: %v: %s", err, out)
	}
	m := map[string]opAgent{}
	for _, a := range resp.Agents {
		m[a.ID] = a
	}
	return m, nil
}

// halfAgentCPU is a task's cpu ask ("1000m") that gives every agent two
// slots, whatever the host's core count: half the smallest capacity.
func (c *opCluster) halfAgentCPU() string {
	c.t.Helper()
	as, err := c.agentList()
	if err != nil {
		c.t.Fatal(err)
	}
	least := int64(0)
	for _, a := range as {
		if m := a.Fingerprint.Capacity.CPUMillis; least == 0 || m < least {
			least = m
		}
	}
	if least < 2 {
		c.t.Fatalf("agents offer no cpu to split: %+v", as)
	}
	return fmt.Sprintf("%dm", least/2)
}

func abs64(v int64) int64 { return max(v, -v) }

// agentRow is an agent's line of `agent list` as printed.
func (c *opCluster) agentRow(id string) string {
	c.t.Helper()
	for _, l := range strings.Split(c.must("agent", "list"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == id {
			return l
		}
	}
	c.t.Fatalf("agent list has no row for %s", id)
	return ""
}

// opJob is `job show -o json` with the counters that say whether anything
// failed or was lost.
type opJob struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Counts struct {
		Total     int `json:"total"`
		Queued    int `json:"queued"`
		Running   int `json:"running"`
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
	} `json:"counts"`
	Tasks []struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		State        string `json:"state"`
		RetriesUsed  int    `json:"retries_used"`
		LostAttempts int    `json:"lost_attempts"`
		Attempts     []struct {
			Number       int    `json:"number"`
			AgentID      string `json:"agent_id"`
			Outcome      string `json:"outcome"`
			FailureClass string `json:"failure_class"`
			Error        string `json:"error"`
			PlacedMs     int64  `json:"placed_unix_ms"`
			StartedMs    int64  `json:"started_unix_ms"`
			FinishedMs   int64  `json:"finished_unix_ms"`
		} `json:"attempts"`
	} `json:"tasks"`
}

func (c *opCluster) job(id string) (opJob, error) {
	var j opJob
	out, stderr, err := c.sched("-o", "json", "job", "show", id)
	if err != nil {
		return j, fmt.Errorf("job show %s: %v: %s", id, err, stderr)
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return j, fmt.Errorf("job show %s -o json: %v: %s", id, err, out)
	}
	return j, nil
}

// submit submits a job file and returns the job's id.
func (c *opCluster) submit(file string) string {
	c.t.Helper()
	var resp struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	c.mustJSON(&resp, "job", "submit", file)
	if len(resp.Jobs) != 1 || resp.Jobs[0].ID == "" {
		c.t.Fatalf("submit %s: %+v", file, resp)
	}
	return resp.Jobs[0].ID
}

// waitJob waits until job id is in state and returns it.
func (c *opCluster) waitJob(id, state string, within time.Duration) opJob {
	c.t.Helper()
	var j opJob
	c.eventually("job "+id+" "+state, within, func() error {
		var err error
		if j, err = c.job(id); err != nil {
			return err
		}
		if j.State != state {
			return fmt.Errorf("job %s is %s (%s), counts %+v", id, j.State, j.Reason, j.Counts)
		}
		return nil
	})
	return j
}

// checkClean fails the test unless every task of j succeeded on its first
// attempt with no retry used and nothing lost or failed.
func checkClean(t *testing.T, j opJob, tasks int) {
	t.Helper()
	if j.State != "succeeded" || j.Counts.Total != tasks || j.Counts.Succeeded != tasks || j.Counts.Failed != 0 || len(j.Tasks) != tasks {
		t.Fatalf("job %s: %s (%s), counts %+v, %d tasks; want %d succeeded, none failed", j.ID, j.State, j.Reason, j.Counts, len(j.Tasks), tasks)
	}
	for _, task := range j.Tasks {
		if task.State != "succeeded" || task.RetriesUsed != 0 || task.LostAttempts != 0 || len(task.Attempts) != 1 ||
			task.Attempts[0].Outcome != "succeeded" || task.Attempts[0].FailureClass != "" {
			t.Fatalf("task %s (%s) of job %s did not run once cleanly: state %s, retries used %d, lost %d, attempts %+v",
				task.ID, task.Name, j.ID, task.State, task.RetriesUsed, task.LostAttempts, task.Attempts)
		}
	}
}

// jobList is `job list -o json` as generic values, keyed by job id.
func (c *opCluster) jobList(addr string) (map[string]map[string]any, error) {
	args := []string{"-o", "json", "job", "list"}
	if addr != "" {
		args = append([]string{"--addr", addr}, args...)
	}
	out, stderr, err := c.sched(args...)
	if err != nil {
		return nil, fmt.Errorf("job list: %v: %s", err, stderr)
	}
	var resp struct {
		Jobs []map[string]any `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("job list -o json: %v: %s", err, out)
	}
	m := map[string]map[string]any{}
	for _, j := range resp.Jobs {
		id, _ := j["id"].(string)
		m[id] = j
	}
	return m, nil
}

// poolQuotas is `pool tree -o json` reduced to what an operator set: each
// pool's path, guaranteed and max (usage and queue lengths left out).
func (c *opCluster) poolQuotas(addr string) (map[string]map[string]any, error) {
	args := []string{"-o", "json", "pool", "tree"}
	if addr != "" {
		args = append([]string{"--addr", addr}, args...)
	}
	out, stderr, err := c.sched(args...)
	if err != nil {
		return nil, fmt.Errorf("pool tree: %v: %s", err, stderr)
	}
	var resp struct {
		Pools []map[string]any `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("pool tree -o json: %v: %s", err, out)
	}
	m := map[string]map[string]any{}
	for _, p := range resp.Pools {
		delete(p, "usage")
		delete(p, "queued_tasks")
		delete(p, "running_tasks")
		path, _ := p["path"].(string)
		m[path] = p
	}
	return m, nil
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestOperateThreeServerCluster runs the operations of issue 14 on real
// processes: drain, backup and restore, membership (one cluster, in that
// order), then a rolling restart of a cluster grown from the fixture data
// dir of the earlier release.
func TestOperateThreeServerCluster(t *testing.T) {
	t.Run("drain-restore-membership", testDrainRestoreMembership)
	t.Run("rolling-upgrade-from-fixture", testRollingUpgradeFromFixture)
}

func testDrainRestoreMembership(t *testing.T) {
	c := newOpCluster(t)
	var addrs, peers []string
	for i := 1; i <= 3; i++ {
		a := freeAddr(t)
		addrs = append(addrs, a)
		peers = append(peers, fmt.Sprintf("s%d=%s", i, a))
	}
	const deadAfter = 3 * time.Second
	serverFlags := []string{"--peers", strings.Join(peers, ","), "--lease", "5s", "--dead-server-timeout", deadAfter.String()}
	for i, a := range addrs {
		c.startServer(fmt.Sprintf("s%d", i+1), a, serverFlags...)
	}
	c.waitHealthy(30 * time.Second)
	c.startAgent("a1")
	c.startAgent("a2")
	c.waitAgentsUp(30 * time.Second)

	t.Run("drain", func(t *testing.T) { stepDrain(t, c) })
	if t.Failed() {
		return
	}
	t.Run("backup-restore", func(t *testing.T) { stepBackupRestore(t, c, serverFlags) })
	if t.Failed() {
		return
	}
	t.Run("membership", func(t *testing.T) { stepMembership(t, c, deadAfter) })
}

// stepDrain drains an agent with running tasks of a job that has more
// tasks than one agent can run at once.
func stepDrain(t *testing.T, c *opCluster) {
	c.t = t
	const tasks = 8 // two agents of two slots each
	long := writeJob(t, fmt.Sprintf("name: long\ntasks:\n  - name: nap\n    count: %d\n    command: [sleep, \"3\"]\n    resources: {cpu: %s}\n",
		tasks, c.halfAgentCPU()))
	id := c.submit(long)
	var victim string
	c.eventually("a task of the long job running", 30*time.Second, func() error {
		j, err := c.job(id)
		if err != nil {
			return err
		}
		for _, task := range j.Tasks {
			for _, a := range task.Attempts {
				if a.StartedMs != 0 && a.FinishedMs == 0 {
					victim = a.AgentID
					return nil
				}
			}
		}
		return fmt.Errorf("nothing started yet: %+v", j.Counts)
	})
	out := c.must("agent", "drain", victim, "--deadline", "1h")
	if !strings.Contains(out, "draining") {
		t.Fatalf("agent drain %s printed %q", victim, out)
	}
	as, err := c.agentList()
	if err != nil {
		t.Fatal(err)
	}
	drain := as[victim].Drain
	if drain == nil || drain.StartedMs == 0 || !as[victim].Ineligible ||
		abs64(drain.DeadlineMs-drain.StartedMs-time.Hour.Milliseconds()) > 5000 {
		t.Fatalf("agent list -o json after a drain with a deadline of 1h: %+v", as[victim])
	}
	if row := c.agentRow(victim); !strings.Contains(row, "draining") && !strings.Contains(row, "drained") {
		t.Fatalf("agent list does not show %s draining: %q", victim, row)
	}
	for id2, a := range as {
		if id2 != victim && (a.Drain != nil || a.Ineligible) {
			t.Fatalf("the other agent %s is drained too: %+v", id2, a)
		}
	}
	j := c.waitJob(id, "succeeded", 90*time.Second)
	checkClean(t, j, tasks)
	var letFinish, afterDrain int
	for _, task := range j.Tasks {
		a := task.Attempts[0]
		switch {
		case a.AgentID == victim && a.PlacedMs >= drain.StartedMs:
			t.Fatalf("task %s placed on the draining agent %s at %d, after the drain at %d", task.ID, victim, a.PlacedMs, drain.StartedMs)
		case a.AgentID == victim && a.FinishedMs > drain.StartedMs:
			letFinish++ // it ran when the drain began and was let finish
		case a.PlacedMs >= drain.StartedMs:
			afterDrain++
		}
	}
	if letFinish == 0 || afterDrain == 0 {
		t.Fatalf("the drain did not happen under load: %d tasks of %s finished after it, %d placed elsewhere after it",
			letFinish, victim, afterDrain)
	}
	t.Logf("drained %s: %d running tasks finished on it, %d tasks placed on the other agent after the drain", victim, letFinish, afterDrain)
	c.eventually("agent list shows "+victim+" drained", 20*time.Second, func() error {
		if row := c.agentRow(victim); !strings.Contains(row, "drained") {
			return fmt.Errorf("row %q", row)
		}
		return nil
	})
	// Back in service for the next steps.
	c.must("agent", "eligibility", victim, "on")
	as, err = c.agentList()
	if err != nil {
		t.Fatal(err)
	}
	if a := as[victim]; a.Drain != nil || a.Ineligible {
		t.Fatalf("agent %s after eligibility on: %+v", victim, a)
	}
}

// stepBackupRestore saves a snapshot, loses every server and its data
// dir, restores into three fresh servers and finds every job and pool.
func stepBackupRestore(t *testing.T, c *opCluster, serverFlags []string) {
	c.t = t
	c.must("pool", "create", "studio", "--guaranteed", "cpu=1", "--max", "cpu=4,memory=8Gi")
	c.must("pool", "create", "studio/ingest", "--guaranteed", "cpu=1", "--max", "cpu=2")
	c.must("pool", "create", "archive", "--max", "cpu=1")
	ingest := c.submit(writeJob(t, "name: ingest\npool: studio/ingest\ntasks:\n  - name: t\n    count: 3\n    command: [echo, ingested]\n    resources: {cpu: 1}\n"))
	c.waitJob(ingest, "succeeded", 30*time.Second)
	parked := c.submit(writeJob(t, "name: parked\npool: archive\ntasks:\n  - name: t\n    command: [sleep, \"60\"]\n    resources: {cpu: 1}\n"))
	c.must("job", "cancel", parked)
	c.waitJob(parked, "cancelled", 30*time.Second)

	file := filepath.Join(t.TempDir(), "farm.snap")
	if out := c.must("operator", "snapshot", "save", file); !strings.Contains(out, "Saved snapshot of index") {
		t.Fatalf("snapshot save printed %q", out)
	}
	jobs, err := c.jobList("")
	if err != nil {
		t.Fatal(err)
	}
	pools, err := c.poolQuotas("")
	if err != nil {
		t.Fatal(err)
	}
	// And each job whole: its tasks and every attempt's timeline.
	shown := map[string]string{}
	for id := range jobs {
		shown[id] = c.must("-o", "json", "job", "show", id)
	}
	var sum struct {
		Jobs int `json:"jobs"`
	}
	c.mustJSON(&sum, "operator", "snapshot", "inspect", file)
	if sum.Jobs != len(jobs) || len(jobs) < 3 || pools["studio/ingest"] == nil || pools["archive"] == nil {
		t.Fatalf("before the loss: %d jobs listed, %d in the snapshot, pools %s", len(jobs), sum.Jobs, asJSON(pools))
	}

	// Lose every server and its disk; start three fresh ones.
	for _, p := range c.servers {
		c.kill9(p)
	}
	for _, p := range c.servers {
		if err := os.RemoveAll(c.dataDir(p.id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range c.servers {
		c.launch(p)
	}
	c.waitHealthy(30 * time.Second)
	if now, err := c.jobList(""); err != nil || len(now) != 0 {
		t.Fatalf("the fresh cluster is not empty: %v %s", err, asJSON(now))
	}
	if out := c.must("operator", "snapshot", "restore", file); !strings.Contains(out, fmt.Sprintf("%d jobs", len(jobs))) {
		t.Fatalf("snapshot restore printed %q", out)
	}
	// Every server serves the same jobs and pools as before the loss.
	for _, p := range c.servers {
		c.eventually("the restored state on "+p.id, 30*time.Second, func() error {
			gotJobs, err := c.jobList(p.addr)
			if err != nil {
				return err
			}
			gotPools, err := c.poolQuotas(p.addr)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(gotJobs, jobs) {
				return fmt.Errorf("jobs\n%s\nwant\n%s", asJSON(gotJobs), asJSON(jobs))
			}
			if !reflect.DeepEqual(gotPools, pools) {
				return fmt.Errorf("pools\n%s\nwant\n%s", asJSON(gotPools), asJSON(pools))
			}
			return nil
		})
	}
	for id, before := range shown {
		if after := c.must("-o", "json", "job", "show", id); after != before {
			t.Fatalf("job %s after the restore:\n%s\nbefore the loss:\n%s", id, after, before)
		}
	}
	// The restored farm takes new work, in a restored pool. The restored
	// agent records say "up" as they were when saved, and the leader gives
	// each a lease to reconnect: work it places on one before that agent's
	// hello is delivered at the hello, not lost.
	c.waitAgentsUp(30 * time.Second)
	next := c.submit(writeJob(t, "name: next\npool: archive\ntasks:\n  - name: t\n    count: 4\n    command: [echo, again]\n    resources: {cpu: 1}\n"))
	if jobs[next] != nil {
		t.Fatalf("the new job got the id %s of a restored job", next)
	}
	checkClean(t, c.waitJob(next, "succeeded", 60*time.Second), 4)
}

// stepMembership kills a follower for good: the leader removes it after
// the dead-server timeout, the two left serve, and a new server joins as
// a voter.
func stepMembership(t *testing.T, c *opCluster, deadAfter time.Duration) {
	c.t = t
	lead := c.leader()
	var gone string
	for _, p := range c.servers {
		if p.id != lead {
			gone = p.id
			break
		}
	}
	killed := time.Now()
	c.forget(gone)
	c.eventually(gone+" removed from the configuration", deadAfter+40*time.Second, func() error {
		peers, out, err := c.peers()
		if err != nil {
			return err
		}
		if _, ok := peers[gone]; ok {
			return fmt.Errorf("list-peers still shows %s:\n%s", gone, out)
		}
		ms, err := c.members("")
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.ID == gone {
				return fmt.Errorf("members still shows %s", gone)
			}
		}
		return nil
	})
	took := time.Since(killed)
	if took < deadAfter {
		t.Fatalf("%s removed %s after it was killed, before the dead-server timeout %s", gone, took, deadAfter)
	}
	t.Logf("%s killed for good: removed after %s (timeout %s)", gone, took.Round(100*time.Millisecond), deadAfter)
	c.waitHealthy(30 * time.Second)
	two := c.submit(writeJob(t, "name: two\ntasks:\n  - name: t\n    count: 3\n    command: [echo, two]\n    resources: {cpu: 1}\n"))
	checkClean(t, c.waitJob(two, "succeeded", 60*time.Second), 3)

	// A new server joins through the two left, as the README says.
	c.startServer("s4", freeAddr(t), "--join", strings.Join(c.addrs(), ","), "--lease", "5s",
		"--dead-server-timeout", deadAfter.String())
	c.waitHealthy(60 * time.Second)
	four := c.server("s4")
	if j, err := c.jobList(four.addr); err != nil || j[two] == nil {
		t.Fatalf("the new server does not serve the jobs: %v %s", err, asJSON(j))
	}
	// The three voters keep serving: a job submitted through the new one runs.
	out, stderr, err := c.sched("--addr", four.addr, "-o", "json", "job", "submit",
		writeJob(t, "name: four\ntasks:\n  - name: t\n    command: [echo, four]\n"))
	if err != nil {
		t.Fatalf("submit through s4: %v %s", err, stderr)
	}
	var resp struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Jobs) != 1 {
		t.Fatalf("submit through s4: %v %s", err, out)
	}
	checkClean(t, c.waitJob(resp.Jobs[0].ID, "succeeded", 60*time.Second), 1)

	// An operator retires a live server: `server remove` takes it out, the
	// two left keep a quorum and serve while it still runs; it stops on
	// SIGTERM. Started again with --join on its data dir, it joins again.
	if out := c.must("server", "remove", "s4"); !strings.Contains(out, "Removed server s4") {
		t.Fatalf("server remove s4 printed %q", out)
	}
	c.detach("s4")
	c.waitHealthy(30 * time.Second)
	three := c.submit(writeJob(t, "name: three\ntasks:\n  - name: t\n    count: 2\n    command: [echo, three]\n"))
	checkClean(t, c.waitJob(three, "succeeded", 60*time.Second), 2)
	c.stop(four)
	c.attach(four)
	c.launch(four)
	c.waitHealthy(60 * time.Second)
	if j, err := c.jobList(four.addr); err != nil || j[three] == nil {
		t.Fatalf("s4 back does not serve the jobs made while it was out: %v %s", err, asJSON(j))
	}
}

// The fixture data dir of the earlier release (see
// scheduler/server/fixture_test.go): one server, s1, at fixtureAddr in its
// raft configuration.
const (
	fixtureDir  = "../../scheduler/server/testdata/fixture-v1"
	fixtureAddr = "127.0.0.1:47431"
)

// testRollingUpgradeFromFixture starts s1 on a copy of the fixture, joins
// two fresh servers to it, and restarts every server in turn (followers
// with SIGTERM, the leader with kill -9) while a job runs: the fixture's
// jobs stay served and the job finishes with no failed task.
func testRollingUpgradeFromFixture(t *testing.T) {
	var want struct {
		Jobs  map[string]string `json:"jobs"`
		Pools []string          `json:"pools"`
	}
	data, err := os.ReadFile(filepath.Join(fixtureDir, "expect.json"))
	if err != nil {
		t.Fatalf("the fixture: %v", err)
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	c := newOpCluster(t)
	if err := os.CopyFS(c.dataDir("s1"), os.DirFS(fixtureDir)); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(c.dataDir("s1"), "expect.json"))
	if err := filepath.WalkDir(c.dataDir("s1"), func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			mode := os.FileMode(0o600)
			if d.IsDir() {
				mode = 0o700
			}
			err = os.Chmod(p, mode) // as the server writes its own
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The fixture's raft configuration names s1 at fixtureAddr, so s1 must
	// listen there. Another test (scheduler/server's fixture test, run in
	// parallel by go test ./...) may hold it for a moment: wait for it, and
	// start s1 again if that test took it in between.
	flags := []string{"--lease", "5s"}
	for deadline := time.Now().Add(90 * time.Second); ; {
		c.eventually("the fixture's address "+fixtureAddr+" free", time.Until(deadline), func() error {
			ln, err := net.Listen("tcp", fixtureAddr)
			if err == nil {
				ln.Close()
			}
			return err
		})
		s1 := c.startServer("s1", fixtureAddr, flags...)
		for !strings.Contains(s1.log.String(), "address already in use") {
			if _, err := c.members(fixtureAddr); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
			if time.Now().After(deadline) {
				t.Fatalf("s1 on the fixture does not answer:\n%s", s1.log.String())
			}
		}
		if !strings.Contains(s1.log.String(), "address already in use") {
			break
		}
		c.forget("s1")
		c.ended = slices.DeleteFunc(c.ended, func(q *opProc) bool { return q == s1 })
		t.Logf("%s was taken again; starting s1 once more", fixtureAddr)
	}
	c.waitHealthy(30 * time.Second)
	c.startServer("s2", freeAddr(t), append([]string{"--join", fixtureAddr}, flags...)...)
	c.startServer("s3", freeAddr(t), append([]string{"--join", fixtureAddr}, flags...)...)
	c.waitHealthy(60 * time.Second)
	checkFixture := func(addr string, after bool) error {
		jobs, err := c.jobList(addr)
		if err != nil {
			return err
		}
		for id, st := range want.Jobs {
			j := jobs[id]
			if j == nil {
				return fmt.Errorf("the fixture's job %s is gone", id)
			}
			wantSt := strings.ToLower(strings.TrimPrefix(st, "JOB_STATE_"))
			if after && wantSt == "running" {
				wantSt = "succeeded" // its tasks have run by now
			}
			if got, _ := j["state"].(string); got != wantSt && !(wantSt == "running" && (got == "queued" || got == "succeeded")) {
				return fmt.Errorf("the fixture's job %s is %s, want %s", id, got, wantSt)
			}
		}
		pools, err := c.poolQuotas(addr)
		if err != nil {
			return err
		}
		if got := slices.Sorted(maps.Keys(pools)); !reflect.DeepEqual(got, want.Pools) {
			return fmt.Errorf("pools %v, want the fixture's %v", got, want.Pools)
		}
		return nil
	}
	for _, p := range c.servers {
		c.eventually("the fixture's state on "+p.id, 20*time.Second, func() error { return checkFixture(p.addr, false) })
	}
	c.startAgent("b1")
	c.startAgent("b2")
	c.waitAgentsUp(30 * time.Second)
	for id, st := range want.Jobs {
		if st == "JOB_STATE_RUNNING" || st == "JOB_STATE_QUEUED" {
			c.waitJob(id, "succeeded", 60*time.Second) // the fixture's unfinished work runs to its end
		}
	}

	// A job that cannot end before the last server is back: two of its
	// tasks wait for the gate (for two minutes at most), the others keep
	// being placed while the servers restart.
	gate := filepath.Join(c.dir, "gate")
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) }) // runs first: no task outlives the test
	const steady, gated = 12, 2
	id := c.submit(writeJob(t, fmt.Sprintf(`name: rolling
tasks:
  - name: steady
    count: %d
    command: [sleep, "2"]
    resources: {cpu: %[3]s}
  - name: gated
    count: %[2]d
    command: [sh, -c, 'i=0; while [ ! -e %[4]s ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done; [ -e %[4]s ]']
    resources: {cpu: %[3]s}
`, steady, gated, c.halfAgentCPU(), gate)))
	c.eventually("the rolling job running", 30*time.Second, func() error {
		j, err := c.job(id)
		if err != nil {
			return err
		}
		if j.Counts.Running == 0 {
			return fmt.Errorf("counts %+v", j.Counts)
		}
		return nil
	})
	lead := c.leader()
	var order []*opProc
	for _, p := range c.servers {
		if p.id != lead {
			order = append(order, p)
		}
	}
	order = append(order, c.server(lead)) // the leader last, as an operator would
	for _, p := range order {
		how := "SIGTERM"
		if p.id == lead {
			how = "kill -9"
			c.kill9(p)
		} else {
			c.stop(p)
		}
		// The two left keep serving while it is down.
		if _, err := c.job(id); err != nil {
			t.Fatalf("with %s down: %v", p.id, err)
		}
		c.launch(p)
		c.waitHealthy(60 * time.Second)
		// It serves (reads are local) the fixture's jobs and the new one.
		c.eventually(p.id+" caught up after its restart", 30*time.Second, func() error {
			if err := checkFixture(p.addr, false); err != nil {
				return err
			}
			if jobs, err := c.jobList(p.addr); err != nil || jobs[id] == nil {
				return fmt.Errorf("%s does not list %s: %v", p.id, id, err)
			}
			return nil
		})
		j, err := c.job(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s restarted (%s): job %s %s, counts %+v", p.id, how, id, j.State, j.Counts)
		if j.State != "running" && j.State != "queued" {
			t.Fatalf("the rolling job is %s (%s) after %s restarted", j.State, j.Reason, p.id)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// No task failed, used a retry or was lost: agents move to the new
	// leader within their lease, and what it placed on one before its
	// session moved is delivered at the hello.
	checkClean(t, c.waitJob(id, "succeeded", 90*time.Second), steady+gated)
	for _, p := range c.servers {
		c.eventually("the fixture's jobs on "+p.id+" after the upgrade", 20*time.Second, func() error {
			return checkFixture(p.addr, true)
		})
	}
	if ms, err := c.members(""); err != nil {
		t.Fatal(err)
	} else {
		for _, m := range ms {
			t.Logf("after the rolling restart: %s %s leader=%v %s state format %d", m.ID, m.Address, m.Leader, m.Version, m.StateFormat)
		}
	}
}
