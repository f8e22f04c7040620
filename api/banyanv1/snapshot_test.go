package banyanv1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestSnapshotAssembler(t *testing.T) {
	data := []byte("state bytes")
	sum := sha256.Sum256(data)
	good := []*SnapshotChunk{{Header: &SnapshotHeader{Size: int64(len(data))}}, {Data: data[:5]}, {Data: data[5:]},
		{Sha256: hex.EncodeToString(sum[:])}}
	var a SnapshotAssembler
	for _, m := range good {
		if err := a.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Verify(); err != nil || a.Data.String() != string(data) {
		t.Fatalf("a whole stream: %v %q", err, a.Data.String())
	}
	for name, tc := range map[string]struct {
		msgs []*SnapshotChunk
		want string
	}{
		"no header":       {good[1:], "start with its header"},
		"truncated":       {[]*SnapshotChunk{good[0], good[1], good[3]}, "truncated"},
		"damaged":         {[]*SnapshotChunk{good[0], good[1], {Data: []byte("XXXXXX")}, good[3]}, "damaged"},
		"too much":        {[]*SnapshotChunk{good[0], good[1], good[2], {Data: []byte("x")}}, "more than"},
		"after checksum":  {append(append([]*SnapshotChunk{}, good...), &SnapshotChunk{Data: []byte("x")}), "after"},
		"over the limit":  {[]*SnapshotChunk{{Header: &SnapshotHeader{Size: 1 << 40}}}, "outside"},
		"no checksum":     {good[:3], "damaged"},
		"nothing at all":  {nil, "before its header"},
		"negative header": {[]*SnapshotChunk{{Header: &SnapshotHeader{Size: -1}}}, "outside"},
	} {
		a := SnapshotAssembler{Limit: 1 << 30}
		var err error
		for _, m := range tc.msgs {
			if err = a.Add(m); err != nil {
				break
			}
		}
		if err == nil {
			err = a.Verify()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}
