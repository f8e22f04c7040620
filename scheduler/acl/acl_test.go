package acl

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadPolicies(t *testing.T) map[string]*Policy {
	t.Helper()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy files: %v", err)
	}
	out := map[string]*Policy{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		wire, err := ParseYAML(name, data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		p, err := FromPB(wire)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[name] = p
	}
	return out
}

func parseAction(t *testing.T, s string) Action {
	t.Helper()
	for a, n := range actionNames {
		if n == s {
			return a
		}
	}
	t.Fatalf("unknown action %q", s)
	return 0
}

// TestAllowTable runs testdata/decisions.txt: one decision per line.
func TestAllowTable(t *testing.T) {
	policies := loadPolicies(t)
	f, err := os.Open("testdata/decisions.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "|")
		if len(cols) != 4 {
			t.Fatalf("line %d: want 4 columns: %q", line, text)
		}
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		tok := Token{AccessorID: "acc-1", Name: "t"}
		if cols[0] == "management" {
			tok.Management = true
		} else if cols[0] != "" {
			tok.Policies = strings.Split(cols[0], ",")
		}
		err := Allow(tok, policies, parseAction(t, cols[1]), cols[2])
		got := "allow"
		if err != nil {
			got = err.Error()
			if !errors.Is(err, ErrDenied) {
				t.Errorf("line %d: denial %v does not match ErrDenied", line, err)
			}
		}
		if got != cols[3] {
			t.Errorf("line %d: %s %s %q: got %q, want %q", line, cols[0], cols[1], cols[2], got, cols[3])
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d cases read", n)
	}
}

func TestMatches(t *testing.T) {
	cases := []struct {
		pattern, pool string
		want          bool
	}{
		{"studio", "studio", true},
		{"studio", "studio/ingest", true},
		{"studio", "studiox", false},
		{"studio/*", "studio", false},
		{"studio/*", "studio/a/b", true},
		{"stu*", "studio", true},
		{"*", "default", true},
	}
	for _, c := range cases {
		if got := Matches(c.pattern, c.pool); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.pattern, c.pool, got, c.want)
		}
	}
}

func TestParseYAMLErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"p", "pools:\n  default: write\n", `pool capability "write": want one of read, submit, admin`},
		{"p", "cluster: admin\n", `cluster capability "admin": want one of read, operator`},
		{"p", "agent: read\n", `agent capability "read": want one of write`},
		{"p", "pool:\n  default: read\n", `unknown field "pool"`},
		{"p", "pools:\n  \"a*b\": read\n", `'*' only at the end`},
		{"p", "pools:\n  /abs: read\n", `is not a pool path`},
		{"bad name", "cluster: read\n", `character ' ' not allowed`},
		{"", "cluster: read\n", `must have 1 to 128 characters`},
	}
	for _, c := range cases {
		_, err := ParseYAML(c.name, []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("ParseYAML(%q, %q) = %v, want an invalid-policy error containing %q", c.name, c.yaml, err, c.want)
		}
	}
}

func TestPolicyRoundTrip(t *testing.T) {
	for name, p := range loadPolicies(t) {
		back, err := FromPB(p.PB())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if back.PB().String() != p.PB().String() {
			t.Errorf("%s: round trip changed %v to %v", name, p.PB(), back.PB())
		}
	}
}

func TestHashSecret(t *testing.T) {
	a, b := HashSecret("s3cret"), HashSecret("s3cret")
	if len(a) != 32 || string(a) != string(b) || string(a) == string(HashSecret("other")) {
		t.Fatalf("HashSecret is not a stable SHA-256: %x %x", a, b)
	}
}
