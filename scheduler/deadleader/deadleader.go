// Package deadleader lets a raft follower stand for election as soon as
// the leader's process is gone, instead of after raft's heartbeat timeout.
//
// Raft finds a dead leader by silence: a follower that has not heard from
// it for the heartbeat timeout (750-1500 ms here, randomised) stands for
// election, and with pre-vote the other followers refuse it until their
// own timeouts have passed too. A leader killed with SIGKILL, crashed, or
// killed for memory took 1.8-2.8 s to replace that way in the failover
// benchmark, most of a 3 s budget.
//
// But a dead process is not silent: its host's kernel refuses connections
// to the port it listened on. A follower that has not heard from its
// leader for Quiet dials the leader's address. A refused connection means
// nothing listens there: the process is dead, or restarting (and comes
// back as a follower). Or a firewall between the two rejects the
// connection: then the follower is cut off from the leader and stands as
// raft would after its timeout, but past pre-vote, so it can depose a
// leader the other followers still hear. Then the first voter in line, by ID among the voters
// other than the leader, asks its own raft to stand at once: through
// raft's leadership-transfer call (TimeoutNow) sent to itself, whose vote
// requests the other followers grant even while they still remember the
// dead leader. The others wait Stagger each per place in line, so that two
// followers do not split the vote; by then the first has usually won and
// they follow it.
//
// Anything but a refusal leaves the election to raft's timeouts: a dial
// that connects (a frozen or busy leader: its kernel still accepts), that
// times out (a dead host, a partition that drops packets) or that fails
// otherwise. A wrong guess costs an election, never safety: raft lets any
// server stand at any time.
//
// The first in line may lose: a follower whose log is behind another's is
// refused that one's vote. The one that refused it has forgotten its
// leader (raft does when a newer term asks for its vote), so the watcher
// remembers the last leader it knew and still replaces it in its turn,
// with a newer term that the loser then votes for. Each follower stands
// once in a dead leader's place until a leader is heard from again; past
// that, raft's own timeouts decide.
package deadleader

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Node is what the watcher reads of the local raft node: *raft.Raft has it.
type Node interface {
	State() raft.RaftState
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	LastContact() time.Time
}

// Config says how a Watcher reaches the cluster and how patient it is.
// Self, Voters and Elect are required.
type Config struct {
	// Self is this server's raft ID.
	Self raft.ServerID
	// Voters returns the voters of the latest raft configuration.
	Voters func() ([]raft.ServerID, error)
	// Elect makes the local raft node stand for election at once.
	Elect func() error
	// Dial connects to addr and closes the connection: the probe. Nil:
	// a plain TCP dial.
	Dial func(ctx context.Context, addr string) error
	// Quiet is how long the leader may stay silent before it is probed,
	// and half of it how often it is probed again while silent (default
	// DefaultQuiet). It should be a few of raft's heartbeat intervals
	// (HeartbeatTimeout/10).
	Quiet time.Duration
	// Stagger is how much longer each place in line waits (default
	// DefaultStagger).
	Stagger time.Duration
	// Tick is how often the node is looked at (default DefaultTick).
	Tick time.Duration
	// ProbeTimeout bounds one probe (default DefaultProbeTimeout).
	ProbeTimeout time.Duration
	// Log gets a line for each dead leader found and each election
	// called; nil: none.
	Log *slog.Logger
}

// Defaults for Config's durations, for raft's heartbeats every 75 ms (a
// heartbeat timeout of 750 ms).
const (
	DefaultQuiet        = 200 * time.Millisecond
	DefaultStagger      = 300 * time.Millisecond
	DefaultTick         = 50 * time.Millisecond
	DefaultProbeTimeout = 250 * time.Millisecond
)

// Watcher watches one follower's leader; Run runs it.
type Watcher struct {
	node      Node
	cfg       Config
	elections atomic.Uint64
}

// New returns a Watcher of node; it does nothing until Run.
func New(node Node, cfg Config) *Watcher {
	if cfg.Dial == nil {
		cfg.Dial = dialTCP
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultQuiet
	}
	if cfg.Stagger <= 0 {
		cfg.Stagger = DefaultStagger
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{node: node, cfg: cfg}
}

// Elections is how many elections the watcher has called.
func (w *Watcher) Elections() uint64 { return w.elections.Load() }

// Run looks at the node every Tick until ctx ends: it probes a silent
// leader, and stands for election when its turn comes after a refusal.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.cfg.Tick)
	defer tick.Stop()
	t := tracker{self: w.cfg.Self, quiet: w.cfg.Quiet, stagger: w.cfg.Stagger}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v := t.see(w.look())
		a := t.next(time.Now(), v)
		if a == probe {
			place := w.probe(ctx, v) // the turn counts from the answer, after the dial
			t.probed(time.Now(), place)
			// Act on the answer at once: the first in line stands
			// without waiting for the next tick.
			v = t.see(w.look())
			a = t.next(time.Now(), v)
		}
		if a == elect {
			t.elected()
			w.elect(v)
		}
	}
}

// look reads the node.
func (w *Watcher) look() view {
	addr, id := w.node.LeaderWithID()
	return view{state: w.node.State(), leader: id, leaderAddr: addr, lastContact: w.node.LastContact()}
}

// probe dials the leader and returns this server's place in line if the
// leader's port refused the connection, else -1.
func (w *Watcher) probe(ctx context.Context, v view) int {
	pctx, cancel := context.WithTimeout(ctx, w.cfg.ProbeTimeout)
	err := w.cfg.Dial(pctx, string(v.leaderAddr))
	cancel()
	if !Refused(err) {
		return -1
	}
	voters, err := w.cfg.Voters()
	if err != nil {
		w.cfg.Log.Warn("leader's raft port refuses connections, but the voters are unknown: leaving the election to raft's timeouts",
			"leader", v.leader, "addr", v.leaderAddr, "err", err)
		return -1
	}
	place := placeInLine(voters, w.cfg.Self, v.leader)
	if place >= 0 {
		w.cfg.Log.Info("leader's raft port refuses connections: its process is gone", "leader", v.leader,
			"addr", v.leaderAddr, "silent_for", time.Since(v.lastContact).Round(time.Millisecond),
			"place_in_line", place, "stand_in", time.Duration(place)*w.cfg.Stagger)
	}
	return place
}

// elect asks the node to stand for election.
func (w *Watcher) elect(v view) {
	if err := w.cfg.Elect(); err != nil {
		w.cfg.Log.Warn("could not stand for election: leaving it to raft's timeouts", "dead_leader", v.leader, "err", err)
		return
	}
	w.elections.Add(1)
	w.cfg.Log.Info("standing for election in place of a dead leader", "dead_leader", v.leader)
}

// Refused reports whether err is a refused connection: nothing listens
// at the address dialled.
func Refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// dialTCP connects to addr over TCP and closes the connection.
func dialTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// placeInLine is self's place among the voters other than leader, in
// order of ID (0 first), or -1 if self is not one of them.
func placeInLine(voters []raft.ServerID, self, leader raft.ServerID) int {
	line := slices.DeleteFunc(slices.Clone(voters), func(id raft.ServerID) bool { return id == leader })
	slices.Sort(line)
	line = slices.Compact(line)
	return slices.Index(line, self)
}

// view is one look at the node.
type view struct {
	state       raft.RaftState
	leader      raft.ServerID
	leaderAddr  raft.ServerAddress
	lastContact time.Time
	// remembered: leader is not the node's but the last one it knew
	// (tracker.see).
	remembered bool
}

// action is what the tracker says to do.
type action int

const (
	wait  action = iota // nothing now
	probe               // dial the leader
	elect               // stand for election
)

func (a action) String() string {
	return [...]string{"wait", "probe", "elect"}[a]
}

// tracker decides, from each look at the node, when to probe the leader
// and when to stand. It is pure: the time comes with each call.
type tracker struct {
	self           raft.ServerID
	quiet, stagger time.Duration

	// lastLeader and lastAddr are the last leader other than self the
	// node knew (see).
	lastLeader raft.ServerID
	lastAddr   raft.ServerAddress
	// stoodFor is the dead leader this server stood in place of: it does
	// not stand for it again before a leader is heard from.
	stoodFor raft.ServerID

	suspect  raft.ServerID // the silent leader of the probes below ("": none)
	probedAt time.Time     // the last probe of suspect (zero: none yet)
	standAt  time.Time     // when to stand (zero: suspect not known dead)
}

// see remembers the last leader the node knew, and puts it in a
// follower's view that names none. Raft forgets the leader when a
// candidate of a newer term asks for its vote; if it refused that vote
// (the candidate's log was behind its own), the leader it forgot is the
// dead one, and it is the one to replace it.
func (t *tracker) see(v view) view {
	switch {
	case v.leader == t.self || v.state == raft.Leader:
		// This server led since: the leader before it is no one's to
		// replace, whatever its port says now.
		t.lastLeader, t.lastAddr = "", ""
	case v.leader != "":
		t.lastLeader, t.lastAddr = v.leader, v.leaderAddr
	case v.state == raft.Follower && t.lastLeader != "":
		v.leader, v.leaderAddr, v.remembered = t.lastLeader, t.lastAddr, true
	}
	return v
}

// next says what to do at now, having seen v (through see).
func (t *tracker) next(now time.Time, v view) action {
	heard := now.Sub(v.lastContact) < t.quiet
	if heard && v.leader != "" && !v.remembered {
		t.stoodFor = "" // a leader is heard from: the next dead one gets its try
	}
	if v.state != raft.Follower || v.leader == "" || v.leaderAddr == "" || heard {
		// Not a follower, no leader known, or the leader is heard from.
		t.suspect, t.probedAt, t.standAt = "", time.Time{}, time.Time{}
		return wait
	}
	if v.leader != t.suspect {
		t.suspect, t.probedAt, t.standAt = v.leader, time.Time{}, time.Time{}
	}
	switch {
	case t.stoodFor == t.suspect:
		return wait // stood once in its place: raft's timeouts from here
	case !t.standAt.IsZero():
		if now.Before(t.standAt) {
			return wait
		}
		return elect
	case t.probedAt.IsZero() || now.Sub(t.probedAt) >= t.quiet/2:
		return probe
	}
	return wait
}

// probed records a probe of the suspect at now: place is this server's
// place in line if the leader's port refused it, else -1.
func (t *tracker) probed(now time.Time, place int) {
	t.probedAt = now
	if place >= 0 {
		t.standAt = now.Add(time.Duration(place) * t.stagger)
	}
}

// elected records that this server stood in the suspect's place.
func (t *tracker) elected() { t.stoodFor, t.standAt = t.suspect, time.Time{} }
