package peers

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Slurm is a private one-node Slurm cluster on loopback: its own munged
// (own key and socket), slurmctld and slurmd, all started here and
// stopped by their PIDs. A system-wide Slurm or munge is never touched.
type Slurm struct {
	Conf                SlurmConfig
	confPath            string
	munge, ctld, slurmd *Daemon
}

// StartSlurm starts munged, slurmctld and slurmd with c and waits until
// the node is idle. On error whatever started is stopped.
func StartSlurm(ctx context.Context, c SlurmConfig) (_ *Slurm, err error) {
	conf, err := c.Render()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"state", "spool", "munge"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("slurm dirs: %w", err)
		}
	}
	s := &Slurm{Conf: c, confPath: filepath.Join(c.Dir, "slurm.conf")}
	defer func() {
		if err != nil {
			s.Stop(ctx)
		}
	}()
	if err := os.WriteFile(s.confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("slurm.conf: %w", err)
	}
	// An empty plugstack.conf next to slurm.conf, so the system's spank
	// plugins stay out.
	if err := os.WriteFile(filepath.Join(c.Dir, "plugstack.conf"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("plugstack.conf: %w", err)
	}
	key := make([]byte, 128)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("munge key: %w", err)
	}
	md := filepath.Join(c.Dir, "munge")
	keyPath := filepath.Join(md, "munge.key")
	if err := os.WriteFile(keyPath, key, 0o400); err != nil {
		return nil, fmt.Errorf("munge key: %w", err)
	}
	s.munge, err = startDaemon("munged", filepath.Join(md, "munged.out"), nil, "munged", "--foreground", "--force",
		"--socket="+c.MungeSocket(), "--key-file="+keyPath, "--pid-file="+filepath.Join(md, "munged.pid"),
		"--log-file="+filepath.Join(md, "munged.log"), "--seed-file="+filepath.Join(md, "munged.seed"))
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 15*time.Second, 50*time.Millisecond, "munged socket", func() (bool, error) {
		if s.munge.Exited() {
			return false, fmt.Errorf("munged exited (see %s)", filepath.Join(md, "munged.out"))
		}
		_, err := os.Stat(c.MungeSocket())
		return err == nil, nil
	}); err != nil {
		return nil, err
	}
	s.ctld, err = startDaemon("slurmctld", filepath.Join(c.Dir, "slurmctld.out"), s.Env(), "slurmctld", "-D", "-c", "-f", s.confPath)
	if err != nil {
		return nil, err
	}
	s.slurmd, err = startDaemon("slurmd", filepath.Join(c.Dir, "slurmd.out"), s.Env(), "slurmd", "-D", "-N", "localhost", "-f", s.confPath)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, 200*time.Millisecond, "slurm node idle", func() (bool, error) {
		for _, d := range []*Daemon{s.ctld, s.slurmd} {
			if d.Exited() {
				return false, fmt.Errorf("%s exited (see its log under %s)", d.Name, c.Dir)
			}
		}
		out, err := s.Run(ctx, "sinfo", "-h", "-n", "localhost", "-o", "%t")
		return err == nil && strings.Contains(out, "idle"), nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Env is the environment Slurm's commands need to find this cluster.
func (s *Slurm) Env() []string { return []string{"SLURM_CONF=" + s.confPath} }

// CtldPID is slurmctld's process id.
func (s *Slurm) CtldPID() int { return s.ctld.PID() }

// Run runs a Slurm client command against this cluster.
func (s *Slurm) Run(ctx context.Context, argv ...string) (string, error) {
	return runCmd(ctx, s.Env(), argv...)
}

// RunRetried runs a Slurm client command like Run, and again (up to tries
// times in all, a moment apart) while it fails only because its
// connection to slurmctld was lost on the way (LostConnection). It is for
// filling a queue, where what ends up queued matters and not the call's
// time: a call whose reply was lost may have queued its job, so a retry
// can queue one more. It returns the output, how many times the call was
// retried, and the last error.
func (s *Slurm) RunRetried(ctx context.Context, tries int, argv ...string) (string, int, error) {
	return retryLost(ctx, tries, func() (string, error) { return s.Run(ctx, argv...) })
}

// retryLost calls run up to tries times while it fails with a lost
// connection, waiting 100 ms more before each retry.
func retryLost(ctx context.Context, tries int, run func() (string, error)) (string, int, error) {
	for retries := 0; ; retries++ {
		out, err := run()
		if err == nil || retries+1 >= tries || !LostConnection(err.Error()) {
			return out, retries, err
		}
		select {
		case <-ctx.Done():
			return out, retries, fmt.Errorf("%w (retry stopped: %v)", err, ctx.Err())
		case <-time.After(time.Duration(retries+1) * 100 * time.Millisecond):
		}
	}
}

// LostConnection reports whether a Slurm client command's message says
// that its connection to slurmctld failed, rather than that slurmctld
// refused the request: "Batch job submission failed: Broken pipe" came
// once, in the second of three runs of 10,000 held sbatch calls, and it
// lost that workload's figure.
func LostConnection(msg string) bool {
	for _, s := range []string{"Broken pipe", "Connection reset by peer", "Socket timed out", "Unable to contact slurm controller"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Count returns how many jobs squeue lists in the given states
// (comma-separated, e.g. "PD,R,CG"); a pending array counts once.
func (s *Slurm) Count(ctx context.Context, states string) (int, error) {
	out, err := s.Run(ctx, "squeue", "-h", "-t", states, "-o", "%i")
	if err != nil {
		return 0, err
	}
	return len(strings.Fields(out)), nil
}

// Active is the states of jobs not yet ended.
const Active = "PD,R,CG,CF,RQ,RS,S,RH,SE"

// CancelAll cancels every job of this private cluster and waits until
// none is left.
func (s *Slurm) CancelAll(ctx context.Context) error {
	if _, err := s.Run(ctx, "scancel", "--user=root"); err != nil {
		return err
	}
	return waitFor(ctx, 60*time.Second, 100*time.Millisecond, "slurm queue empty", func() (bool, error) {
		n, err := s.Count(ctx, Active)
		return n == 0, err
	})
}

// Stop cancels the jobs, then stops slurmd, slurmctld and munged.
func (s *Slurm) Stop(ctx context.Context) {
	if s.ctld != nil && !s.ctld.Exited() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = s.CancelAll(cctx)
		cancel()
	}
	s.slurmd.Stop(syscall.SIGTERM, 10*time.Second)
	s.ctld.Stop(syscall.SIGTERM, 10*time.Second)
	s.munge.Stop(syscall.SIGTERM, 5*time.Second)
}
