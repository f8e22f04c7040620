package main

// sched events: follow the state's changes from the replicated log, the
// way an ingest system follows them instead of polling. The stream is
// resumable: the command keeps the cursor (index.position) of the last
// event it printed and, when the stream drops (a server stops, a
// subscriber falls behind), reconnects (to the next server of --addr when
// one is gone) and resumes right after it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/events"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type eventsFlags struct {
	topics []string
	pool   string
	from   string
	follow bool
}

func newEventsCmd(g *globals) *cobra.Command {
	f := &eventsFlags{}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream job, task, agent and pool changes from the replicated log, resumable from an index",
		Long: `Stream the state's changes as the servers apply them. Without --from only new
changes are shown; --from 0 replays all a server still holds (a job's whole
history while its log is not compacted), --from INDEX[.POSITION] resumes
right there (each event prints its cursor). A dropped stream is resumed
after the last event printed, on the next server of --addr if one is gone.
With -o json each event is one JSON object on a line, and caught_up and
progress lines (topic "stream") say every change up to their index has been
seen, so a consumer may resume from index+1 (their "next") even when its
filters skip everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			c, err := dial(g)
			if err != nil {
				return err
			}
			defer c.Close()
			p := &eventPrinter{w: os.Stdout, json: g.output == "json"}
			return followEvents(cmd.Context(), c.conn, req, f.follow, p.print)
		},
	}
	cmd.Flags().StringSliceVar(&f.topics, "topic", nil, "only these topics: job, task, agent, pool (comma separated; default all)")
	cmd.Flags().StringVar(&f.pool, "pool", "", "only events of this pool and the pools below it")
	cmd.Flags().StringVar(&f.from, "from", "", "start at this index (INDEX or INDEX.POSITION; 0: from the start); default: new events only")
	cmd.Flags().BoolVar(&f.follow, "follow", true, "keep following new events; false: stop once caught up")
	return cmd
}

// request builds the first request from the flags.
func (f *eventsFlags) request() (*pb.EventsRequest, error) {
	req := &pb.EventsRequest{Pool: f.pool}
	for _, t := range f.topics {
		if t = strings.TrimSpace(t); t != "" {
			req.Topics = append(req.Topics, t)
		}
	}
	if f.from == "" {
		req.Newest = true
		return req, nil
	}
	c, err := parseCursor(f.from)
	if err != nil {
		return nil, err
	}
	req.FromIndex, req.FromPosition = c.Index, c.Position
	return req, nil
}

// parseCursor reads INDEX or INDEX.POSITION.
func parseCursor(s string) (events.Cursor, error) {
	idx, pos, hasPos := strings.Cut(strings.TrimSpace(s), ".")
	i, err := strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return events.Cursor{}, usageError{fmt.Sprintf("--from %q: want INDEX or INDEX.POSITION", s)}
	}
	c := events.Cursor{Index: i}
	if hasPos {
		p, err := strconv.ParseUint(pos, 10, 32)
		if err != nil {
			return events.Cursor{}, usageError{fmt.Sprintf("--from %q: want INDEX or INDEX.POSITION", s)}
		}
		c.Position = uint32(p)
	}
	return c, nil
}

// eventCursor is where a stream resumes: right after the last event seen,
// or after the last index a caught_up mark covered, whichever is later.
type eventCursor struct {
	req *pb.EventsRequest
}

// seen moves the cursor past an event or a mark.
func (c *eventCursor) seen(ev *pb.Event) {
	next := events.CursorOf(ev).After()
	if isMark(ev) {
		next = events.Cursor{Index: ev.Index + 1}
	}
	cur := events.Cursor{Index: c.req.FromIndex, Position: c.req.FromPosition}
	if c.req.Newest || cur.Before(next) {
		c.req.Newest, c.req.FromIndex, c.req.FromPosition = false, next.Index, next.Position
	}
}

// isMark reports whether a message is a caught_up or progress mark: every
// event up to its index has been sent or filtered out.
func isMark(ev *pb.Event) bool { return ev.Topic == "stream" }

// streamAction is what the follower does after a stream ends with err.
type streamAction int

const (
	actionStop      streamAction = iota // return the error
	actionResume                        // reconnect to the same server and resume
	actionNext                          // resume on the next server
	actionElsewhere                     // this server lacks the events: ask the next, fail once all did
)

// actionFor decides how to go on after a stream error.
func actionFor(err error) streamAction {
	if errors.Is(err, io.EOF) {
		return actionResume // the server ended the stream
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown:
		return actionNext
	case codes.ResourceExhausted: // fell behind: the server still holds what comes next
		return actionResume
	case codes.FailedPrecondition:
		return actionElsewhere
	}
	return actionStop
}

// followEvents streams events through print until ctx ends (an
// interrupt: not an error), or, without follow, until the first caught_up
// mark. It reconnects after drops with a backoff that resets once events
// flow again.
func followEvents(ctx context.Context, conn *failover, req *pb.EventsRequest, follow bool,
	print func(*pb.Event) error) error {
	cur := &eventCursor{req: req}
	server := conn.order()[0]
	backoff := 100 * time.Millisecond
	refused := 0 // servers in a row that no longer hold the cursor
	for {
		progress, done, err := streamOnce(ctx, conn, server, cur, follow, print)
		if done {
			return err // caught up without follow (nil), or printing failed
		}
		if ctx.Err() != nil {
			return nil // interrupted
		}
		if progress {
			backoff, refused = 100*time.Millisecond, 0
		}
		switch actionFor(err) {
		case actionStop:
			return fmt.Errorf("events from %s: %w", conn.addrs[server], err)
		case actionElsewhere:
			if refused++; refused >= len(conn.conns) {
				return fmt.Errorf("events from %s: %w", conn.addrs[server], err)
			}
			server = (server + 1) % len(conn.conns)
			continue
		case actionNext:
			server = (server + 1) % len(conn.conns)
		}
		fmt.Fprintf(os.Stderr, "sched events: stream ended (%s); resuming at %d.%d\n",
			status.Convert(err).Message(), cur.req.FromIndex, cur.req.FromPosition)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// streamOnce runs one stream on one server. progress says whether it got
// anything; done whether it is finished (caught up without follow).
func streamOnce(ctx context.Context, conn *failover, server int, cur *eventCursor, follow bool,
	print func(*pb.Event) error) (progress, done bool, err error) {
	// A server sends a caught_up (or, replaying its log, a progress) mark
	// at once; one that sends nothing within perTry is hung: ask the next.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(perTry, func() { cancel(errNoAnswer) })
	defer timer.Stop()
	st, err := pb.NewEventServiceClient(conn.conns[server]).Stream(ctx, cur.req)
	if err != nil {
		return false, false, streamErr(ctx, err)
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return progress, false, streamErr(ctx, err)
		}
		timer.Stop()
		progress = true
		conn.answered(server)
		if err := print(ev); err != nil {
			return progress, true, fmt.Errorf("print event: %w", err)
		}
		cur.seen(ev)
		if ev.Kind == "caught_up" && !follow {
			return progress, true, nil
		}
	}
}

// errNoAnswer ends a stream whose server sent nothing in time.
var errNoAnswer = errors.New("the server sent nothing within " + perTry.String())

// streamErr names a hung server as such.
func streamErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errNoAnswer) {
		return status.Error(codes.DeadlineExceeded, errNoAnswer.Error())
	}
	return err
}

// eventJSON is one event as `sched events -o json` prints it.
type eventJSON struct {
	// Cursor is the event's place (INDEX.POSITION; none on a caught_up or
	// progress mark); Next is the --from that resumes right after this line.
	Cursor        string `json:"cursor,omitempty"`
	Next          string `json:"next"`
	Index         uint64 `json:"index"`
	Position      uint32 `json:"position"`
	Time          string `json:"time,omitempty"`
	Topic         string `json:"topic"`
	Kind          string `json:"kind"`
	JobID         string `json:"job_id,omitempty"`
	TaskID        string `json:"task_id,omitempty"`
	AgentID       string `json:"agent_id,omitempty"`
	Pool          string `json:"pool,omitempty"`
	Name          string `json:"name,omitempty"`
	State         string `json:"state,omitempty"`
	PreviousState string `json:"previous_state,omitempty"`
	Attempt       int32  `json:"attempt,omitempty"`
	Outcome       string `json:"outcome,omitempty"`
	FailureClass  string `json:"failure_class,omitempty"`
	Reason        string `json:"reason,omitempty"`
	ReplacedBy    string `json:"replaced_by,omitempty"`
	GPUs          int32  `json:"gpus,omitempty"`
	UnhealthyGPUs int32  `json:"unhealthy_gpus,omitempty"`
}

// eventPrinter prints events as a table (marks left out) or as JSON lines
// (marks included).
type eventPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

func (p *eventPrinter) print(ev *pb.Event) error {
	if p.json {
		b, err := json.Marshal(toEventJSON(ev))
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	if isMark(ev) {
		return nil
	}
	if !p.header {
		p.header = true
		if _, err := fmt.Fprintf(p.w, "%-10s %-12s %-6s %-10s %-16s %-22s %s\n",
			"CURSOR", "TIME", "TOPIC", "KIND", "ID", "STATE", "DETAIL"); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(p.w, "%-10s %-12s %-6s %-10s %-16s %-22s %s\n", events.CursorOf(ev).String(),
		fmtTime(ev.UnixMs), ev.Topic, ev.Kind, eventID(ev), eventStates(ev), eventDetail(ev))
	return err
}

func toEventJSON(ev *pb.Event) eventJSON {
	out := eventJSON{Cursor: events.CursorOf(ev).String(), Index: ev.Index, Position: ev.Position,
		Topic: ev.Topic, Kind: ev.Kind, JobID: ev.JobId, TaskID: ev.TaskId, AgentID: ev.AgentId, Pool: ev.Pool,
		Name: ev.Name, State: ev.State, PreviousState: ev.PreviousState, Attempt: ev.Attempt, Outcome: ev.Outcome,
		FailureClass: ev.FailureClass, Reason: ev.Reason, ReplacedBy: ev.ReplacedBy, GPUs: ev.Gpus,
		UnhealthyGPUs: ev.UnhealthyGpus}
	next := events.CursorOf(ev).After()
	if isMark(ev) {
		out.Cursor, next = "", events.Cursor{Index: ev.Index + 1}
	}
	out.Next = next.String()
	if ev.UnixMs != 0 {
		out.Time = time.UnixMilli(ev.UnixMs).UTC().Format(time.RFC3339Nano)
	}
	return out
}

func eventID(ev *pb.Event) string {
	switch ev.Topic {
	case "task":
		return ev.TaskId
	case "job":
		return ev.JobId
	case "agent":
		return ev.AgentId
	}
	return ev.Pool
}

// shortState writes a job's or task's state in lower case without its
// prefix ("TASK_STATE_RUNNING": "running").
func shortState(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "TASK_STATE_"), "JOB_STATE_")
	return strings.ToLower(s)
}

func eventStates(ev *pb.Event) string {
	if ev.State == "" {
		return "-"
	}
	if ev.PreviousState == "" || ev.PreviousState == ev.State {
		return shortState(ev.State)
	}
	return shortState(ev.PreviousState) + ">" + shortState(ev.State)
}

func eventDetail(ev *pb.Event) string {
	var parts []string
	if ev.Topic == "task" || ev.Topic == "job" {
		if ev.Name != "" {
			parts = append(parts, ev.Name)
		}
	}
	if ev.Topic == "task" && ev.Attempt > 0 {
		a := fmt.Sprintf("attempt %d", ev.Attempt)
		if ev.AgentId != "" {
			a += " on " + ev.AgentId
		}
		parts = append(parts, a)
	}
	if ev.Topic == "job" || ev.Topic == "task" {
		parts = append(parts, "pool "+ev.Pool)
	}
	if ev.Outcome != "" {
		o := ev.Outcome
		if ev.FailureClass != "" && ev.FailureClass != ev.Outcome {
			o += " (" + ev.FailureClass + ")"
		}
		parts = append(parts, o)
	}
	if ev.ReplacedBy != "" {
		parts = append(parts, "replaced by "+ev.ReplacedBy)
	}
	if ev.Topic == "agent" && ev.Gpus > 0 {
		parts = append(parts, fmt.Sprintf("%d GPUs, %d unhealthy", ev.Gpus, ev.UnhealthyGpus))
	}
	if ev.Reason != "" {
		parts = append(parts, strings.Join(strings.Fields(ev.Reason), " "))
	}
	return strings.Join(parts, ", ")
}
