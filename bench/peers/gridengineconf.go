package peers

import (
	"fmt"
	"path/filepath"
	"strings"
)

// GridEngineCell is the name of the private cell (SGE_CELL) under its own
// SGE_ROOT; the package's cell, "default", is never touched.
const GridEngineCell = "peers"

// GridEngineQueue is the cluster queue every job goes to, on the one host.
const GridEngineQueue = "batch.q"

// GridEngineUrgentQueue is the queue of the preemption workload's urgent
// job: subordinate to it, batch.q's jobs are suspended while it runs one.
const GridEngineUrgentQueue = "urgent.q"

// GridEngineConfig is what a private one-host Grid Engine cell is
// configured with (Debian's gridengine-* packages, Son of Grid Engine).
type GridEngineConfig struct {
	// Dir holds SGE_ROOT (links to the package's programs and the cell's
	// files), the spools and the logs.
	Dir string
	// Hostname is this machine's name; the cell aliases it to localhost,
	// the only name loopback resolves to that Grid Engine accepts both ways.
	Hostname string
	// QmasterPort and ExecdPort are TCP ports in the cell's own network
	// namespace.
	QmasterPort, ExecdPort int
	// Slots is the queue's job slots: the machine's cpus, one job each.
	Slots int
	// MaxArrayTasks must be at least the largest array a workload makes.
	MaxArrayTasks int
	// Urgent adds urgent.q, one slot, with batch.q subordinate to it:
	// Grid Engine's preemption (it suspends batch.q's jobs while urgent.q
	// runs one).
	Urgent bool
}

// Validate says what is wrong with c, if anything.
func (c GridEngineConfig) Validate() error {
	switch {
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return fmt.Errorf("grid engine config: dir %q: want an absolute path", c.Dir)
	case c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\n/"):
		return fmt.Errorf("grid engine config: hostname %q: want a host name", c.Hostname)
	case c.QmasterPort <= 0 || c.QmasterPort > 65535 || c.ExecdPort <= 0 || c.ExecdPort > 65535 || c.QmasterPort == c.ExecdPort:
		return fmt.Errorf("grid engine config: ports %d and %d: want two distinct ports", c.QmasterPort, c.ExecdPort)
	case c.Slots < 1:
		return fmt.Errorf("grid engine config: %d slots: want at least 1", c.Slots)
	case c.MaxArrayTasks < 2:
		return fmt.Errorf("grid engine config: max_aj_tasks %d: want at least 2", c.MaxArrayTasks)
	}
	return nil
}

// Root is SGE_ROOT.
func (c GridEngineConfig) Root() string { return filepath.Join(c.Dir, "root") }

// Common is the cell's common directory (bootstrap, act_qmaster,
// host_aliases, and the classic spool of its configuration).
func (c GridEngineConfig) Common() string { return filepath.Join(c.Root(), GridEngineCell, "common") }

// QmasterSpool is the qmaster's spool directory (its messages file too).
func (c GridEngineConfig) QmasterSpool() string { return filepath.Join(c.Dir, "spool", "qmaster") }

// ExecdSpool is the execution daemon's spool directory.
func (c GridEngineConfig) ExecdSpool() string { return filepath.Join(c.Dir, "spool", "execd") }

// Env is the environment Grid Engine's programs need to find this cell.
func (c GridEngineConfig) Env(arch string) []string {
	return []string{"SGE_ROOT=" + c.Root(), "SGE_CELL=" + GridEngineCell, "SGE_ARCH=" + arch,
		fmt.Sprintf("SGE_QMASTER_PORT=%d", c.QmasterPort), fmt.Sprintf("SGE_EXECD_PORT=%d", c.ExecdPort)}
}

// SpoolParams is the classic spooling's argument: the cell's common
// directory and the qmaster's spool.
func (c GridEngineConfig) SpoolParams() string { return c.Common() + ";" + c.QmasterSpool() }

// Bootstrap returns the cell's bootstrap file. The daemons run as root
// (admin_user none) and spool to flat files (classic spooling, written
// synchronously, as Berkeley DB spooling of Debian's default cell is too).
func (c GridEngineConfig) Bootstrap() string {
	var b strings.Builder
	b.WriteString("# Version: 6.2\n")
	for _, s := range []Setting{
		{"admin_user", "none"}, {"default_domain", "none"}, {"ignore_fqdn", "true"},
		{"spooling_method", "classic"}, {"spooling_lib", "libspoolc"}, {"spooling_params", c.SpoolParams()},
		{"binary_path", "/usr/sbin"}, {"qmaster_spool_dir", c.QmasterSpool()}, {"security_mode", "none"},
		{"listener_threads", "2"}, {"worker_threads", "2"}, {"scheduler_threads", "1"},
	} {
		fmt.Fprintf(&b, "%-24s%s\n", s.Key, s.Value)
	}
	return b.String()
}

// HostAliases makes this machine's name and localhost one host: loopback
// resolves to localhost, and Grid Engine refuses a client whose address
// resolves to another name than the one it reports.
func (c GridEngineConfig) HostAliases() string { return "localhost " + c.Hostname + "\n" }

// GlobalTuning is what the cell's global configuration changes from
// Debian's default (the rest is the execd spool path).
func (c GridEngineConfig) GlobalTuning() []Setting {
	return []Setting{
		// Jobs run as root here, as Slurm's and Banyan's do in this run.
		{"min_uid", "0"}, {"min_gid", "0"},
		{"max_aj_tasks", fmt.Sprint(c.MaxArrayTasks)},
		{"loglevel", "log_warning"},
	}
}

// SchedulerTuning is what the scheduler configuration changes from its
// default, after the high-throughput advice of Grid Engine's documents:
// a pass every second (the least the interval can be) and one a second
// after a submission and after a job's end, no load adjustments, no
// per-job scheduling information kept.
func (c GridEngineConfig) SchedulerTuning() []Setting {
	return []Setting{
		{"schedule_interval", "0:0:1"}, {"flush_submit_sec", "1"}, {"flush_finish_sec", "1"},
		{"job_load_adjustments", "NONE"}, {"load_adjustment_decay_time", "0:0:0"},
		{"schedd_job_info", "false"},
	}
}

// Queues returns the cluster queues, each in qconf's file format:
// batch.q, Slots slots on localhost, batch jobs only, no load thresholds
// (the host's load does not hold jobs back), and with Urgent urgent.q.
func (c GridEngineConfig) Queues() []string {
	qs := c.queues()
	out := make([]string, len(qs))
	for i, q := range qs {
		var b strings.Builder
		for _, s := range q {
			fmt.Fprintf(&b, "%-22s%s\n", s.Key, s.Value)
		}
		out[i] = b.String()
	}
	return out
}

// queues is each cluster queue's attributes: batch.q, and with Urgent
// urgent.q.
func (c GridEngineConfig) queues() [][]Setting {
	qs := [][]Setting{c.queue(GridEngineQueue, c.Slots, "NONE")}
	if c.Urgent {
		qs = append(qs, c.queue(GridEngineUrgentQueue, 1, GridEngineQueue+"=1"))
	}
	return qs
}

// queue is every attribute of a cluster queue, in qconf's order.
func (c GridEngineConfig) queue(name string, slots int, subordinates string) []Setting {
	s := []Setting{
		{"qname", name}, {"hostlist", "localhost"}, {"seq_no", "0"},
		{"load_thresholds", "NONE"}, {"suspend_thresholds", "NONE"}, {"nsuspend", "1"},
		{"suspend_interval", "00:05:00"}, {"priority", "0"}, {"min_cpu_interval", "00:05:00"},
		{"processors", "UNDEFINED"}, {"qtype", "BATCH"}, {"ckpt_list", "NONE"}, {"pe_list", "NONE"},
		{"rerun", "FALSE"}, {"slots", fmt.Sprint(slots)}, {"tmpdir", "/tmp"}, {"shell", "/bin/sh"},
		{"prolog", "NONE"}, {"epilog", "NONE"}, {"shell_start_mode", "posix_compliant"},
		{"starter_method", "NONE"}, {"suspend_method", "NONE"}, {"resume_method", "NONE"},
		{"terminate_method", "NONE"}, {"notify", "00:00:60"}, {"owner_list", "NONE"},
		{"user_lists", "NONE"}, {"xuser_lists", "NONE"}, {"subordinate_list", subordinates},
		{"complex_values", "NONE"}, {"projects", "NONE"}, {"xprojects", "NONE"},
		{"calendar", "NONE"}, {"initial_state", "default"},
	}
	for _, l := range []string{"rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem"} {
		s = append(s, Setting{"s_" + l, "INFINITY"}, Setting{"h_" + l, "INFINITY"})
	}
	return s
}

// ExecHost returns the execution host's record.
func (c GridEngineConfig) ExecHost() string {
	return "hostname localhost\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\n" +
		"projects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n"
}

// Tuning is every choice of this cell recorded in the results: the
// global configuration's, the scheduler's and the queue's, each key
// prefixed with where it is set.
func (c GridEngineConfig) Tuning() []Setting {
	var out []Setting
	for _, s := range c.GlobalTuning() {
		out = append(out, Setting{"global " + s.Key, s.Value})
	}
	for _, s := range c.SchedulerTuning() {
		out = append(out, Setting{"scheduler " + s.Key, s.Value})
	}
	for _, q := range c.queues() {
		name := q[0].Value // qname comes first
		for _, s := range q {
			if s.Key == "slots" || s.Key == "qtype" || s.Key == "load_thresholds" || s.Key == "subordinate_list" && s.Value != "NONE" {
				out = append(out, Setting{name + " " + s.Key, s.Value})
			}
		}
	}
	return out
}

// Override returns conf, a Grid Engine configuration in its "key value"
// line format, with each setting's value replaced. A key conf does not
// have is an error, so a changed template does not go unnoticed.
func Override(conf string, settings []Setting) (string, error) {
	lines := strings.Split(conf, "\n")
	for _, s := range settings {
		found := false
		for i, l := range lines {
			f := strings.Fields(l)
			if len(f) == 0 || f[0] != s.Key || strings.HasPrefix(l, "#") {
				continue
			}
			lines[i] = fmt.Sprintf("%-28s %s", s.Key, s.Value)
			found = true
		}
		if !found {
			return "", fmt.Errorf("grid engine configuration: no %q line to set", s.Key)
		}
	}
	return strings.Join(lines, "\n"), nil
}
