package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
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
	return nil
}
