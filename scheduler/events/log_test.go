package events

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// entry makes n events for one entry, at positions 0..n-1.
func entry(n int) []*pb.Event {
	evs := make([]*pb.Event, n)
	for i := range evs {
		evs[i] = &pb.Event{Topic: "task", Position: uint32(i)}
	}
	return evs
}

func cursors(evs []*pb.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = CursorOf(ev).String()
	}
	return out
}

func drain(t *testing.T, s *Sub) []string {
	t.Helper()
	var out []string
	for {
		b, err := s.Next(context.Background(), 3, false)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cursors(b.Events)...)
		if b.CaughtUp {
			return out
		}
	}
}

func TestSubscribeFrom(t *testing.T) {
	l := New(Options{Capacity: 100})
	l.Append(3, entry(2))
	l.Append(4, nil)
	l.Append(5, entry(3))
	cases := []struct {
		from Cursor
		want string
	}{
		{Cursor{}, "[3.0 3.1 5.0 5.1 5.2]"},
		{Cursor{Index: 3, Position: 1}, "[3.1 5.0 5.1 5.2]"},
		{Cursor{Index: 4}, "[5.0 5.1 5.2]"},
		{Cursor{Index: 5, Position: 2}, "[5.2]"},
		{Cursor{Index: 5, Position: 3}, "[]"},
		{Cursor{Index: 9}, "[]"},
	}
	for _, tc := range cases {
		s, err := l.Subscribe(tc.from, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(drain(t, s)); got != tc.want {
			t.Errorf("from %s: %s, want %s", tc.from, got, tc.want)
		}
		s.Close()
	}
	// A cursor in the future skips what comes before it.
	s, _ := l.Subscribe(Cursor{Index: 6, Position: 1}, nil)
	l.Append(6, entry(3))
	if got := fmt.Sprint(drain(t, s)); got != "[6.1 6.2]" {
		t.Errorf("future cursor: %s", got)
	}
}

// Events pushed out of the ring move the horizon; a cursor before it is
// refused with the oldest index held, never answered with a gap.
func TestTooOld(t *testing.T) {
	l := New(Options{Capacity: 4, MaxLag: 2})
	l.Append(1, entry(3))
	l.Append(2, entry(3)) // pushes out 1.0, 1.1
	if h, _ := l.Horizon(); h != (Cursor{Index: 1, Position: 2}) {
		t.Fatalf("horizon %s", h)
	}
	_, err := l.Subscribe(Cursor{Index: 1, Position: 1}, nil)
	var old *TooOldError
	if !errors.As(err, &old) || old.Horizon.Index != 1 {
		t.Fatalf("err %v", err)
	}
	s, err := l.Subscribe(Cursor{Index: 1, Position: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(drain(t, s)); got != "[1.2 2.0 2.1 2.2]" {
		t.Errorf("from the horizon: %s", got)
	}
}

// An entry given by its last events only (state.State.KeepChanges) holds
// those and nothing older: the horizon is its first one, a cursor before
// is refused, and a subscriber, caught up or not, is dropped to resume
// from the stored log, never handed the entry's tail as if it were whole.
func TestAppendEntryTail(t *testing.T) {
	l := New(Options{Capacity: 4, MaxLag: 2})
	l.Append(1, entry(2))
	caughtUp, _ := l.Subscribe(Cursor{}, nil)
	drain(t, caughtUp)
	behind, _ := l.Subscribe(Cursor{}, nil)
	l.Append(2, entry(10)[6:]) // 2.6 to 2.9 of ten
	if h, _ := l.Horizon(); h != (Cursor{Index: 2, Position: 6}) {
		t.Fatalf("horizon %s, want 2.6", h)
	}
	for name, s := range map[string]*Sub{"caught up": caughtUp, "behind": behind} {
		if _, err := s.Next(context.Background(), 10, false); !errors.Is(err, ErrSlow) {
			t.Errorf("%s: %v, want ErrSlow", name, err)
		}
	}
	var old *TooOldError
	if _, err := l.Subscribe(Cursor{Index: 2}, nil); !errors.As(err, &old) || old.Horizon != (Cursor{Index: 2, Position: 6}) {
		t.Fatalf("from 2.0: %v, want too old with horizon 2.6", err)
	}
	s, err := l.Subscribe(Cursor{Index: 2, Position: 6}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(drain(t, s)); got != "[2.6 2.7 2.8 2.9]" {
		t.Errorf("from the horizon: %s", got)
	}
}

// After a snapshot restore the log holds what is applied from then on:
// the horizon is the entry after the snapshot, given by the applied hint
// or, without one, the next entry appended.
func TestReset(t *testing.T) {
	l := New(Options{})
	l.Append(1, entry(1))
	s, _ := l.Subscribe(Cursor{}, nil)
	l.Reset(0)
	if _, err := s.Next(context.Background(), 10, true); !errors.Is(err, ErrReset) {
		t.Fatalf("subscriber after reset: %v", err)
	}
	if _, err := l.Subscribe(Cursor{Index: 50}, func() uint64 { return 100 }); err == nil {
		t.Fatal("subscribed before the snapshot")
	} else if !errors.As(err, new(*TooOldError)) {
		t.Fatal(err)
	}
	if _, err := l.Subscribe(Cursor{Index: 101}, nil); err != nil {
		t.Fatal(err)
	}
	l2 := New(Options{})
	l2.Reset(0)
	l2.Append(7, entry(1))
	if h, ok := l2.Horizon(); !ok || h != (Cursor{Index: 7}) {
		t.Fatalf("horizon %s %v", h, ok)
	}
	// Knowing the snapshot's index, the horizon is the entry after it,
	// whatever comes first after.
	l2.Reset(40)
	l2.Append(43, entry(1))
	if h, ok := l2.Horizon(); !ok || h != (Cursor{Index: 41}) {
		t.Fatalf("horizon after a reset at 40: %s %v", h, ok)
	}
}

// A subscriber that does not read falls behind and is dropped while its
// next event is still held; Append never waits for it, and it resumes
// from its last event with nothing lost.
func TestSlowSubscriber(t *testing.T) {
	l := New(Options{Capacity: 100, MaxLag: 10})
	s, _ := l.Subscribe(Cursor{}, nil)
	l.Append(1, entry(4))
	b, err := s.Next(context.Background(), 2, true)
	if err != nil || len(b.Events) != 2 {
		t.Fatal(b, err)
	}
	last := CursorOf(b.Events[1])
	done := make(chan struct{})
	go func() {
		for i := uint64(2); i < 10; i++ {
			l.Append(i, entry(2))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Append blocked on a slow subscriber")
	}
	if _, err := s.Next(context.Background(), 2, true); !errors.Is(err, ErrSlow) {
		t.Fatalf("slow subscriber: %v", err)
	}
	r, err := l.Subscribe(last.After(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, r)
	if len(got) != 2+16 || got[0] != "1.2" {
		t.Fatalf("resumed: %v", got)
	}
}

func TestNextWaits(t *testing.T) {
	l := New(Options{})
	s, _ := l.SubscribeNewest()
	l.Append(1, entry(1))
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.Append(2, entry(1))
	}()
	b, err := s.Next(context.Background(), 10, true)
	if err != nil || fmt.Sprint(cursors(b.Events)) != "[1.0]" {
		t.Fatal(b, err)
	}
	b, err = s.Next(context.Background(), 10, true)
	if err != nil || fmt.Sprint(cursors(b.Events)) != "[2.0]" || !b.CaughtUp || b.LastIndex != 2 {
		t.Fatal(b, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Next(ctx, 10, true); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	l.Close()
	if _, err := s.Next(context.Background(), 10, true); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// One large entry does not drop a subscriber that had kept up; a
// subscriber whose next event is pushed out is dropped, never skipped.
func TestLagMeasuredBeforeEntry(t *testing.T) {
	l := New(Options{Capacity: 50, MaxLag: 5})
	s, _ := l.Subscribe(Cursor{}, nil)
	l.Append(1, entry(20))
	if got := drain(t, s); len(got) != 20 {
		t.Fatalf("after a large entry: %d events", len(got))
	}
	l.Append(2, entry(3))
	l.Append(3, entry(60)) // more than the ring holds: 2.x pushed out unread
	if _, err := s.Next(context.Background(), 10, true); !errors.Is(err, ErrSlow) {
		t.Fatalf("subscriber whose events were pushed out: %v", err)
	}
}
