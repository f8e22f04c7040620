package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkBoltFile reads the two meta pages of a bbolt file and checks that
// the file holds every page the newer valid one counts. bbolt maps the
// file into memory and reads past a cut end with a SIGBUS (a crash no
// recover catches), so a store cut short must be found before it opens.
// A missing file is fine (a new store).
//
// Meta page layout (bbolt's on-disk format): a 16-byte page header, then
// magic u32, version u32, page size u32, flags u32, root bucket (page id
// u64, sequence u64), freelist page id u64, high-water page id u64, txid
// u64 and an FNV-64a checksum u64 of the fields before it.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil // bbolt initialises an empty file
	}
	const metaOff, metaEnd = 16, 80
	type meta struct {
		pageSize          uint32
		freelist, hw, txn uint64
	}
	read := func(off int64) (meta, bool) {
		b := make([]byte, metaEnd)
		if _, err := f.ReadAt(b, off); err != nil {
			return meta{}, false
		}
		if binary.LittleEndian.Uint32(b[metaOff:]) != 0xED0CDAED {
			return meta{}, false
		}
		h := fnv.New64a()
		h.Write(b[metaOff:72])
		if h.Sum64() != binary.LittleEndian.Uint64(b[72:]) {
			return meta{}, false
		}
		return meta{pageSize: binary.LittleEndian.Uint32(b[24:]), freelist: binary.LittleEndian.Uint64(b[48:]),
			hw: binary.LittleEndian.Uint64(b[56:]), txn: binary.LittleEndian.Uint64(b[64:])}, true
	}
	m0, ok0 := read(0)
	var m1 meta
	ok1 := false
	if ok0 && m0.pageSize >= 512 {
		m1, ok1 = read(int64(m0.pageSize))
	}
	m := m0
	switch {
	case ok0 && ok1 && m1.txn > m0.txn:
		m = m1
	case ok0:
	case ok1:
		m = m1
	default:
		return fmt.Errorf("%s has no valid meta page (%d bytes)", path, fi.Size())
	}
	if m.pageSize < 512 || m.hw < 2 || m.freelist >= m.hw {
		return fmt.Errorf("%s has an inconsistent meta page (page size %d, freelist page %d of %d)", path, m.pageSize, m.freelist, m.hw)
	}
	if need := int64(m.hw) * int64(m.pageSize); fi.Size() < need {
		return fmt.Errorf("%s is truncated: %d bytes, its pages need %d", path, fi.Size(), need)
	}
	if fi.Size()%int64(m.pageSize) != 0 {
		return fmt.Errorf("%s is truncated: %d bytes is not a whole number of %d-byte pages", path, fi.Size(), m.pageSize)
	}
	return checkFreelist(f, path, m.pageSize, m.freelist, m.hw)
}

// checkFreelist checks the freelist page the meta names: its header (a
// freelist page with its own id, within the file) and every page id it
// lists. bbolt trusts the count in that header: a damaged one makes it
// loop over billions of ids when the store opens.
func checkFreelist(f *os.File, path string, pageSize uint32, pgid, hw uint64) error {
	if pgid == ^uint64(0) {
		return nil // no freelist kept on disk
	}
	const freelistFlag = 0x10
	off := int64(pgid) * int64(pageSize)
	h := make([]byte, 24)
	if _, err := f.ReadAt(h, off); err != nil {
		return fmt.Errorf("%s: read freelist page %d: %w", path, pgid, err)
	}
	id, flags := binary.LittleEndian.Uint64(h), binary.LittleEndian.Uint16(h[8:])
	count, overflow := uint64(binary.LittleEndian.Uint16(h[10:])), uint64(binary.LittleEndian.Uint32(h[12:]))
	if id != pgid || flags != freelistFlag || pgid+overflow >= hw {
		return fmt.Errorf("%s: freelist page %d is damaged (id %d, flags %#x, overflow %d)", path, pgid, id, flags, overflow)
	}
	data := int64(16)
	if count == 0xFFFF { // the real count is the first element
		count, data = binary.LittleEndian.Uint64(h[16:]), 24
	}
	room := (int64(overflow)+1)*int64(pageSize) - data
	if count > uint64(room/8) {
		return fmt.Errorf("%s: freelist page %d lists %d pages, more than it holds", path, pgid, count)
	}
	ids := make([]byte, count*8)
	if _, err := f.ReadAt(ids, off+data); err != nil {
		return fmt.Errorf("%s: read freelist page %d: %w", path, pgid, err)
	}
	for i := range count {
		if p := binary.LittleEndian.Uint64(ids[i*8:]); p < 2 || p >= hw {
			return fmt.Errorf("%s: freelist page %d lists page %d, outside the file's %d pages", path, pgid, p, hw)
		}
	}
	return nil
}

// checkLimit bounds bbolt's walk of a store's pages at start.
const checkLimit = 30 * time.Second

// checkBoltPages opens a bbolt file read-only and walks every page
// (bbolt's own consistency check): a store with damaged pages inside,
// which bbolt would otherwise loop on or misread when the store is opened
// for writing, is refused with the first problems found. A missing or
// empty file is fine.
func checkBoltPages(path string) (err error) {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s is damaged: %v", path, p)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("open %s to check it: %w", path, err)
	}
	timedOut := false
	defer func() {
		// After a timeout bbolt's walk may still be reading the mapped
		// file: closing would unmap it under that goroutine (a crash). The
		// store is refused and the process is on its way out; leave it.
		if !timedOut {
			db.Close()
		}
	}()
	var problems []error
	err = db.View(func(tx *bolt.Tx) error {
		errs := tx.Check()
		limit := time.NewTimer(checkLimit)
		defer limit.Stop()
		for {
			select {
			case e, ok := <-errs:
				if !ok {
					return nil
				}
				if len(problems) < 5 {
					problems = append(problems, e)
				}
			case <-limit.C:
				timedOut = true
				// A healthy store of any size the log reaches is walked
				// well within this; a damaged one can send bbolt round
				// in circles (the process exits with this error).
				return fmt.Errorf("not checked within %v: its pages are probably damaged", checkLimit)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s is damaged: %w", path, errors.Join(problems...))
	}
	return nil
}
