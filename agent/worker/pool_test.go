package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as a worker: with BANYAN_TEST_WORKER=1 it serves
// the line protocol. It says "up PID" on its stderr when it starts. "sleep
// MS" sleeps, "crash" says "dying" on stderr and exits mid-call, "fail"
// answers an error, "log N WORD" writes N lines "WORD I" on stderr and
// answers "logged", "traceparent" answers the request's traceparent,
// anything else echoes its pid.
func TestMain(m *testing.M) {
	if os.Getenv("BANYAN_TEST_WORKER") == "1" {
		fmt.Fprintf(os.Stderr, "up %d\n", os.Getpid())
		err := ServeRequests(os.Stdin, os.Stdout, func(req Request) (string, error) {
			args := req.Args
			switch {
			case len(args) == 2 && args[0] == "sleep":
				ms, _ := strconv.Atoi(args[1])
				time.Sleep(time.Duration(ms) * time.Millisecond)
				return "slept", nil
			case len(args) == 1 && args[0] == "crash":
				fmt.Fprintln(os.Stderr, "dying")
				os.Exit(3)
			case len(args) == 1 && args[0] == "fail":
				return "", errors.New("bad input")
			case len(args) == 3 && args[0] == "log":
				n, _ := strconv.Atoi(args[1])
				w := bufio.NewWriter(os.Stderr)
				w.WriteString(logLines(n, args[2]))
				w.Flush()
				return "logged", nil
			case len(args) == 1 && args[0] == "traceparent":
				return req.Traceparent, nil
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

// logLines is what "log N WORD" writes.
func logLines(n int, word string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s %d\n", word, i)
	}
	return b.String()
}

// syncBuffer is a buffer safe to write from a worker's stderr pump while
// a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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

// TestCallOutputOnWarmWorker: calls served one after another by one warm
// worker each get exactly their own output: the response's output as
// stdout, and what the worker wrote on stderr while serving the call, even
// far more than a pipe holds; what it wrote on starting goes to the pool's
// Stderr; a worker that dies mid-call leaves its last words with the call.
// Each call's traceparent reaches the worker in its request line.
func TestCallOutputOnWarmWorker(t *testing.T) {
	idle := &syncBuffer{}
	p := testPool(t, PoolConfig{MaxWorkers: 1, Stderr: idle})
	p.SetWarm(1)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(idle.String(), "up ") {
		if time.Now().After(deadline) {
			t.Fatalf("the warm worker did not start: stderr %q", idle.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	type kept struct{ stdout, stderr syncBuffer }
	run := func(c Call) (Result, *kept) {
		t.Helper()
		k := &kept{}
		c.Started = func() Output { return Output{Stdout: &k.stdout, Stderr: &k.stderr} }
		return collect(t, p, []Call{c})[0], k
	}
	tp := func(n int) string { return fmt.Sprintf("00-%032x-%016x-01", n, n) }

	res, a := run(Call{ID: "job-1.0/1", Args: []string{"log", "20000", "a"}, Traceparent: tp(1)})
	if res.Outcome != OutcomeSucceeded || !res.Warm || a.stdout.String() != "logged" {
		t.Fatalf("log call: %+v, stdout %q", res, a.stdout.String())
	}
	if want := logLines(20000, "a"); a.stderr.String() != want {
		t.Fatalf("log call's stderr: %d bytes, want the %d it wrote", len(a.stderr.String()), len(want))
	}
	for i := 2; i <= 3; i++ {
		res, b := run(Call{ID: fmt.Sprintf("job-1.%d/1", i), Args: []string{"traceparent"}, Traceparent: tp(i)})
		if res.Outcome != OutcomeSucceeded || b.stdout.String() != tp(i) || b.stderr.String() != "" || res.Output != tp(i) {
			t.Fatalf("call %d: %+v, stdout %q, stderr %q; want the traceparent %s and no stderr",
				i, res, b.stdout.String(), b.stderr.String(), tp(i))
		}
	}
	res, c := run(Call{ID: "job-1.4/1", Args: []string{"crash"}})
	if res.Outcome != OutcomeLost || c.stderr.String() != "dying\n" || c.stdout.String() != "" {
		t.Fatalf("crash: %+v, stdout %q, stderr %q", res, c.stdout.String(), c.stderr.String())
	}
	// The replacement starts for this call: its start-up line may come
	// after the request was sent, and then counts as the call's.
	res, d := run(Call{ID: "job-1.5/1", Args: []string{"log", "3", "d"}})
	startup, ok := strings.CutSuffix(d.stderr.String(), "d 0\nd 1\nd 2\n")
	if res.Outcome != OutcomeSucceeded || !ok || startup != "" && !regexp.MustCompile(`^up \d+\n$`).MatchString(startup) {
		t.Fatalf("call on the replacement worker: %+v, stderr %q", res, d.stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(idle.String()+startup, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "up ") || !strings.HasPrefix(lines[1], "up ") {
		t.Fatalf("outside calls the pool's stderr got %q, want the two start-ups only", idle.String())
	}
}
