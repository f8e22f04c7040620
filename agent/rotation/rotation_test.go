package rotation

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	gone     = status.Error(codes.Unavailable, "connection refused")
	election = status.Error(codes.FailedPrecondition, "not the leader; leader=")
)

func refusal(leader string) error {
	return status.Errorf(codes.FailedPrecondition, "not the leader; leader=%s", leader)
}

// step is one session attempt: the server Next must return, how the
// session ended, and the wait Ended must answer.
type step struct {
	addr   string
	opened bool
	err    error
	wait   time.Duration
}

func TestRotation(t *testing.T) {
	servers := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"follower names the leader", []step{
			{"a", false, refusal("c"), 0},
			{"c", true, gone, 0}, // the leader died mid-session: try the next server at once
		}},
		{"leader dies, election, new leader", []step{
			{"a", true, gone, 0}, // a was the leader and is gone (or hung)
			{"b", false, election, ElectionPause},
			{"c", false, election, ElectionPause},
			{"b", false, refusal("c"), 0}, // a is left out while the others answer
			{"c", true, errors.New("stream ended"), 0},
		}},
		{"everything gone backs off per round, doubling", []step{
			{"a", false, gone, 0},
			{"b", false, gone, 0},
			{"c", false, gone, MinBackoff},
			{"a", false, gone, 0},
			{"b", false, gone, 0},
			{"c", false, gone, 2 * MinBackoff},
			{"a", false, gone, 0},
			{"b", false, gone, 0},
			{"c", false, gone, 4 * MinBackoff},
		}},
		{"an opened session resets the backoff", []step{
			{"a", false, gone, 0}, {"b", false, gone, 0}, {"c", false, gone, MinBackoff},
			{"a", false, gone, 0}, {"b", false, gone, 0}, {"c", false, gone, 2 * MinBackoff},
			{"a", true, gone, 0}, {"b", false, gone, 0}, {"c", false, gone, MinBackoff},
		}},
		{"followers still naming the dead leader: an election, not a spin", []step{
			{"a", true, gone, 0},                      // the leader a dies (or hangs)
			{"b", false, refusal("a"), ElectionPause}, // b has not noticed yet
			{"c", false, refusal("a"), ElectionPause}, // nor has c
			{"b", false, refusal("c"), 0},             // a is left out; c won the election
			{"c", true, gone, 0},                      // c leads, then dies in turn
			{"a", false, refusal("c"), ElectionPause}, // c is next in the list but left out; a names the dead c
			{"b", false, refusal("a"), 0},             // a won
			{"a", true, nil, 0},
		}},
		{"a refusal naming the refusing server is an election", []step{
			{"a", false, refusal("a"), ElectionPause},
			{"b", false, refusal("a"), 0},
			{"a", true, nil, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(servers)
			for i, s := range tc.steps {
				if got := r.Next(); got != s.addr {
					t.Fatalf("step %d: Next = %q, want %q", i, got, s.addr)
				}
				if got := r.Ended(s.addr, s.opened, s.err); got != s.wait {
					t.Fatalf("step %d (%s, opened %v, %v): wait %v, want %v", i, s.addr, s.opened, s.err, got, s.wait)
				}
			}
		})
	}
}

// TestFailedServerComesBack: a leader that failed and came back (restarted
// or thawed) is believed once followers keep naming it for StaleHints
// refusals, and it is tried again when every other server has failed too.
func TestFailedServerComesBack(t *testing.T) {
	r := New([]string{"a", "b", "c"})
	if got := r.Next(); got != "a" {
		t.Fatalf("Next = %q", got)
	}
	r.Ended("a", true, gone)
	for i := 1; i <= StaleHints; i++ {
		addr := r.Next()
		if addr == "a" {
			t.Fatalf("refusal %d: went back to the failed server before StaleHints refusals", i)
		}
		want := ElectionPause
		if i == StaleHints {
			want = 0
		}
		if got := r.Ended(addr, false, refusal("a")); got != want {
			t.Fatalf("refusal %d: wait %v, want %v", i, got, want)
		}
	}
	if got := r.Next(); got != "a" {
		t.Fatalf("after %d refusals naming a: Next = %q, want a", StaleHints, got)
	}

	r = New([]string{"a", "b", "c"})
	r.Next()
	r.Ended("a", true, gone) // a failed
	if got := r.Next(); got != "b" {
		t.Fatalf("Next = %q, want b", got)
	}
	r.Ended("b", false, gone) // b is gone too
	if got := r.Next(); got != "c" {
		t.Fatalf("Next = %q, want c", got)
	}
	r.Ended("c", false, gone) // and c: a full round failed
	seen := map[string]bool{}
	for range 3 {
		addr := r.Next()
		seen[addr] = true
		r.Ended(addr, false, gone)
	}
	if len(seen) != 3 {
		t.Fatalf("with every server failing, the next round tried %v, want all three", seen)
	}
}

func TestBackoffIsCapped(t *testing.T) {
	r := New([]string{"only"})
	var last time.Duration
	for range 20 {
		last = r.Ended(r.Next(), false, gone)
	}
	if last != MaxBackoff {
		t.Fatalf("after 20 failures wait %v, want the cap %v", last, MaxBackoff)
	}
}

func TestLeaderHint(t *testing.T) {
	for _, tc := range []struct {
		err     error
		leader  string
		refused bool
	}{
		{refusal("10.0.0.1:7000"), "10.0.0.1:7000", true},
		{election, "", true},
		{status.Error(codes.FailedPrecondition, "pool is full"), "", false},
		{gone, "", false},
		{errors.New("leader=x"), "", false},
		{nil, "", false},
	} {
		leader, refused := LeaderHint(tc.err)
		if leader != tc.leader || refused != tc.refused {
			t.Errorf("LeaderHint(%v) = %q, %v; want %q, %v", tc.err, leader, refused, tc.leader, tc.refused)
		}
	}
}

// TestNoLeaderForLong: a cluster that lost its majority (a and b gone, c
// refusing with no leader) and followers that name each other are retried
// fast for FastRounds rounds, then ever more slowly, up to MaxBackoff.
func TestNoLeaderForLong(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(addr string) error
	}{
		{"majority lost", func(addr string) error {
			if addr == "c" {
				return election
			}
			return gone
		}},
		{"followers name each other", func(addr string) error {
			return map[string]error{"a": gone, "b": refusal("c"), "c": refusal("b")}[addr]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New([]string{"a", "b", "c"})
			var fast, total time.Duration
			var last time.Duration
			for i := range 300 {
				addr := r.Next()
				last = r.Ended(addr, false, tc.end(addr))
				if i < FastRounds*3 {
					fast += last
				}
				total += last
			}
			if fast > FastRounds*3*ElectionPause {
				t.Errorf("first %d tries waited %v in all: not fast", FastRounds*3, fast)
			}
			if last != MaxBackoff {
				t.Errorf("after 300 tries the wait is %v, want %v", last, MaxBackoff)
			}
			if total < 500*time.Second {
				t.Errorf("300 tries waited %v in all: still spinning", total)
			}
		})
	}
}
