package pool

import (
	"math/rand"
	"regexp"
	"strings"
	"testing"
)

// validSegment must accept exactly what the regular expression it
// replaces accepts.
func TestValidSegmentMatchesRegexp(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,62})$`)
	cases := []string{"", "a", "0", "-", "_", "a-", "a_b", "-a", "_a", "A", "aB", "a.b", "a/b", "ingest",
		"studio-2", strings.Repeat("a", 63), strings.Repeat("a", 64), "é", "a b", "a\n"}
	const alphabet = "az09-_A.Z/ é"
	rng := rand.New(rand.NewSource(15))
	for i := 0; i < 20000; i++ {
		n := rng.Intn(70)
		var b strings.Builder
		for j := 0; j < n; j++ {
			if rng.Intn(4) == 0 {
				b.WriteByte(alphabet[rng.Intn(len(alphabet))])
			} else {
				b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789-_"[rng.Intn(38)])
			}
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		if got, want := validSegment(s), re.MatchString(s); got != want {
			t.Fatalf("validSegment(%q) = %v, the regexp says %v", s, got, want)
		}
	}
}
