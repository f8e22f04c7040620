package server

// Heartbeat terms that grow with the fleet.
//
// Every agent heartbeats the leader, and the leader answers each one: with
// the default 10 s lease (a heartbeat every 2.5 s) a fleet of 10,000 agents
// sends 4,000 a second, each a receive, an answer and a write on the
// leader, which is most of an idle leader's CPU. Like Nomad, which lengthens
// its nodes' heartbeat TTL with the cluster's size, the leader bounds the
// heartbeats it takes: past Config.MaxHeartbeatRate for the agents it has
// sessions with, it doubles the interval (and the lease with it, keeping
// the lease four intervals long) as often as it takes. Doubling rather
// than a continuous scale means the terms change only at a few fleet
// sizes, so the leader re-tells the whole fleet rarely (log2 times as it
// grows), and a fleet never sends more than the bound.
//
// A session keeps the longest terms it was told: the leader never shortens
// a lease an agent was promised (the agent would heartbeat too slowly for
// it), so terms only shrink for sessions opened after the fleet shrank.
// The cost is detection time: a 10,000-agent fleet at the default bound of
// 1,000 a second heartbeats every 10 s and is marked down after 40 s
// silent, where Slurm's default SlurmdTimeout is 300 s.

import "time"

// DefaultMaxHeartbeatRate is the heartbeats a second the leader takes from
// its whole fleet before it lengthens everyone's interval.
const DefaultMaxHeartbeatRate = 1000

// heartbeatTerms is what a session is told: how often to heartbeat and how
// long its silence may last before the leader marks it down.
type heartbeatTerms struct {
	// level is how many times the base interval was doubled.
	level     int
	heartbeat time.Duration
	lease     time.Duration
}

// maxHeartbeatLevel caps the doubling (2^20 times the base: beyond any
// fleet) so that a bad rate can never overflow a duration.
const maxHeartbeatLevel = 20

// heartbeatTermsFor returns the terms for a fleet of n agents with sessions
// on the leader, given the configured lease (heartbeats every lease/4) and
// the bound on heartbeats a second (rate <= 0: no bound).
func heartbeatTermsFor(n int, lease time.Duration, rate float64) heartbeatTerms {
	t := heartbeatTerms{heartbeat: lease / 4, lease: lease}
	if rate <= 0 || t.heartbeat <= 0 {
		return t
	}
	for t.level < maxHeartbeatLevel && float64(n)/t.heartbeat.Seconds() > rate {
		t.level++
		t.heartbeat *= 2
		t.lease *= 2
	}
	return t
}
