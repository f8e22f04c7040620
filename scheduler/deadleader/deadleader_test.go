package deadleader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// step is one look at the node at ms (since the start) and what the
// tracker must say; when it says probe, place is the probe's answer.
type step struct {
	at     int // ms
	state  raft.RaftState
	leader raft.ServerID // "": none known
	heard  int           // ms of the last contact with the leader
	place  int           // the probe's answer: a place in line, or -1 (not refused)
	want   action
}

func follower(at int, leader raft.ServerID, heard int, want action) step {
	return step{at: at, state: raft.Follower, leader: leader, heard: heard, place: -1, want: want}
}

// refusedAt is a follower's look whose probe is refused, with place its
// place in line.
func refusedAt(at int, leader raft.ServerID, heard, place int) step {
	return step{at: at, state: raft.Follower, leader: leader, heard: heard, place: place, want: probe}
}

func TestTrackerDecisions(t *testing.T) {
	const quiet, stagger = 200, 300 // ms
	cases := []struct {
		name  string
		steps []step
	}{
		{"leader heard from: nothing", []step{
			follower(100, "s1", 0, wait), follower(199, "s1", 0, wait), follower(400, "s1", 390, wait)}},
		{"no leader known: nothing", []step{
			follower(1000, "", 0, wait)}},
		{"not a follower: nothing", []step{
			{at: 1000, state: raft.Candidate, leader: "s1", place: -1, want: wait},
			{at: 1000, state: raft.Leader, leader: "s2", place: -1, want: wait}}},
		{"silent but alive: probed every quiet/2, never elected", []step{
			follower(200, "s1", 0, probe), follower(250, "s1", 0, wait), follower(299, "s1", 0, wait),
			follower(300, "s1", 0, probe), follower(1000, "s1", 0, probe), follower(1001, "s1", 0, wait)}},
		{"dead, first in line: stands at once, once", []step{
			refusedAt(200, "s1", 0, 0), follower(200, "s1", 0, elect),
			follower(250, "s1", 0, wait), follower(5000, "s1", 0, wait)}},
		{"dead, second in line: stands after one stagger", []step{
			refusedAt(210, "s1", 0, 1), follower(260, "s1", 0, wait), follower(509, "s1", 0, wait),
			follower(510, "s1", 0, elect), follower(560, "s1", 0, wait)}},
		{"dead, third in line: two staggers", []step{
			refusedAt(200, "s1", 0, 2), follower(799, "s1", 0, wait), follower(800, "s1", 0, elect)}},
		{"second in line, the first won meanwhile: follows it", []step{
			refusedAt(200, "s1", 0, 1), follower(350, "s2", 340, wait), follower(500, "s2", 450, wait),
			follower(1000, "s2", 450, probe)}},
		{"dead leader came back before our turn: starts over", []step{
			refusedAt(200, "s1", 0, 1), follower(300, "s1", 290, wait), follower(489, "s1", 290, wait),
			follower(490, "s1", 290, probe)}},
		{"stood, lost, became a follower of another: that one is watched afresh", []step{
			refusedAt(200, "s1", 0, 0), follower(200, "s1", 0, elect),
			{at: 250, state: raft.Candidate, place: -1, want: wait},
			follower(900, "s3", 850, wait), refusedAt(1100, "s3", 850, 0), follower(1100, "s3", 850, elect)}},
		{"not a voter: probes, never stands", []step{
			follower(200, "s1", 0, probe), follower(300, "s1", 0, probe), follower(5000, "s1", 0, probe)}},
		{"leader forgotten (a vote refused): the one remembered is replaced", []step{
			follower(100, "s1", 90, wait), follower(250, "", 90, wait),
			{at: 290, state: raft.Follower, heard: 90, place: 1, want: probe},
			follower(589, "", 90, wait), follower(590, "", 90, elect), follower(700, "", 90, wait)}},
		{"leader forgotten, the remembered one alive: probed, not replaced", []step{
			follower(100, "s1", 90, wait), follower(290, "", 90, probe), follower(390, "", 90, probe)}},
		{"a new leader is remembered in place of the old", []step{
			follower(100, "s1", 90, wait), follower(200, "s3", 190, wait),
			{at: 400, state: raft.Follower, heard: 190, place: 0, want: probe}, follower(400, "s3", 190, elect)}},
		{"stood, then asked for a vote (leader forgotten): does not stand again", []step{
			refusedAt(200, "s1", 0, 0), follower(200, "s1", 0, elect),
			{at: 250, state: raft.Candidate, place: -1, want: wait},
			follower(300, "", 0, wait), follower(400, "", 0, wait), follower(5000, "", 0, wait)}},
		{"stood for a leader that came back and died again: stands again", []step{
			refusedAt(200, "s1", 0, 0), follower(200, "s1", 0, elect),
			follower(1000, "s1", 990, wait), refusedAt(1300, "s1", 990, 0), follower(1300, "s1", 990, elect)}},
		{"led since: the leader before is forgotten", []step{
			follower(100, "s1", 90, wait),
			{at: 200, state: raft.Leader, leader: "s2", place: -1, want: wait},
			follower(1000, "", 800, wait), follower(2000, "", 800, wait)}},
		{"self is never remembered as the leader", []step{
			{at: 100, state: raft.Leader, leader: "s2", place: -1, want: wait},
			follower(1000, "", 0, wait)}},
		{"a candidate in between resets the count", []step{
			refusedAt(200, "s1", 0, 1),
			{at: 300, state: raft.Candidate, place: -1, want: wait},
			follower(600, "s1", 0, probe)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Unix(1_700_000_000, 0)
			ms := func(n int) time.Time { return start.Add(time.Duration(n) * time.Millisecond) }
			tr := tracker{self: "s2", quiet: quiet * time.Millisecond, stagger: stagger * time.Millisecond}
			for i, s := range c.steps {
				v := view{state: s.state, leader: s.leader, lastContact: ms(s.heard)}
				if s.leader != "" {
					v.leaderAddr = raft.ServerAddress(string(s.leader) + ":7400")
				}
				got := tr.next(ms(s.at), tr.see(v))
				if got != s.want {
					t.Fatalf("step %d (at %d ms, %v, leader %q heard at %d ms): %v, want %v", i, s.at, s.state, s.leader, s.heard, got, s.want)
				}
				switch got {
				case probe:
					tr.probed(ms(s.at), s.place)
				case elect:
					tr.elected()
				}
			}
		})
	}
}

func TestPlaceInLine(t *testing.T) {
	ids := func(s ...raft.ServerID) []raft.ServerID { return s }
	cases := []struct {
		voters       []raft.ServerID
		self, leader raft.ServerID
		want         int
	}{
		{ids("s1", "s2", "s3"), "s2", "s1", 0},
		{ids("s1", "s2", "s3"), "s3", "s1", 1},
		{ids("s3", "s1", "s2"), "s1", "s2", 0},
		{ids("s3", "s1", "s2"), "s3", "s2", 1},
		{ids("a", "b", "c", "d", "e"), "e", "c", 3},
		{ids("s1", "s2", "s3"), "s4", "s1", -1}, // not a voter
		{ids("s1", "s2", "s3"), "s1", "s1", -1}, // the leader itself
		{ids("s1", "s2", "s2", "s3"), "s3", "s1", 1},
		{ids("s1", "s2"), "s2", "s9", 1}, // a leader that is not a voter any more
		{nil, "s1", "s2", -1},
	}
	for _, c := range cases {
		if got := placeInLine(c.voters, c.self, c.leader); got != c.want {
			t.Errorf("placeInLine(%v, self %s, leader %s) = %d, want %d", c.voters, c.self, c.leader, got, c.want)
		}
	}
}

func TestRefused(t *testing.T) {
	addr := closedPort(t)
	err := dialTCP(context.Background(), addr)
	if !Refused(err) {
		t.Fatalf("dial of a closed port: %v; want it refused", err)
	}
	if Refused(nil) || Refused(context.DeadlineExceeded) || Refused(errors.New("connection refused")) {
		t.Error("Refused is true of an error that is not ECONNREFUSED")
	}
	if !Refused(fmt.Errorf("dial raft peer: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})) {
		t.Error("Refused is false of a wrapped ECONNREFUSED")
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fakeNode is a follower whose leader has been silent since silentSince.
type fakeNode struct {
	mu          sync.Mutex
	state       raft.RaftState
	leader      raft.ServerID
	addr        raft.ServerAddress
	silentSince time.Time
}

func (n *fakeNode) State() raft.RaftState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

func (n *fakeNode) LeaderWithID() (raft.ServerAddress, raft.ServerID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr, n.leader
}

func (n *fakeNode) LastContact() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.silentSince
}

// run runs w until the test ends, and waits for Run to return.
func run(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

func testConfig(self raft.ServerID, elected *atomic.Int32) Config {
	return Config{Self: self, Quiet: 20 * time.Millisecond, Stagger: 150 * time.Millisecond, Tick: 5 * time.Millisecond,
		Voters: func() ([]raft.ServerID, error) { return []raft.ServerID{"s1", "s2", "s3"}, nil },
		Elect:  func() error { elected.Add(1); return nil }}
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestWatcherStandsWhenTheLeaderIsGone(t *testing.T) {
	var elected atomic.Int32
	node := &fakeNode{state: raft.Follower, leader: "s1", addr: raft.ServerAddress(closedPort(t)), silentSince: time.Now()}
	w := New(node, testConfig("s2", &elected))
	run(t, w)
	waitUntil(t, "an election", func() bool { return elected.Load() > 0 })
	time.Sleep(100 * time.Millisecond) // many ticks more
	if n := elected.Load(); n != 1 || w.Elections() != 1 {
		t.Fatalf("stood %d times (Elections %d) for one dead leader; want once", n, w.Elections())
	}
}

func TestWatcherWaitsItsTurn(t *testing.T) {
	var elected atomic.Int32
	var at atomic.Pointer[time.Time] // with its monotonic reading, as the watcher's
	node := &fakeNode{state: raft.Follower, leader: "s1", addr: raft.ServerAddress(closedPort(t)), silentSince: time.Now()}
	cfg := testConfig("s3", &elected) // second in line after s2
	probes := make(chan time.Time, 100)
	cfg.Dial = func(ctx context.Context, addr string) error {
		err := dialTCP(ctx, addr)
		probes <- time.Now() // refused: the turn counts from here
		return err
	}
	cfg.Elect = func() error { now := time.Now(); at.Store(&now); elected.Add(1); return nil }
	run(t, New(node, cfg))
	first := <-probes
	waitUntil(t, "an election", func() bool { return elected.Load() > 0 })
	if waited := at.Load().Sub(first); waited < cfg.Stagger {
		t.Fatalf("second in line stood %v after finding the leader dead; want at least the stagger, %v", waited, cfg.Stagger)
	}
}

func TestWatcherFollowsTheFirstInLine(t *testing.T) {
	var elected atomic.Int32
	node := &fakeNode{state: raft.Follower, leader: "s1", addr: raft.ServerAddress(closedPort(t)), silentSince: time.Now()}
	cfg := testConfig("s3", &elected)
	cfg.Stagger = time.Second // ample time to see s2 win first
	probed := make(chan struct{}, 100)
	cfg.Dial = func(ctx context.Context, addr string) error {
		probed <- struct{}{}
		return dialTCP(ctx, addr)
	}
	run(t, New(node, cfg))
	<-probed
	// s2, first in line, wins before s3's turn and is heard from.
	node.mu.Lock()
	node.leader, node.addr, node.silentSince = "s2", "s2:7400", time.Now().Add(time.Hour)
	node.mu.Unlock()
	time.Sleep(cfg.Stagger + 200*time.Millisecond)
	if n := elected.Load(); n != 0 {
		t.Fatalf("stood %d times though the first in line won", n)
	}
}

func TestWatcherLeavesALiveLeaderAlone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	var elected atomic.Int32
	// Silent (a busy or frozen leader's kernel still accepts), but there.
	node := &fakeNode{state: raft.Follower, leader: "s1", addr: raft.ServerAddress(ln.Addr().String()), silentSince: time.Now()}
	run(t, New(node, testConfig("s2", &elected)))
	waitUntil(t, "three probes", func() bool { return accepted.Load() >= 3 })
	if n := elected.Load(); n != 0 {
		t.Fatalf("stood %d times against a leader whose port accepts", n)
	}
}

func TestWatcherWithoutVotersLeavesItToRaft(t *testing.T) {
	var elected atomic.Int32
	node := &fakeNode{state: raft.Follower, leader: "s1", addr: raft.ServerAddress(closedPort(t)), silentSince: time.Now()}
	cfg := testConfig("s2", &elected)
	asked := make(chan struct{}, 100)
	cfg.Voters = func() ([]raft.ServerID, error) {
		asked <- struct{}{}
		return nil, errors.New("raft is shutting down")
	}
	run(t, New(node, cfg))
	for range 3 {
		<-asked
	}
	if n := elected.Load(); n != 0 {
		t.Fatalf("stood %d times without knowing the voters", n)
	}
}

func TestWatcherElectErrorIsNotCounted(t *testing.T) {
	node := &fakeNode{state: raft.Follower, leader: "s1", addr: raft.ServerAddress(closedPort(t)), silentSince: time.Now()}
	var elected atomic.Int32
	cfg := testConfig("s2", &elected)
	tried := make(chan struct{}, 100)
	cfg.Elect = func() error { tried <- struct{}{}; return errors.New("transport closed") }
	w := New(node, cfg)
	run(t, w)
	<-tried
	time.Sleep(50 * time.Millisecond)
	if w.Elections() != 0 || len(tried) != 0 {
		t.Fatalf("Elections %d after a failed try, %d more tries; want 0 and none (once per dead leader)", w.Elections(), len(tried))
	}
}
