package peers

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Setting is one slurm.conf line, KEY=VALUE.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// SlurmConfig is what a private loopback Slurm cluster is configured with.
type SlurmConfig struct {
	// Dir holds the state, spool, logs, PID files and the munge socket.
	Dir string
	// CtldPort and SlurmdPort are loopback TCP ports.
	CtldPort, SlurmdPort int
	// CPUs and MemoryMB describe NodeName=localhost (the machine's own).
	CPUs, MemoryMB int
	// MaxArraySize and MaxJobCount must exceed the largest array and the
	// largest queue a workload makes.
	MaxArraySize, MaxJobCount int
}

// Validate says what is wrong with c, if anything.
func (c SlurmConfig) Validate() error {
	switch {
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return fmt.Errorf("slurm config: dir %q: want an absolute path", c.Dir)
	case c.CtldPort <= 0 || c.CtldPort > 65535 || c.SlurmdPort <= 0 || c.SlurmdPort > 65535 || c.CtldPort == c.SlurmdPort:
		return fmt.Errorf("slurm config: ports %d and %d: want two distinct ports", c.CtldPort, c.SlurmdPort)
	case c.CPUs < 1 || c.MemoryMB < 1:
		return fmt.Errorf("slurm config: %d cpus, %d MB: want at least 1 of each", c.CPUs, c.MemoryMB)
	case c.MaxArraySize < 2 || c.MaxJobCount < 2:
		return fmt.Errorf("slurm config: MaxArraySize %d, MaxJobCount %d: want at least 2", c.MaxArraySize, c.MaxJobCount)
	}
	return nil
}

// SchedulerParameters follows Slurm's high-throughput guide for a
// one-node cluster of short jobs: no deferral (a job can start when it is
// submitted or when another ends), no minimum interval between scheduling
// passes, backfill every second over up to 1,000 jobs, and a cap on
// pending RPCs before the scheduler yields.
const SchedulerParameters = "sched_min_interval=0,default_queue_depth=100,bf_interval=1,bf_max_job_test=1000,bf_continue,max_rpc_cnt=150"

// Tuning is the part of the configuration chosen for throughput and the
// comparison (the rest is paths and ports), as recorded in the results.
func (c SlurmConfig) Tuning() []Setting {
	return []Setting{
		{"SlurmctldDebug", "error"}, {"SlurmdDebug", "error"},
		{"SchedulerType", "sched/backfill"}, {"SchedulerParameters", SchedulerParameters},
		{"SelectType", "select/cons_tres"}, {"SelectTypeParameters", "CR_CPU"},
		{"ProctrackType", "proctrack/linuxproc"}, {"TaskPlugin", "task/none"},
		{"JobAcctGatherType", "jobacct_gather/none"}, {"AccountingStorageType", "accounting_storage/none"},
		{"JobCompType", "jobcomp/none"}, {"MpiDefault", "none"},
		{"MessageTimeout", "30"}, {"MinJobAge", "2"},
		{"MaxJobCount", fmt.Sprint(c.MaxJobCount)}, {"MaxArraySize", fmt.Sprint(c.MaxArraySize)},
		{"PreemptType", "preempt/partition_prio"}, {"PreemptMode", "REQUEUE"},
		{"SlurmUser", "root"}, {"SlurmdUser", "root"},
		{"ReturnToService", "2"}, {"MailProg", "/bin/true"},
		// A no-op epilog: slurmd then reports each job's end by EPILOG_COMPLETE, which starts the next job at once (without one: next 1 s tick).
		{"Epilog", "/bin/true"},
	}
}

// Partitions are the two partitions: "low" (the default) and "high",
// whose higher PriorityTier preempts low's jobs (requeued).
func (c SlurmConfig) Partitions() []string {
	return []string{
		"PartitionName=low Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1",
		"PartitionName=high Nodes=localhost Default=NO MaxTime=INFINITE State=UP PriorityTier=2",
	}
}

// Node is the NodeName line: the machine's real CPUs and memory.
func (c SlurmConfig) Node() string {
	return fmt.Sprintf("NodeName=localhost NodeAddr=127.0.0.1 CPUs=%d RealMemory=%d State=UNKNOWN", c.CPUs, c.MemoryMB)
}

// MungeSocket is the private munged's socket.
func (c SlurmConfig) MungeSocket() string { return filepath.Join(c.Dir, "munge", "munge.socket") }

// Render returns slurm.conf.
func (c SlurmConfig) Render() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
	line("ClusterName", "peers")
	line("SlurmctldHost", "localhost(127.0.0.1)")
	line("SlurmctldPort", fmt.Sprint(c.CtldPort))
	line("SlurmdPort", fmt.Sprint(c.SlurmdPort))
	line("AuthType", "auth/munge")
	line("CredType", "cred/munge")
	line("AuthInfo", "socket="+c.MungeSocket())
	line("StateSaveLocation", filepath.Join(c.Dir, "state"))
	line("SlurmdSpoolDir", filepath.Join(c.Dir, "spool"))
	line("SlurmctldPidFile", filepath.Join(c.Dir, "slurmctld.pid"))
	line("SlurmdPidFile", filepath.Join(c.Dir, "slurmd.pid"))
	line("SlurmctldLogFile", filepath.Join(c.Dir, "slurmctld.log"))
	line("SlurmdLogFile", filepath.Join(c.Dir, "slurmd.log"))
	for _, s := range c.Tuning() {
		line(s.Key, s.Value)
	}
	b.WriteString(c.Node() + "\n")
	for _, p := range c.Partitions() {
		b.WriteString(p + "\n")
	}
	return b.String(), nil
}
