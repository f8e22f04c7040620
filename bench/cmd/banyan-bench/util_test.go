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
	const stall, limit, step = time.Minute, time.Hour, time.Second
	ended := func(s pb.JobState) *pb.Job {
		return &pb.Job{State: s, Counts: &pb.TaskCounts{Total: 100, Succeeded: 100}}
	}
	cases := []struct {
		name string
		// poll returns the job (or error) of the i-th call, at i seconds.
		poll    func(i int) (*pb.Job, error)
		want    pb.JobState // the ended job's state, when no error is wanted
		wantErr string
		// the wait lasts from minWait to minWait+step
		minWait time.Duration
	}{
		{name: "ends at once", poll: func(int) (*pb.Job, error) { return ended(pb.JobState_JOB_STATE_SUCCEEDED), nil },
			want: pb.JobState_JOB_STATE_SUCCEEDED},
		{name: "a failed job has ended too", poll: func(i int) (*pb.Job, error) {
			if i < 5 {
				return running(int32(i)), nil
			}
			return ended(pb.JobState_JOB_STATE_FAILED), nil
		}, want: pb.JobState_JOB_STATE_FAILED, minWait: 5 * time.Second},
		{name: "slow but moving: outlasts many stalls", poll: func(i int) (*pb.Job, error) {
			if i >= 3000 { // one task ends every 50 s, under the stall
				return ended(pb.JobState_JOB_STATE_SUCCEEDED), nil
			}
			return running(int32(i / 50)), nil
		}, want: pb.JobState_JOB_STATE_SUCCEEDED, minWait: 3000 * time.Second},
		{name: "stuck", poll: func(int) (*pb.Job, error) { return running(7), nil },
			wantErr: "task counts have not changed for 1m0s", minWait: stall},
		{name: "stuck after moving", poll: func(i int) (*pb.Job, error) { return running(int32(min(i, 30))), nil },
			wantErr: "task counts have not changed for 1m0s", minWait: 30*time.Second + stall},
		{name: "stuck with no counts", poll: func(int) (*pb.Job, error) { return &pb.Job{State: pb.JobState_JOB_STATE_QUEUED}, nil },
			wantErr: "task counts have not changed for 1m0s", minWait: stall},
		{name: "stuck, then one poll fails: the counts are named, and the error", poll: func(i int) (*pb.Job, error) {
			if i == 60 {
				return nil, errors.New("unavailable")
			}
			return running(7), nil
		}, wantErr: "task counts have not changed for 1m0s: total:", minWait: stall},
		{name: "server gone", poll: func(i int) (*pb.Job, error) {
			if i < 10 {
				return running(int32(i)), nil
			}
			return nil, errors.New("connection refused")
		}, wantErr: "the server has not answered for 1m0s: connection refused", minWait: 9*time.Second + stall},
		{name: "no job in the answer", poll: func(int) (*pb.Job, error) { return nil, nil },
			wantErr: "the server has not answered for 1m0s: the server answered with no job", minWait: stall},
		{name: "errors, then ends", poll: func(i int) (*pb.Job, error) {
			if i < 30 {
				return nil, errors.New("unavailable")
			}
			return ended(pb.JobState_JOB_STATE_SUCCEEDED), nil
		}, want: pb.JobState_JOB_STATE_SUCCEEDED, minWait: 30 * time.Second},
		{name: "moving for ever: the limit", poll: func(i int) (*pb.Job, error) { return running(int32(i % 2)), nil },
			wantErr: "job not done after 1h0m0s, its task counts still moving", minWait: limit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1000, 0)}
			start := clock.now()
			i := 0
			get := func() (*pb.Job, error) {
				if i > 100_000 {
					t.Fatalf("still waiting after %d polls (%v)", i, clock.now().Sub(start))
				}
				i++
				return tc.poll(i - 1)
			}
			job, err := waitJobDone(get, stall, limit, step, clock.now, clock.sleep)
			waited := clock.now().Sub(start)
			if waited < tc.minWait || waited > tc.minWait+step {
				t.Errorf("the wait lasted %v, want %v", waited, tc.minWait)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				if strings.HasPrefix(tc.name, "stuck, then one poll fails") && !strings.Contains(err.Error(), "unavailable") {
					t.Fatalf("err %v does not name the last poll's error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v after %v", err, waited)
			}
			if job.GetState() != tc.want {
				t.Fatalf("job %v, want %v", job.GetState(), tc.want)
			}
		})
	}
}
