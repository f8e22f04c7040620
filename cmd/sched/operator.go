package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/buildinfo"
	"github.com/banyan-sched/banyan/scheduler/state"
)

// snapshotMagic starts a snapshot file written by `sched operator snapshot
// save`; the next line is its header (JSON), then the state's bytes.
const snapshotMagic = "BANYAN-SNAPSHOT 1\n"

// snapshotFileHeader is the JSON line after the magic.
type snapshotFileHeader struct {
	Index     uint64   `json:"index"`
	Term      uint64   `json:"term"`
	Size      int64    `json:"size"`
	SHA256    string   `json:"sha256"`
	CreatedMs int64    `json:"created_unix_ms"`
	Version   string   `json:"version"`
	Servers   []string `json:"servers,omitempty"`
}

func newOperatorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Cluster operations: state backups and raft peers"}
	snap := &cobra.Command{Use: "snapshot", Short: "Save, restore and inspect backups of the replicated state"}
	snap.AddCommand(newSnapshotSaveCmd(g), newSnapshotRestoreCmd(g), newSnapshotInspectCmd(g))
	rft := &cobra.Command{Use: "raft", Short: "Raft peers"}
	rft.AddCommand(&cobra.Command{
		Use:   "list-peers",
		Short: "List the raft peers with their address, suffrage and which one leads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "list peers", func(ctx context.Context, c *client) (*pb.MembersResponse, error) {
				return c.cluster.Members(ctx, &pb.MembersRequest{})
			}, func(resp *pb.MembersResponse) error {
				w := newTable()
				fmt.Fprintln(w, "NODE\tADDRESS\tSTATE\tVOTER\tVERSION")
				for _, m := range resp.Members {
					st := "follower"
					if m.Leader {
						st = "leader"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\n", m.Id, m.Address, st, m.Suffrage == "voter", memberVersion(m))
				}
				return w.Flush()
			})
		},
	})
	cmd.AddCommand(snap, rft)
	return cmd
}

// leaderHint matches the leader's address in a FailedPrecondition answer.
var leaderHint = regexp.MustCompile(`not the leader; leader=(\S+)`)

// onLeader runs fn against the cluster and, when the server that answered
// is not the leader, once more against the leader it names.
func onLeader(cmd *cobra.Command, g *globals, timeout time.Duration, fn func(ctx context.Context, c *client) error) error {
	for try := 0; ; try++ {
		c, err := dial(g)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		err = fn(ctx, c)
		cancel()
		c.Close()
		m := leaderHint.FindStringSubmatch(err2string(err))
		if status.Code(err) != codes.FailedPrecondition || m == nil || m[1] == "" || try > 0 {
			return err
		}
		g2 := *g
		g2.addr = m[1]
		g = &g2
	}
}

func err2string(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func newSnapshotSaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Write a consistent snapshot of the state, taken on the leader, to FILE (checksummed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			if _, err := os.Stat(file); err == nil {
				return usageError{fmt.Sprintf("%s exists: name a new file", file)}
			}
			var hdr snapshotFileHeader
			var data []byte
			err := onLeader(cmd, g, 10*time.Minute, func(ctx context.Context, c *client) error {
				stream, err := pb.NewOperatorServiceClient(c.conn).SnapshotSave(ctx, &pb.SnapshotSaveRequest{})
				if err != nil {
					return err
				}
				var a pb.SnapshotAssembler
				for {
					m, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						return err
					}
					if err := a.Add(m); err != nil {
						return fmt.Errorf("the snapshot arrived damaged: %w", err)
					}
				}
				if err := a.Verify(); err != nil {
					return fmt.Errorf("the snapshot arrived damaged: %w", err)
				}
				h := a.Header
				hdr = snapshotFileHeader{Index: h.Index, Term: h.Term, Size: h.Size, SHA256: a.Sum(),
					CreatedMs: h.CreatedUnixMs, Version: h.Version, Servers: h.Servers}
				data = a.Data.Bytes()
				return nil
			})
			if err != nil {
				return fmt.Errorf("snapshot save: %w", err)
			}
			if err := writeSnapshotFile(file, hdr, data); err != nil {
				return fmt.Errorf("snapshot save: %w", err)
			}
			fmt.Printf("Saved snapshot of index %d (term %d) to %s: %d bytes, sha256 %s\n", hdr.Index, hdr.Term, file, hdr.Size, hdr.SHA256)
			return nil
		},
	}
}

// writeSnapshotFile writes the file next to its final name and renames it
// into place, so a crash never leaves half a backup under the name.
func writeSnapshotFile(file string, hdr snapshotFileHeader, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	head, err := jsonLine(hdr)
	if err == nil {
		_, err = io.WriteString(tmp, snapshotMagic+head)
	}
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600) // task environments are in it
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(tmp.Name(), file)
}

// readSnapshotFile reads and checks a snapshot file: magic, header, size
// and SHA-256. Every problem is an error naming it.
func readSnapshotFile(file string) (snapshotFileHeader, []byte, error) {
	var hdr snapshotFileHeader
	f, err := os.Open(file)
	if err != nil {
		return hdr, nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return hdr, nil, fmt.Errorf("%s is not a Banyan snapshot file (written by sched operator snapshot save)", file)
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return hdr, nil, fmt.Errorf("%s: the header is cut short", file)
	}
	if err := jsonUnmarshalStrict(line, &hdr); err != nil {
		return hdr, nil, fmt.Errorf("%s: bad header: %w", file, err)
	}
	if hdr.Size < 0 || hdr.Size > 8<<30 {
		return hdr, nil, fmt.Errorf("%s: header says %d bytes", file, hdr.Size)
	}
	data, err := io.ReadAll(io.LimitReader(br, hdr.Size+1))
	if err != nil {
		return hdr, nil, fmt.Errorf("read %s: %w", file, err)
	}
	if int64(len(data)) != hdr.Size {
		return hdr, nil, fmt.Errorf("%s holds %d bytes of state, its header says %d: the file is truncated or damaged", file, len(data), hdr.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != hdr.SHA256 {
		return hdr, nil, fmt.Errorf("%s: SHA-256 %s does not match its header's %s: the file is damaged", file, got, hdr.SHA256)
	}
	return hdr, data, nil
}

func newSnapshotRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the cluster's state with a saved snapshot (disaster recovery)",
		Long: "Replace the cluster's state with a snapshot saved by `sched operator snapshot save`. The leader\n" +
			"installs it and sends it to the followers; everything since the snapshot is lost. Meant for\n" +
			"recovering a cluster whose servers lost their data, into a fresh cluster.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hdr, data, err := readSnapshotFile(args[0])
			if err != nil {
				return fmt.Errorf("snapshot restore: %w", err)
			}
			var resp *pb.SnapshotRestoreResponse
			err = onLeader(cmd, g, 10*time.Minute, func(ctx context.Context, c *client) error {
				stream, err := pb.NewOperatorServiceClient(c.conn).SnapshotRestore(ctx)
				if err != nil {
					return err
				}
				send := func(m *pb.SnapshotChunk) error {
					if err := stream.Send(m); err != nil && !errors.Is(err, io.EOF) {
						return err
					}
					return nil
				}
				if err := send(&pb.SnapshotChunk{Header: &pb.SnapshotHeader{Index: hdr.Index, Term: hdr.Term, Size: hdr.Size,
					CreatedUnixMs: hdr.CreatedMs, Version: hdr.Version, Servers: hdr.Servers}}); err != nil {
					return err
				}
				for off := 0; off < len(data); off += 1 << 20 {
					if err := send(&pb.SnapshotChunk{Data: data[off:min(off+1<<20, len(data))]}); err != nil {
						return err
					}
				}
				if err := send(&pb.SnapshotChunk{Sha256: hdr.SHA256}); err != nil {
					return err
				}
				resp, err = stream.CloseAndRecv()
				return err
			})
			if err != nil {
				return fmt.Errorf("snapshot restore: %w", err)
			}
			fmt.Printf("Restored snapshot of index %d: %d jobs, %d tasks; the cluster stands at index %d\n",
				hdr.Index, resp.Jobs, resp.Tasks, resp.Index)
			return nil
		},
	}
}

// snapshotSummary is what `snapshot inspect` prints.
type snapshotSummary struct {
	snapshotFileHeader
	Jobs        int            `json:"jobs"`
	JobsByState map[string]int `json:"jobs_by_state"`
	Tasks       int            `json:"tasks"`
	Pools       int            `json:"pools"`
	Agents      int            `json:"agents"`
}

func newSnapshotInspectCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a saved snapshot's index, term, size and counts of jobs, tasks, pools and agents",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hdr, data, err := readSnapshotFile(args[0])
			if err != nil {
				return fmt.Errorf("snapshot inspect: %w", err)
			}
			st, err := state.ReadSnapshot(bytes.NewReader(data), state.DefaultDefaults)
			if err != nil {
				return fmt.Errorf("snapshot inspect: %s: %w", args[0], err)
			}
			sum := snapshotSummary{snapshotFileHeader: hdr, Jobs: len(st.JobIDs()), JobsByState: map[string]int{},
				Tasks: st.TaskCount(), Pools: len(st.Pools().Paths()), Agents: len(st.AgentIDs())}
			for _, id := range st.JobIDs() {
				j, _ := st.Job(id)
				sum.JobsByState[strings.ToLower(strings.TrimPrefix(j.PB.State.String(), "JOB_STATE_"))]++
			}
			if g.output == "json" {
				line, err := jsonLine(sum)
				if err != nil {
					return err
				}
				_, err = os.Stdout.WriteString(line)
				return err
			}
			w := newTable()
			fmt.Fprintf(w, "Index\t%d\nTerm\t%d\nSize\t%d bytes\nSHA-256\t%s\nCreated\t%s\nVersion\t%s\n", hdr.Index, hdr.Term,
				hdr.Size, hdr.SHA256, time.UnixMilli(hdr.CreatedMs).UTC().Format(time.RFC3339), hdr.Version)
			fmt.Fprintf(w, "Servers\t%s\nJobs\t%d\t%s\nTasks\t%d\nPools\t%d\nAgents\t%d\n", strings.Join(hdr.Servers, ", "),
				sum.Jobs, byState(sum.JobsByState), sum.Tasks, sum.Pools, sum.Agents)
			return w.Flush()
		},
	}
}

func byState(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// jsonLine encodes v as one line of JSON, newline included.
func jsonLine(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode json: %w", err)
	}
	return string(b) + "\n", nil
}

// jsonUnmarshalStrict decodes data into v, refusing unknown fields.
func jsonUnmarshalStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// serverClientCmds are the subcommands of `sched server` that are client
// calls (serverClientCommands); `sched server` itself is the daemon.
func serverClientCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newMembersCmd(g), newServerRemoveCmd(g)}
}

func newMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the scheduler servers and which one leads",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "members", func(ctx context.Context, c *client) (*pb.MembersResponse, error) {
				return c.cluster.Members(ctx, &pb.MembersRequest{})
			}, func(resp *pb.MembersResponse) error {
				w := newTable()
				fmt.Fprintln(w, "ID\tADDRESS\tSUFFRAGE\tLEADER\tVERSION")
				for _, m := range resp.Members {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\n", m.Id, m.Address, m.Suffrage, m.Leader, memberVersion(m))
				}
				return w.Flush()
			})
		},
	}
}

// memberVersion renders a member's build and state format, or why not.
func memberVersion(m *pb.Member) string {
	if m.Version == "" {
		return "(did not answer)"
	}
	return fmt.Sprintf("%s, state format %d", m.Version, m.StateFormat)
}

func newServerRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a server from the raft configuration (a dead one, or one being retired)",
		Long: "Remove a server from the raft configuration, so that it no longer counts towards the quorum.\n" +
			"Use it for a server that is gone for good; a removed server that comes back must join again.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "remove server "+args[0], func(ctx context.Context, c *client) (*pb.RemoveResponse, error) {
				return c.cluster.Remove(ctx, &pb.RemoveRequest{Id: args[0]})
			}, func(*pb.RemoveResponse) error {
				fmt.Printf("Removed server %s from the cluster\n", args[0])
				return nil
			})
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print this binary's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Printf("sched %s\nstate format %d (reads formats 1 to %d)\n", buildinfo.Get(), state.SnapshotFormat, state.SnapshotFormat)
			return nil
		},
	}
}

func newJobGCCmd(g *globals) *cobra.Command {
	var maxAge time.Duration
	var maxJobs int64
	var all bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove finished jobs now, as retention would (with the servers' settings or tighter ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxAge < 0 || maxJobs < 0 {
				return usageError{"--max-age and --max-jobs must not be negative"}
			}
			return runCall(cmd, g, "job gc", func(ctx context.Context, c *client) (*pb.GCJobsResponse, error) {
				return pb.NewOperatorServiceClient(c.conn).GCJobs(ctx, &pb.GCJobsRequest{MaxAgeMs: maxAge.Milliseconds(),
					MaxJobs: maxJobs, All: all})
			}, func(r *pb.GCJobsResponse) error {
				fmt.Printf("Removed %d finished jobs\n", r.Removed)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&maxAge, "max-age", 0, "remove finished jobs older than this (default: the servers' --gc-max-age)")
	cmd.Flags().Int64Var(&maxJobs, "max-jobs", 0, "keep at most this many finished jobs (default: the servers' --gc-max-jobs)")
	cmd.Flags().BoolVar(&all, "all", false, "remove every finished job")
	return cmd
}
