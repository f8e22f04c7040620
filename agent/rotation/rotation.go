// Package rotation decides which scheduler server an agent tries next, and
// how long it waits first, after a session with the leader ends. It is pure
// logic (no I/O, no clock): the caller dials and sleeps.
//
// The policy, in order:
//   - A follower's refusal that names the leader: go there at once, unless
//     that is the server that just failed (followers name a dead leader
//     until their election timeout): then it is an election.
//   - A follower's refusal with no leader named (an election is running):
//     the cluster is alive, so try the next server after a short pause.
//   - Any other failure (a server that is gone, a broken stream): try the
//     next server at once, and back off (doubling, capped) only when a whole
//     round of servers has failed this way. A leader that dies is therefore
//     replaced within about one election, not after a backoff that grew
//     while the agent kept dialling the dead address.
//   - The server that failed outright is left out of the rounds while
//     the others answer, even when followers still name it (they do
//     until their election ends): a hung server holds the agent until
//     its welcome times out. Followers that keep naming it for
//     StaleHints refusals are believed (it came back and leads), and it
//     is tried again once every other server has failed outright too.
//   - Fast retries are for elections, which take a second or two: after
//     FastRounds rounds of the list without a session, every wait is at
//     least a backoff that doubles up to MaxBackoff. A cluster that lost its
//     majority, or followers that name each other, are then asked about
//     once every two seconds per agent, not ten times a second.
package rotation

import (
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The policy's pauses and limits.
const (
	// ElectionPause is the wait after a follower refused with no leader.
	ElectionPause = 100 * time.Millisecond
	// MinBackoff is the first wait after a whole round of servers failed.
	MinBackoff = 100 * time.Millisecond
	// MaxBackoff caps the doubling backoff.
	MaxBackoff = 2 * time.Second
	// StaleHints is how many refusals naming the server that failed are
	// taken for an election still running (about StaleHints*ElectionPause)
	// before the agent believes them and goes back to it.
	StaleHints = 20
	// FastRounds is how many rounds of the server list are tried at the
	// fast pace (no wait, or ElectionPause) before every wait backs off.
	FastRounds = 10
	// WelcomeTimeout is how long an agent waits for a server's welcome
	// before it takes the server for silent (frozen, cut off, or stuck)
	// and tries the next one.
	WelcomeTimeout = 5 * time.Second
	// ReconnectBound is how long an agent that is up may take to reach a
	// new leader once it has one, by this policy: it may have just begun
	// waiting on a silent server's welcome, then wait the longest backoff,
	// and then follow a follower's hint; with a backoff to spare. A new
	// leader gives the agents it has not heard from yet their lease plus
	// this before it marks them down, so that an election does not
	// requeue the work of agents that are only on their way to it.
	ReconnectBound = WelcomeTimeout + 2*MaxBackoff
)

// Rotation walks a fixed list of scheduler servers. The zero value is not
// usable; use New.
type Rotation struct {
	servers []string
	next    int           // index of the next server to try in the list
	hint    string        // the leader a follower named, tried next
	failed  int           // consecutive failures that were not refusals
	dead    string        // the last server that failed outright
	stale   int           // refusals since that still name dead as leader
	backoff time.Duration // the wait after the next full round of failures
	tries   int           // sessions tried since one last opened
	slow    time.Duration // the least wait once tries pass the fast rounds
}

// New returns a rotation over servers, starting with the first. The list
// must not be empty (Next then returns "").
func New(servers []string) *Rotation {
	return &Rotation{servers: append([]string(nil), servers...), backoff: MinBackoff, slow: MinBackoff}
}

// Next returns the server to try now.
func (r *Rotation) Next() string {
	if r.hint != "" {
		h := r.hint
		r.hint = ""
		return h
	}
	if len(r.servers) == 0 {
		return ""
	}
	for range len(r.servers) {
		addr := r.servers[r.next%len(r.servers)]
		r.next = (r.next + 1) % len(r.servers)
		// The server that failed outright is left out while the others
		// answer (a hung server holds the agent for a whole welcome
		// timeout); once they have failed too it is tried again.
		if addr == r.dead && len(r.servers) > 1 && r.failed < len(r.servers)-1 {
			continue
		}
		return addr
	}
	return r.dead
}

// Ended records how a session with addr ended (opened: it got as far as
// the leader's welcome; err: why it ended) and returns how long to wait
// before trying Next. A leader named by a refusal is tried next, unless it
// is the server that last failed outright.
func (r *Rotation) Ended(addr string, opened bool, err error) time.Duration {
	if opened {
		r.failed, r.tries, r.dead, r.stale = 0, 0, "", 0
		r.backoff, r.slow = MinBackoff, MinBackoff
	}
	wait := r.ended(addr, err)
	if opened {
		return wait
	}
	r.tries++
	if r.tries > FastRounds*max(len(r.servers), 1) {
		wait = max(wait, r.slow)
		r.slow = min(2*r.slow, MaxBackoff)
	}
	return wait
}

func (r *Rotation) ended(addr string, err error) time.Duration {
	leader, refused := LeaderHint(err)
	if refused {
		r.failed = 0
		if addr == r.dead {
			r.dead = "" // it answers again
		}
		if leader != "" && leader != addr && leader != r.dead {
			r.hint = leader
			return 0
		}
		if leader != "" && leader == r.dead {
			// Followers name the failed server until they elect
			// another; when they keep naming it past an election's
			// length, it is back (restarted, or thawed) and leads.
			if r.stale++; r.stale >= StaleHints {
				r.dead, r.stale, r.hint = "", 0, leader
				return 0
			}
		}
		return ElectionPause
	}
	if r.dead != addr {
		r.stale = 0
	}
	r.dead = addr
	r.failed++
	if r.failed < len(r.servers) {
		return 0 // the others have not been tried since this one failed
	}
	r.failed = 0
	wait := r.backoff
	r.backoff = min(2*r.backoff, MaxBackoff)
	return wait
}

// LeaderHint reads a follower's refusal: a FailedPrecondition status whose
// message carries "leader=ADDR" (ADDR is empty while an election runs).
// refused reports whether err was such a refusal at all.
func LeaderHint(err error) (leader string, refused bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return "", false
	}
	_, after, found := strings.Cut(st.Message(), "leader=")
	if !found {
		return "", false
	}
	return strings.TrimSpace(after), true
}
