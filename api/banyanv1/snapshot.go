package banyanv1

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// SnapshotAssembler collects a snapshot stream (OperatorService): the
// header first, then the data, then the SHA-256 of the data. Both ends of
// a save and a restore use it, so they agree on what a whole, undamaged
// snapshot is.
type SnapshotAssembler struct {
	// Header is the stream's header, once received.
	Header *SnapshotHeader
	// Data is the snapshot's bytes received so far.
	Data bytes.Buffer
	// Limit bounds the size a header may announce (0: no bound).
	Limit int64

	sum string
	h   hash.Hash
}

// Add takes the next message of the stream; a message out of order, or
// data past the size the header announced, is an error naming it.
func (a *SnapshotAssembler) Add(m *SnapshotChunk) error {
	switch {
	case a.Header == nil:
		if m.GetHeader() == nil {
			return errors.New("the snapshot stream must start with its header")
		}
		if s := m.Header.Size; s < 0 || a.Limit > 0 && s > a.Limit {
			return fmt.Errorf("the header announces %d bytes, outside 0..%d", s, a.Limit)
		}
		a.Header, a.h = m.Header, sha256.New()
	case a.sum != "":
		return errors.New("data after the snapshot's checksum")
	case m.Sha256 != "":
		a.sum = m.Sha256
	default:
		if int64(a.Data.Len()+len(m.Data)) > a.Header.Size {
			return fmt.Errorf("more than the %d bytes the header announced", a.Header.Size)
		}
		a.Data.Write(m.Data)
		a.h.Write(m.Data)
	}
	return nil
}

// Verify checks that the whole snapshot arrived: all the bytes the header
// announced and a checksum that matches them.
func (a *SnapshotAssembler) Verify() error {
	if a.Header == nil {
		return errors.New("the snapshot stream ended before its header")
	}
	if n := int64(a.Data.Len()); n != a.Header.Size {
		return fmt.Errorf("got %d bytes, the header announced %d (truncated?)", n, a.Header.Size)
	}
	if got := hex.EncodeToString(a.h.Sum(nil)); a.sum == "" || got != a.sum {
		return fmt.Errorf("SHA-256 %s does not match the stream's %q: the snapshot is damaged", got, a.sum)
	}
	return nil
}

// Sum is the checksum the stream carried (after Verify: of the data).
func (a *SnapshotAssembler) Sum() string { return a.sum }
