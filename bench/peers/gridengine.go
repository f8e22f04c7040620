package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// GridEngineRoot is where Debian's gridengine packages install SGE_ROOT
// (programs under bin/ARCH and utilbin/ARCH, util/arch).
const GridEngineRoot = "/var/lib/gridengine"

// GridEngineMissing says which program of Grid Engine, or ip(8), this
// machine lacks, or returns nil when all are there.
func GridEngineMissing() error {
	for _, p := range []string{"ip", GridEngineRoot + "/util/arch", "/usr/lib/gridengine/sge_qmaster", "/usr/lib/gridengine/sge_execd", "/usr/lib/gridengine/qsub"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not found", p)
		}
	}
	return nil
}

// GridEngine is a private one-host Grid Engine cell: sge_qmaster and
// sge_execd started here, in the foreground, in a network namespace of
// their own that has only loopback, so that the cell (which binds every
// address and runs with security_mode none) is reachable from nowhere
// else. Its commands are started in that namespace too, straight from
// this process (no `ip netns exec` in between). A system-wide Grid Engine
// is never touched.
type GridEngine struct {
	Conf           GridEngineConfig
	arch           string
	ns             string
	nsFile         *os.File
	qmaster, execd *Daemon
}

// StartGridEngine sets up the cell in c.Dir, creates its network
// namespace and starts the daemons, then waits until the queue takes jobs.
// On error whatever started is stopped.
func StartGridEngine(ctx context.Context, c GridEngineConfig) (_ *GridEngine, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, filepath.Join(GridEngineRoot, "util", "arch")).Output()
	if err != nil {
		return nil, fmt.Errorf("grid engine arch: %w", err)
	}
	g := &GridEngine{Conf: c, arch: strings.TrimSpace(string(out)),
		ns: fmt.Sprintf("bbge%s%d", strconv.FormatInt(int64(os.Getpid()), 36), c.QmasterPort)}
	if err := g.writeCell(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.Stop(ctx)
		}
	}()
	if err := g.createNamespace(ctx); err != nil {
		return nil, err
	}
	if g.qmaster, err = g.startDaemon("sge_qmaster"); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, 100*time.Millisecond, "sge_qmaster", func() (bool, error) {
		if g.qmaster.Exited() {
			return false, fmt.Errorf("sge_qmaster exited (see %s)", filepath.Join(c.Dir, "sge_qmaster.out"))
		}
		_, err := g.Run(ctx, "qconf", "-sh")
		return err == nil, nil
	}); err != nil {
		return nil, err
	}
	type step struct {
		file, body string // written to Dir/file, whose path ends argv
		argv       []string
	}
	steps := []step{
		{"", "", []string{"qconf", "-as", "localhost"}},
		{"exechost", c.ExecHost(), []string{"qconf", "-Ae"}},
	}
	for i, q := range c.Queues() {
		steps = append(steps, step{fmt.Sprintf("queue%d", i), q, []string{"qconf", "-Aq"}})
	}
	for _, step := range steps {
		argv := step.argv
		if step.file != "" {
			p := filepath.Join(c.Dir, step.file)
			if err := os.WriteFile(p, []byte(step.body), 0o644); err != nil {
				return nil, fmt.Errorf("grid engine %s: %w", step.file, err)
			}
			argv = append(argv, p)
		}
		if _, err := g.Run(ctx, argv...); err != nil {
			return nil, err
		}
	}
	sched, err := g.Run(ctx, "qconf", "-ssconf")
	if err != nil {
		return nil, err
	}
	if sched, err = Override(sched, c.SchedulerTuning()); err != nil {
		return nil, err
	}
	schedPath := filepath.Join(c.Dir, "sched_conf")
	if err := os.WriteFile(schedPath, []byte(sched), 0o644); err != nil {
		return nil, fmt.Errorf("grid engine scheduler configuration: %w", err)
	}
	if _, err := g.Run(ctx, "qconf", "-Msconf", schedPath); err != nil {
		return nil, err
	}
	if g.execd, err = g.startDaemon("sge_execd"); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, 200*time.Millisecond, "grid engine queue "+GridEngineQueue+" up", func() (bool, error) {
		if g.execd.Exited() {
			return false, fmt.Errorf("sge_execd exited (see %s)", filepath.Join(c.Dir, "sge_execd.out"))
		}
		out, err := g.Run(ctx, "qstat", "-f", "-q", GridEngineQueue)
		return err == nil && QueueUp(out, GridEngineQueue+"@localhost"), nil
	}); err != nil {
		return nil, err
	}
	return g, nil
}

// QueueUp reports whether qstat -f's text shows the queue instance with a
// load reported and no state flags (not unknown, disabled or in error).
func QueueUp(qstatF, instance string) bool {
	for _, l := range strings.Split(qstatF, "\n") {
		f := strings.Fields(l)
		// queuename qtype resv/used/tot. load_avg arch [states]
		if len(f) >= 5 && f[0] == instance {
			return len(f) == 5 && f[3] != "-NA-"
		}
	}
	return false
}

// writeCell lays out SGE_ROOT (links to the package's programs), the
// cell's bootstrap, host name files and spools, and initialises its
// configuration from Debian's defaults with GlobalTuning.
func (g *GridEngine) writeCell(ctx context.Context) error {
	c := g.Conf
	for _, d := range []string{c.Common(), c.QmasterSpool(), c.ExecdSpool()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("grid engine dirs: %w", err)
		}
	}
	for _, d := range []string{"bin", "lib", "util", "utilbin"} {
		if err := os.Symlink(filepath.Join(GridEngineRoot, d), filepath.Join(c.Root(), d)); err != nil {
			return fmt.Errorf("grid engine root: %w", err)
		}
	}
	defaults, err := os.ReadFile("/usr/share/gridengine/default-configuration")
	if err != nil {
		return fmt.Errorf("grid engine default configuration: %w", err)
	}
	global, err := Override(string(defaults), append(c.GlobalTuning(), Setting{"execd_spool_dir", c.ExecdSpool()}))
	if err != nil {
		return err
	}
	for name, body := range map[string]string{
		filepath.Join(c.Common(), "bootstrap"):    c.Bootstrap(),
		filepath.Join(c.Common(), "act_qmaster"):  "localhost\n",
		filepath.Join(c.Common(), "host_aliases"): c.HostAliases(),
		filepath.Join(c.Dir, "global_conf"):       global,
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return fmt.Errorf("grid engine cell: %w", err)
		}
	}
	utilbin := filepath.Join(GridEngineRoot, "utilbin", g.arch) // spoolinit and spooldefaults
	for _, argv := range [][]string{
		{"spoolinit", "classic", "libspoolc", c.SpoolParams(), "init"},
		{"spooldefaults", "configuration", filepath.Join(c.Dir, "global_conf")},
		{"spooldefaults", "complexes", filepath.Join(GridEngineRoot, "util", "resources", "centry")},
		{"spooldefaults", "usersets", filepath.Join(GridEngineRoot, "util", "resources", "usersets")},
		{"spooldefaults", "managers", "root"},
	} {
		if _, err := runCmd(ctx, c.Env(g.arch), append([]string{filepath.Join(utilbin, argv[0])}, argv[1:]...)...); err != nil {
			return fmt.Errorf("grid engine cell: %w", err)
		}
	}
	return nil
}

// createNamespace creates the cell's network namespace with loopback up.
func (g *GridEngine) createNamespace(ctx context.Context) error {
	if _, err := runCmd(ctx, nil, "ip", "netns", "add", g.ns); err != nil {
		return fmt.Errorf("grid engine network namespace: %w", err)
	}
	f, err := os.Open(filepath.Join("/run/netns", g.ns))
	if err != nil {
		g.deleteNamespace()
		return fmt.Errorf("grid engine network namespace: %w", err)
	}
	g.nsFile = f
	if _, err := runCmd(ctx, nil, "ip", "-n", g.ns, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("grid engine network namespace: %w", err)
	}
	return nil
}

// deleteNamespace closes and deletes the cell's network namespace.
func (g *GridEngine) deleteNamespace() {
	if g.nsFile != nil {
		g.nsFile.Close()
		g.nsFile = nil
	}
	_ = exec.Command("ip", "netns", "delete", g.ns).Run()
}

// startInNamespace starts cmd in the cell's network namespace: from a
// goroutine locked to its own thread, which joins the namespace before
// the fork, so the child is born in it. The goroutine returns without
// unlocking, so the runtime ends that thread rather than reuse it (which is
// also why cmd must not ask for a parent-death signal: Linux sends it when
// the forking thread ends, that is at once).
func (g *GridEngine) startInNamespace(cmd *exec.Cmd) error {
	if g.nsFile == nil {
		return fmt.Errorf("start %s: grid engine network namespace not created", cmd.Path)
	}
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Pdeathsig != 0 {
		return fmt.Errorf("start %s: a parent-death signal would end it with the forking thread, at once", cmd.Path)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(g.nsFile.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("start %s: join network namespace: %w", cmd.Path, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// bin is the path of a Grid Engine program for this architecture (the
// program itself, not Debian's wrapper script, which works out the
// architecture with a shell script on every call).
func (g *GridEngine) bin(name string) string {
	return filepath.Join(GridEngineRoot, "bin", g.arch, name)
}

// startDaemon starts sge_qmaster or sge_execd in the foreground (SGE_ND)
// in the namespace, its output in Dir/NAME.out.
func (g *GridEngine) startDaemon(name string) (*Daemon, error) {
	cmd := exec.Command(g.bin(name))
	cmd.Env = append(append(os.Environ(), g.Conf.Env(g.arch)...), "SGE_ND=1")
	cmd.Dir = g.Conf.Dir
	return startDaemonCmd(name, filepath.Join(g.Conf.Dir, name+".out"), cmd, g.startInNamespace)
}

// Run runs a Grid Engine client command (qsub, qstat, qconf, qdel...)
// against this cell and returns its combined output.
func (g *GridEngine) Run(ctx context.Context, argv ...string) (string, error) {
	return runStarted(ctx, g.startInNamespace, g.Conf.Env(g.arch), append([]string{g.bin(argv[0])}, argv[1:]...)...)
}

// Version is the cell's Grid Engine version, e.g. "SGE 8.1.9".
func (g *GridEngine) Version(ctx context.Context) string {
	out, _ := g.Run(ctx, "qstat", "-help") // prints the version first, exits non-zero
	if l, _, _ := strings.Cut(out, "\n"); strings.HasPrefix(l, "SGE") {
		return strings.TrimSpace(l)
	}
	return "Grid Engine (version unknown)"
}

// QmasterPID is sge_qmaster's process id.
func (g *GridEngine) QmasterPID() int { return g.qmaster.PID() }

// Count returns how many entries qstat lists: a job, or a pending array's
// not yet started tasks as one entry, or each running array task.
func (g *GridEngine) Count(ctx context.Context) (int, error) {
	out, err := g.Run(ctx, "qstat", "-u", "*")
	if err != nil {
		return 0, err
	}
	return QstatEntries(out), nil
}

// QstatEntries counts the job lines of qstat's text (it prints nothing
// when there are none, else two header lines first).
func QstatEntries(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 { // a job line starts with its number
			if _, err := strconv.Atoi(f[0]); err == nil {
				n++
			}
		}
	}
	return n
}

// DeleteAll deletes every job of the cell and waits until none is left:
// first by qdel, so that sge_execd ends each job's processes (suspended
// ones too), then, for what is left after a minute, by qdel -f, which
// drops a job from qmaster's books whether or not its processes ended.
func (g *GridEngine) DeleteAll(ctx context.Context) error {
	empty := func() (bool, error) {
		n, err := g.Count(ctx)
		return n == 0, err
	}
	if done, err := empty(); err != nil || done {
		return err
	}
	if _, err := g.Run(ctx, "qdel", "-u", "*"); err != nil {
		return err
	}
	if err := waitFor(ctx, time.Minute, 100*time.Millisecond, "grid engine queue empty", empty); err == nil {
		return nil
	}
	if _, err := g.Run(ctx, "qdel", "-f", "-u", "*"); err != nil {
		return err
	}
	return waitFor(ctx, time.Minute, 200*time.Millisecond, "grid engine queue empty after qdel -f", empty)
}

// Stop deletes the jobs, shuts the daemons down (qconf -kej, which ends
// any job left with sge_execd, and -km; then by their PIDs) and deletes
// the network namespace.
func (g *GridEngine) Stop(ctx context.Context) {
	if g.qmaster != nil && !g.qmaster.Exited() {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		_ = g.DeleteAll(cctx)
		if g.execd != nil && !g.execd.Exited() {
			_, _ = g.Run(cctx, "qconf", "-kej", "localhost")
		}
		_, _ = g.Run(cctx, "qconf", "-km")
		cancel()
	}
	g.execd.Stop(syscall.SIGTERM, 10*time.Second)
	g.qmaster.Stop(syscall.SIGTERM, 10*time.Second)
	g.deleteNamespace()
}
