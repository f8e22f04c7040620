package peers

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testGEConfig(dir string) GridEngineConfig {
	return GridEngineConfig{Dir: dir, Hostname: "node1", QmasterPort: 6444, ExecdPort: 6445, Slots: 2, MaxArrayTasks: 100_001}
}

func TestGridEngineConfigValidate(t *testing.T) {
	ok := testGEConfig("/tmp/ge")
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*GridEngineConfig)
		want string
	}{
		"relative dir":   {func(c *GridEngineConfig) { c.Dir = "ge" }, "absolute path"},
		"no hostname":    {func(c *GridEngineConfig) { c.Hostname = "" }, "hostname"},
		"spaced host":    {func(c *GridEngineConfig) { c.Hostname = "a b" }, "hostname"},
		"same ports":     {func(c *GridEngineConfig) { c.ExecdPort = c.QmasterPort }, "distinct ports"},
		"port too large": {func(c *GridEngineConfig) { c.QmasterPort = 70000 }, "distinct ports"},
		"no slots":       {func(c *GridEngineConfig) { c.Slots = 0 }, "slots"},
		"tiny arrays":    {func(c *GridEngineConfig) { c.MaxArrayTasks = 1 }, "max_aj_tasks"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", name, err, tc.want)
		}
	}
}

func TestGridEngineConfigFiles(t *testing.T) {
	c := testGEConfig("/x")
	b := c.Bootstrap()
	for _, want := range []string{"admin_user              none\n", "spooling_method         classic\n",
		"spooling_params         /x/root/peers/common;/x/spool/qmaster\n", "qmaster_spool_dir       /x/spool/qmaster\n"} {
		if !strings.Contains(b, want) {
			t.Errorf("bootstrap lacks %q:\n%s", want, b)
		}
	}
	if got := c.HostAliases(); got != "localhost node1\n" {
		t.Errorf("host_aliases %q", got)
	}
	qs := c.Queues()
	if len(qs) != 1 {
		t.Fatalf("%d queues without Urgent, want 1", len(qs))
	}
	q := qs[0]
	for _, want := range []string{"qname                 batch.q\n", "hostlist              localhost\n", "slots                 2\n",
		"load_thresholds       NONE\n", "h_vmem                INFINITY\n"} {
		if !strings.Contains(q, want) {
			t.Errorf("queue lacks %q:\n%s", want, q)
		}
	}
	env := strings.Join(c.Env("lx-amd64"), " ")
	for _, want := range []string{"SGE_ROOT=/x/root", "SGE_CELL=peers", "SGE_ARCH=lx-amd64", "SGE_QMASTER_PORT=6444", "SGE_EXECD_PORT=6445"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %q", env, want)
		}
	}
	tuning := map[string]string{}
	for _, s := range c.Tuning() {
		tuning[s.Key] = s.Value
	}
	for k, v := range map[string]string{"global max_aj_tasks": "100001", "global min_uid": "0", "scheduler schedule_interval": "0:0:1",
		"scheduler flush_finish_sec": "1", "batch.q slots": "2"} {
		if tuning[k] != v {
			t.Errorf("tuning %s = %q, want %q (all: %v)", k, tuning[k], v, tuning)
		}
	}
	if _, ok := tuning["urgent.q slots"]; ok {
		t.Error("urgent.q in the tuning without Urgent")
	}

	c.Urgent = true
	qs = c.Queues()
	if len(qs) != 2 || !strings.Contains(qs[0], "subordinate_list      NONE\n") {
		t.Fatalf("with Urgent: %d queues, batch.q:\n%s", len(qs), qs[0])
	}
	for _, want := range []string{"qname                 urgent.q\n", "slots                 1\n", "subordinate_list      batch.q=1\n"} {
		if !strings.Contains(qs[1], want) {
			t.Errorf("urgent.q lacks %q:\n%s", want, qs[1])
		}
	}
	tuning = map[string]string{}
	for _, s := range c.Tuning() {
		tuning[s.Key] = s.Value
	}
	if tuning["urgent.q subordinate_list"] != "batch.q=1" || tuning["urgent.q slots"] != "1" || tuning["batch.q slots"] != "2" {
		t.Errorf("tuning with Urgent: %v", tuning)
	}
}

func TestOverride(t *testing.T) {
	conf := "# Version: 6.2\n#\nmin_uid                1000\nmax_aj_tasks           75000\nloglevel               log_warning\n"
	got, err := Override(conf, []Setting{{"min_uid", "0"}, {"max_aj_tasks", "200000"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "# Version: 6.2\n#\nmin_uid                      0\nmax_aj_tasks                 200000\nloglevel               log_warning\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := Override(conf, []Setting{{"no_such_key", "1"}}); err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("missing key: got %v, want an error naming it", err)
	}
	// A comment that mentions a key is not a setting of it.
	if _, err := Override("# min_gid is set below\n", []Setting{{"min_gid", "0"}}); err == nil {
		t.Error("a key only in a comment was taken as set")
	}
}

func TestQueueUp(t *testing.T) {
	head := "queuename                      qtype resv/used/tot. load_avg arch          states\n" +
		"---------------------------------------------------------------------------------\n"
	for name, tc := range map[string]struct {
		text string
		want bool
	}{
		"up":            {head + "batch.q@localhost              B     0/0/2          0.68     lx-amd64      \n", true},
		"busy":          {head + "batch.q@localhost              B     0/2/2          1.20     lx-amd64      \n", true},
		"unknown":       {head + "batch.q@localhost              B     0/0/2          -NA-     -NA-          au\n", false},
		"no load yet":   {head + "batch.q@localhost              B     0/0/2          -NA-     lx-amd64      \n", false},
		"disabled":      {head + "batch.q@localhost              B     0/0/2          0.10     lx-amd64      d\n", false},
		"other queue":   {head + "other.q@localhost              B     0/0/2          0.10     lx-amd64      \n", false},
		"empty":         {"", false},
		"qstat refused": {"error: commlib error: access denied\n", false},
	} {
		if got := QueueUp(tc.text, "batch.q@localhost"); got != tc.want {
			t.Errorf("%s: QueueUp = %v, want %v", name, got, tc.want)
		}
	}
}

func TestQstatEntries(t *testing.T) {
	out := "job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID \n" +
		"-----------------------------------------------------------------------------------------------------------------\n" +
		"      1 0.55500 true       root         r     12/04/2026 21:05:48 batch.q@localhost                  1 7\n" +
		"      1 0.55500 true       root         r     12/04/2026 21:05:48 batch.q@localhost                  1 8\n" +
		"      1 0.00000 true       root         qw    12/04/2026 21:05:48                                    1 9-10000:1\n" +
		"      2 0.00000 true       root         hqw   12/04/2026 21:05:49                                    1        \n"
	if n := QstatEntries(out); n != 4 {
		t.Errorf("QstatEntries = %d, want 4", n)
	}
	if n := QstatEntries(""); n != 0 {
		t.Errorf("empty qstat: %d entries", n)
	}
}

// TestGridEngineCell starts a private cell in its own network namespace,
// runs a job and an array through it and stops it. It needs root, ip(8)
// and Debian's gridengine-master, -exec and -client (make bench-peers
// installs them; scripts/install-gridengine.sh).
func TestGridEngineCell(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Grid Engine daemons")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, daemons as root)")
	}
	if err := GridEngineMissing(); err != nil {
		t.Skipf("%v (scripts/install-gridengine.sh)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	c := GridEngineConfig{Dir: t.TempDir(), Hostname: host, Slots: 2, MaxArrayTasks: 1000, Urgent: true}
	if c.QmasterPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	if c.ExecdPort, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	g, err := StartGridEngine(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			g.Stop(ctx)
		}
	}()
	if v := g.Version(ctx); !strings.HasPrefix(v, "SGE ") {
		t.Errorf("version %q", v)
	}
	marker := c.Dir + "/ran"
	if _, err := g.Run(ctx, "qsub", "-b", "y", "-o", "/dev/null", "-j", "y", "/usr/bin/touch", marker); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run(ctx, "qsub", "-b", "y", "-o", "/dev/null", "-j", "y", "-t", "1-5", "/bin/true"); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, 90*time.Second, 200*time.Millisecond, "jobs done", func() (bool, error) {
		n, err := g.Count(ctx)
		return n == 0, err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the job did not run: %v", err)
	}
	// Preemption: with batch.q full, a job in urgent.q starts and batch.q
	// is suspended by subordination (state S), its jobs with it.
	if _, err := g.Run(ctx, "qsub", "-q", GridEngineQueue, "-b", "y", "-o", "/dev/null", "-j", "y", "-t", "1-2", "/bin/sleep", "120"); err != nil {
		t.Fatal(err)
	}
	states := func(want string) error {
		return waitFor(ctx, 60*time.Second, 200*time.Millisecond, want, func() (bool, error) {
			out, err := g.Run(ctx, "qstat", "-s", "rs")
			return err == nil && strings.Count(out, want) >= 2, nil
		})
	}
	if err := states(" r "); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run(ctx, "qsub", "-q", GridEngineUrgentQueue, "-b", "y", "-o", "/dev/null", "-j", "y", "/bin/sleep", "120"); err != nil {
		t.Fatal(err)
	}
	if err := states(" S "); err != nil { // both fill tasks suspended by subordination
		out, _ := g.Run(ctx, "qstat", "-f")
		t.Fatalf("%v\n%s", err, out)
	}
	// The cell listens in its own namespace only: not on this one's loopback.
	if _, err := exec.CommandContext(ctx, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(c.QmasterPort)).CombinedOutput(); err == nil {
		t.Errorf("sge_qmaster's port %d answers on the host's loopback", c.QmasterPort)
	}
	qm, ex := g.qmaster, g.execd
	g.Stop(ctx)
	stopped = true
	if !qm.Exited() || !ex.Exited() {
		t.Error("a daemon outlived Stop")
	}
	// No job's process outlives the cell: the suspended fill tasks and the
	// urgent job ran `sleep 120` with this cell's marker in their
	// environment (SGE_ROOT).
	if left := processesWithEnv(t, "SGE_ROOT="+c.Root()); len(left) > 0 {
		t.Errorf("processes of the cell outlived Stop: %v", left)
	}
	if _, err := os.Stat("/run/netns/" + g.ns); err == nil {
		t.Errorf("network namespace %s outlived Stop", g.ns)
	}
}

// processesWithEnv lists the processes whose environment holds kv.
func processesWithEnv(t *testing.T, kv string) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, e := range strings.Split(string(env), "\x00") {
			if e == kv {
				cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
				out = append(out, d.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
				break
			}
		}
	}
	return out
}
