package state

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// pendingView is a snapshot view being written by another goroutine, and
// the bytes the whole state serialised in one pass gave when it was taken.
type pendingView struct {
	v    *SnapshotView
	want []byte
	done chan struct{}
	got  bytes.Buffer
	err  error
}

// Random histories take snapshot views every few commands and write them
// on other goroutines while Apply goes on (run it with -race): each view
// writes exactly the bytes the one-pass serialisation (the reference
// WriteSnapshot of before) gave at the moment it was taken, and
// WriteSnapshot gives them too. Views are released in a different order
// from the one they were taken in, sometimes while others are held.
func TestSnapshotViewsWriteWhileApplyRuns(t *testing.T) {
	for seed := int64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			var held []*pendingView
			var wg sync.WaitGroup
			finish := func(p *pendingView) {
				<-p.done
				if p.err != nil {
					t.Fatalf("persist: %v", p.err)
				}
				if !bytes.Equal(p.got.Bytes(), p.want) {
					t.Fatalf("a view written while Apply ran gave %d bytes, differing from the %d the state gave when it was taken",
						p.got.Len(), len(p.want))
				}
				p.v.Release()
			}
			n, views := 0, 0
			h := runHistoryHooks(t, seed, 300, nil, func(s *State) {
				n++
				if n%3 != 0 {
					return
				}
				var want, now bytes.Buffer
				if err := writeSnapshotReference(s, &want); err != nil {
					t.Fatal(err)
				}
				if err := s.WriteSnapshot(&now); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(want.Bytes(), now.Bytes()) {
					t.Fatalf("WriteSnapshot gave %d bytes, differing from the reference's %d", now.Len(), want.Len())
				}
				if len(held) >= 2 || (len(held) > 0 && n%2 == 0) {
					i := n % len(held)
					finish(held[i])
					held = append(held[:i], held[i+1:]...)
				}
				v, err := s.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				views++
				p := &pendingView{v: v, want: want.Bytes(), done: make(chan struct{})}
				held = append(held, p)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer close(p.done)
					p.err = v.Persist(&p.got)
				}()
			})
			for _, p := range held {
				finish(p)
			}
			wg.Wait()
			if h.s.views != 0 {
				t.Fatalf("%d views still counted as held after every one was released", h.s.views)
			}
			t.Logf("%d views written while Apply ran", views)
		})
	}
}
