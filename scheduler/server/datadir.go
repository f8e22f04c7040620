package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// The data dir holds task environments and results in the raft log and the
// snapshots: only the server's user may read it. Directories are 0700 and
// files 0600, including those raft's file snapshot store creates with the
// process umask.
const (
	dataDirMode  fs.FileMode = 0o700
	dataFileMode fs.FileMode = 0o600
)

// prepareDataDir creates the data dir 0700 and tightens what an earlier
// version left readable to others.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	return tighten(dir)
}

// tighten sets every directory under root (root included) to 0700 and every
// regular file to 0600.
func tighten(root string) error {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil {
			switch {
			case d.IsDir():
				err = os.Chmod(path, dataDirMode)
			case d.Type().IsRegular():
				err = os.Chmod(path, dataFileMode)
			}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil // raft reaped an old snapshot meanwhile
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("restrict permissions under %s: %w", root, err)
	}
	return nil
}

// privateSnapshots is raft's file snapshot store with each finished
// snapshot's directory and files restricted to the server's user.
type privateSnapshots struct {
	raft.SnapshotStore
	dir string // the store's "snapshots" directory
}

func newPrivateSnapshots(dataDir string, store raft.SnapshotStore) *privateSnapshots {
	return &privateSnapshots{SnapshotStore: store, dir: filepath.Join(dataDir, "snapshots")}
}

// Create starts a snapshot whose files are tightened when it is closed.
func (p *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := p.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, fmt.Errorf("create snapshot: %w", err)
	}
	return &privateSink{SnapshotSink: sink, dir: p.dir}, nil
}

type privateSink struct {
	raft.SnapshotSink
	dir string
}

// Close finishes the snapshot, then restricts its files.
func (s *privateSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return tighten(s.dir)
}
