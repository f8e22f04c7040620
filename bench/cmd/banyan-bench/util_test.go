package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// fakeClock is a clock that only sleep moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time        { return c.t }
func (c *fakeClock) sleep(d time.Duration) { c.t = c.t.Add(d) }

// running is a job of 100 tasks, succeeded of them done.
func running(succeeded int32) *pb.Job {
	return &pb.Job{State: pb.JobState_JOB_STATE_RUNNING, Counts: &pb.TaskCounts{Total: 100, Succeeded: succeeded}}
}

func TestWaitJobDone(t *testing.T) {
	const stall, step = time.Minute, time.Second
	done := &pb.Job{State: pb.JobState_JOB_STATE_SUCCEEDED, Counts: &pb.TaskCounts{Total: 100, Succeeded: 100}}
	cases := []struct {
		name string
		// poll returns the job (or error) of the i-th call.
		poll    func(i int) (*pb.Job, error)
		wantErr string // "" means the ended job comes back
		minWait time.Duration
	}{
		{name: "ends at once", poll: func(int) (*pb.Job, error) { return done, nil }},
		{name: "slow but moving: outlasts many stalls", poll: func(i int) (*pb.Job, error) {
			// one task ends every 50 polls (under the stall), 100 tasks
			if i >= 5000 {
				return done, nil
			}
			return running(int32(i / 50)), nil
		}, minWait: 5000 * step},
		{name: "stuck", poll: func(i int) (*pb.Job, error) { return running(7), nil },
			wantErr: "task counts have not changed for 1m0s"},
		{name: "stuck after moving", poll: func(i int) (*pb.Job, error) { return running(int32(min(i, 30))), nil },
			wantErr: "have not changed for 1m0s"},
		{name: "server gone", poll: func(i int) (*pb.Job, error) {
			if i < 10 {
				return running(int32(i)), nil
			}
			return nil, errors.New("connection refused")
		}, wantErr: "the server has not answered for 1m0s: connection refused"},
		{name: "errors then ends", poll: func(i int) (*pb.Job, error) {
			if i < 30 {
				return nil, errors.New("unavailable")
			}
			return done, nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1000, 0)}
			start := clock.now()
			i := 0
			job, err := waitJobDone(func() (*pb.Job, error) { i++; return tc.poll(i - 1) }, stall, step, clock.now, clock.sleep)
			waited := clock.now().Sub(start)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				if waited > 10*stall {
					t.Fatalf("gave up after %v, want about the stall %v", waited, stall)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v after %v", err, waited)
			}
			if job.State != pb.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job %v, want the ended job", job.State)
			}
			if waited < tc.minWait {
				t.Fatalf("returned after %v, before the job ended (%v)", waited, tc.minWait)
			}
		})
	}
}
