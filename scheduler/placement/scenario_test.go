package placement

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/banyan-sched/banyan/pool"
)

// parseConstraint reads label=value, label!=value, exists(label) and
// not_exists(label).
func parseConstraint(s string) (Constraint, bool) {
	for _, op := range []string{OpNotExists, OpExists} {
		if inner, ok := strings.CutPrefix(s, op+"("); ok {
			if label, ok := strings.CutSuffix(inner, ")"); ok {
				return Constraint{Label: label, Op: op}, true
			}
		}
	}
	if l, v, ok := strings.Cut(s, "!="); ok {
		return Constraint{Label: l, Op: OpNotEqual, Value: v}, true
	}
	if l, v, ok := strings.Cut(s, "="); ok {
		return Constraint{Label: l, Op: OpEqual, Value: v}, true
	}
	return Constraint{}, false
}

// parseAsk reads "<resources|-> [<constraint>]...".
func parseAsk(fields []string) (Ask, error) {
	var a Ask
	if len(fields) == 0 {
		return a, nil
	}
	if fields[0] != "-" {
		r, err := pool.ParseResources(fields[0])
		if err != nil {
			return a, err
		}
		a.Resources = r
	}
	for _, f := range fields[1:] {
		c, ok := parseConstraint(f)
		if !ok {
			return a, fmt.Errorf("bad constraint %q", f)
		}
		a.Constraints = append(a.Constraints, c)
	}
	return a, nil
}

func TestScenarios(t *testing.T) {
	f, err := os.Open("testdata/binpack.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var (
		name   string
		nodes  []Node
		placer *Placer
	)
	sc := bufio.NewScanner(f)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := func() string { return "testdata/binpack.txt:" + strconv.Itoa(lineNo) + " (" + name + ")" }
		verb, rest, _ := strings.Cut(line, " ")
		lhs, want, hasWant := strings.Cut(rest, "=>")
		want = strings.TrimSpace(want)
		fields := strings.Fields(lhs)
		switch verb {
		case "scenario":
			name, nodes, placer = rest, nil, nil
		case "node":
			if len(fields) < 2 {
				t.Fatalf("%s: node wants <id> <capacity>", where())
			}
			n := Node{ID: fields[0], Up: true, Capacity: mustParse(t, where(), fields[1])}
			for _, fl := range fields[2:] {
				switch {
				case fl == "down":
					n.Up = false
				case strings.HasPrefix(fl, "used="):
					n.Used = mustParse(t, where(), strings.TrimPrefix(fl, "used="))
				default:
					k, v, _ := strings.Cut(fl, "=")
					if n.Labels == nil {
						n.Labels = map[string]string{}
					}
					n.Labels[k] = v
				}
			}
			nodes = append(nodes, n)
			placer = nil
		case "place":
			ask, err := parseAsk(fields)
			if err != nil || !hasWant {
				t.Fatalf("%s: bad place line: %v", where(), err)
			}
			if placer == nil {
				placer = NewPlacer(nodes)
			}
			id, ok := placer.Place(ask)
			if !ok {
				id = "none"
			}
			if id != want {
				t.Errorf("%s: %s placed on %s, want %s", where(), lhs, id, want)
			}
		case "release":
			if len(fields) != 2 {
				t.Fatalf("%s: release wants <id> <resources>", where())
			}
			if placer == nil {
				placer = NewPlacer(nodes)
			}
			placer.Release(fields[0], mustParse(t, where(), fields[1]))
		case "explain", "explain_now":
			ask, err := parseAsk(fields)
			if err != nil || !hasWant {
				t.Fatalf("%s: bad %s line: %v", where(), verb, err)
			}
			if want == `""` {
				want = ""
			}
			got := Explain(nodes, ask)
			if verb == "explain_now" {
				got = ExplainNow(nodes, ask)
			}
			if got != want {
				t.Errorf("%s: %s %s\n got: %q\nwant: %q", where(), verb, lhs, got, want)
			}
		default:
			t.Fatalf("%s: unknown verb %q", where(), verb)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, where, s string) pool.Resources {
	t.Helper()
	r, err := pool.ParseResources(s)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return r
}
