package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as a worker: with BANYAN_TEST_WORKER=1 it serves
// the line protocol. "sleep MS" sleeps, "crash" exits mid-call, "fail"
// answers an error, anything else echoes.
func TestMain(m *testing.M) {
	if os.Getenv("BANYAN_TEST_WORKER") == "1" {
		err := Serve(os.Stdin, os.Stdout, func(args []string) (string, error) {
			switch {
			case len(args) == 2 && args[0] == "sleep":
				ms, _ := strconv.Atoi(args[1])
				time.Sleep(time.Duration(ms) * time.Millisecond)
				return "slept", nil
			case len(args) == 1 && args[0] == "crash":
				os.Exit(3)
			case len(args) == 1 && args[0] == "fail":
				return "", errors.New("bad input")
			}
			return fmt.Sprint(os.Getpid()), nil
		})
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testPool(t *testing.T, cfg PoolConfig) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Command, cfg.Env = "test", []string{exe}, []string{"BANYAN_TEST_WORKER=1"}
	p := NewPool(cfg)
	t.Cleanup(p.Close)
	return p
}

// collect submits calls and waits for all results, in submission order.
func collect(t *testing.T, p *Pool, calls []Call) []Result {
	t.Helper()
	out := make([]Result, len(calls))
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		c := calls[i]
		c.Done = func(r Result) { out[i] = r; wg.Done() }
		p.Submit(c)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls did not finish")
	}
	return out
}

// TestMicroBatching: 300 calls share a handful of worker processes (queue
// depth / BatchTarget of them at most), not one process each.
func TestMicroBatching(t *testing.T) {
	p := testPool(t, PoolConfig{MaxWorkers: 8, BatchTarget: 10})
	calls := make([]Call, 300)
	for i := range calls {
		calls[i] = Call{ID: fmt.Sprint(i), Args: []string{"pid"}}
	}
	res := collect(t, p, calls)
	pids := map[string]int{}
	for i, r := range res {
		if r.Outcome != OutcomeSucceeded {
			t.Fatalf("call %d: %+v", i, r)
		}
		pids[r.Output]++
	}
	if len(pids) > 8 || len(pids) == 0 {
		t.Fatalf("300 calls ran in %d processes, want between 1 and 8", len(pids))
	}
	t.Logf("300 calls in %d worker processes: %v", len(pids), pids)
}

// TestPriorityOrder: with one worker busy, a latency call that arrives after
// many batch calls is served before them.
func TestPriorityOrder(t *testing.T) {
	p := testPool(t, PoolConfig{MaxWorkers: 1, BatchTarget: 1000})
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	submit := func(id string, class int32, args ...string) {
		wg.Add(1)
		p.Submit(Call{ID: id, Class: class, Args: args, Done: func(Result) {
			mu.Lock()
			order = append(order, id)
			mu.Unlock()
			wg.Done()
		}})
	}
	submit("blocker", 2, "sleep", "200")
	time.Sleep(50 * time.Millisecond) // the worker is busy with the blocker
	for i := 0; i < 5; i++ {
		submit(fmt.Sprintf("batch-%d", i), 2)
	}
	submit("urgent", 1)
	wg.Wait()
	if order[0] != "blocker" || order[1] != "urgent" {
		t.Fatalf("order %v: the latency call must go next", order)
	}
}

// TestCrashIsLostAndReplaced: a call that kills its worker is reported lost
// (the scheduler retries it without using a retry); the next call gets a new
// worker and succeeds; a call the function rejects fails.
func TestCrashIsLostAndReplaced(t *testing.T) {
	p := testPool(t, PoolConfig{MaxWorkers: 1})
	res := collect(t, p, []Call{{ID: "a", Args: []string{"crash"}}, {ID: "b"}, {ID: "c", Args: []string{"fail"}}})
	if res[0].Outcome != OutcomeLost || res[1].Outcome != OutcomeSucceeded ||
		res[2].Outcome != OutcomeFailed || res[2].Error != "bad input" {
		t.Fatalf("results %+v", res)
	}
}

// TestWarmWorkersWaitForCalls: SetWarm starts workers before any call, and
// the calls that come find them (no start-up).
func TestWarmWorkersWaitForCalls(t *testing.T) {
	p := testPool(t, PoolConfig{MaxWorkers: 4})
	p.SetWarm(2)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if w, _ := p.Stats(); w == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("warm workers did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	res := collect(t, p, []Call{{ID: "x"}})
	if !res[0].Warm || res[0].Outcome != OutcomeSucceeded {
		t.Fatalf("call on a warm worker: %+v", res[0])
	}
	if w, _ := p.Stats(); w != 2 {
		t.Fatalf("%d workers after the call, want the 2 warm ones", w)
	}
	p.SetWarm(0)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if w, _ := p.Stats(); w == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("surplus warm workers did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTimeout: a call over its timeout ends as timeout and its worker is
// replaced.
func TestTimeout(t *testing.T) {
	p := testPool(t, PoolConfig{MaxWorkers: 1})
	res := collect(t, p, []Call{{ID: "slow", Args: []string{"sleep", "5000"}, Timeout: 100 * time.Millisecond}, {ID: "next"}})
	if res[0].Outcome != OutcomeTimeout || res[1].Outcome != OutcomeSucceeded {
		t.Fatalf("results %+v", res)
	}
}
