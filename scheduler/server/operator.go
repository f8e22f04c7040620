package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/buildinfo"
	"github.com/banyan-sched/banyan/scheduler/state"
)

// snapshotChunk is how many bytes of a snapshot one message carries.
const snapshotChunk = 1 << 20

// operatorService backs up and restores the replicated state (leader only).
type operatorService struct {
	pb.UnimplementedOperatorServiceServer
	s *Server
}

// notLeader is the answer of a server that is not the leader: the CLI
// follows the address it names.
func (o *operatorService) notLeader() error {
	if o.s.IsLeader() {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition, "not the leader; leader=%s", o.s.LeaderAddr())
}

// SnapshotSave streams the state as the leader has it after a barrier (so
// that everything committed before the call is in it).
func (o *operatorService) SnapshotSave(req *pb.SnapshotSaveRequest, stream pb.OperatorService_SnapshotSaveServer) error {
	if err := o.notLeader(); err != nil {
		return err
	}
	if err := o.s.raft.Barrier(30 * time.Second).Error(); err != nil {
		return status.Errorf(codes.Unavailable, "snapshot save: wait for the log to apply: %v", err)
	}
	snap, err := o.s.fsm.Snapshot()
	if err != nil {
		return status.Errorf(codes.Internal, "snapshot save: %v", err)
	}
	data, err := snap.(*fsmSnapshot).bytes()
	if err != nil {
		return status.Errorf(codes.Internal, "snapshot save: %v", err)
	}
	term, _ := strconv.ParseUint(o.s.raft.Stats()["term"], 10, 64)
	hdr := &pb.SnapshotHeader{Index: o.s.raft.AppliedIndex(), Term: term, Size: int64(len(data)),
		CreatedUnixMs: o.s.cfg.Clock().UnixMilli(), Version: buildinfo.Get().String(), Servers: o.s.configServers()}
	if err := stream.Send(&pb.SnapshotChunk{Header: hdr}); err != nil {
		return err
	}
	for off := 0; off < len(data); off += snapshotChunk {
		if err := stream.Send(&pb.SnapshotChunk{Data: data[off:min(off+snapshotChunk, len(data))]}); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(data)
	o.s.log.Info("snapshot saved by an operator", "index", hdr.Index, "bytes", hdr.Size)
	return stream.Send(&pb.SnapshotChunk{Sha256: hex.EncodeToString(sum[:])})
}

// configServers lists the raft configuration as id=address.
func (s *Server) configServers() []string {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []string
	for _, srv := range f.Configuration().Servers {
		out = append(out, string(srv.ID)+"="+string(srv.Address))
	}
	return out
}

// SnapshotRestore reads a whole snapshot, checks it (size, SHA-256, and
// that it decodes as a Banyan state), then has raft install it on the
// leader and send it to the followers.
func (o *operatorService) SnapshotRestore(stream pb.OperatorService_SnapshotRestoreServer) error {
	if err := o.notLeader(); err != nil {
		return err
	}
	a := pb.SnapshotAssembler{Limit: maxRestoreBytes}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := a.Add(m); err != nil {
			return status.Errorf(codes.InvalidArgument, "snapshot restore: %v", err)
		}
	}
	if err := a.Verify(); err != nil {
		return status.Errorf(codes.InvalidArgument, "snapshot restore: %v", err)
	}
	hdr, buf := a.Header, &a.Data
	st, err := state.ReadSnapshot(bytes.NewReader(buf.Bytes()), o.s.fsm.defaults)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "snapshot restore: %v", err)
	}
	jobs, tasks := len(st.JobIDs()), st.TaskCount()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: hdr.Size}
	if err := o.s.raft.Restore(meta, bytes.NewReader(buf.Bytes()), 0); err != nil {
		return status.Errorf(codes.Internal, "snapshot restore: %v", err)
	}
	o.s.log.Warn("state restored from a snapshot by an operator", "from_index", hdr.Index, "jobs", jobs, "tasks", tasks,
		"index", o.s.raft.AppliedIndex())
	return stream.SendAndClose(&pb.SnapshotRestoreResponse{Index: o.s.raft.AppliedIndex(), Jobs: int64(jobs), Tasks: int64(tasks)})
}

// maxRestoreBytes bounds a snapshot a restore will hold in memory.
const maxRestoreBytes = 8 << 30
