package placement

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
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
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScenarioFile(t, file) })
	}
}

// parseDevice reads "device <node> <index> <uuid> [memory=Q] [sessions=N]
// [model=M] [mig=PROFILE] [syscap] [unhealthy=WHY] [use=MEM/SESSIONS/TASKS[/whole]]".
func parseDevice(fields []string) (string, Device, error) {
	if len(fields) < 3 {
		return "", Device{}, fmt.Errorf("device wants <node> <index> <uuid>")
	}
	idx, err := strconv.Atoi(fields[1])
	if err != nil {
		return "", Device{}, err
	}
	d := Device{Index: int32(idx), UUID: fields[2],
		Labels: map[string]string{DeviceLabelUUID: fields[2], DeviceLabelIndex: fields[1]}}
	for _, f := range fields[3:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "memory":
			r, err := pool.ParseResources("gpu_memory=" + v)
			if err != nil {
				return "", d, err
			}
			d.Memory = r.GPUMemoryBytes
		case "sessions":
			d.Sessions, err = strconv.ParseInt(v, 10, 64)
		case "model":
			d.Labels[DeviceLabelModel] = v
		case "mig":
			d.MIG, d.Labels[DeviceLabelMIGProfile] = true, v
		case "syscap":
			d.SystemCapped = true
		case "unhealthy":
			d.Unhealthy = v
		case "use":
			parts := strings.Split(v, "/")
			if len(parts) < 3 {
				return "", d, fmt.Errorf("use wants MEM/SESSIONS/TASKS[/whole]")
			}
			r, err := pool.ParseResources("gpu_memory=" + parts[0])
			if err != nil {
				return "", d, err
			}
			d.Use.Memory = r.GPUMemoryBytes
			if d.Use.Sessions, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
				return "", d, err
			}
			if d.Use.Tasks, err = strconv.Atoi(parts[2]); err != nil {
				return "", d, err
			}
			d.Use.Whole = len(parts) > 3 && parts[3] == "whole"
		default:
			return "", d, fmt.Errorf("unknown device field %q", f)
		}
		if err != nil {
			return "", d, err
		}
	}
	return fields[0], d, nil
}

func runScenarioFile(t *testing.T, file string) {
	f, err := os.Open(file)
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
		where := func() string { return file + ":" + strconv.Itoa(lineNo) + " (" + name + ")" }
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
				case strings.HasPrefix(fl, "nvenc_cap="):
					n.NVENCSystemCap, _ = strconv.ParseInt(strings.TrimPrefix(fl, "nvenc_cap="), 10, 64)
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
		case "device":
			id, d, err := parseDevice(fields)
			if err != nil {
				t.Fatalf("%s: %v", where(), err)
			}
			found := false
			for i := range nodes {
				if nodes[i].ID == id {
					nodes[i].Devices = append(nodes[i].Devices, d)
					if d.SystemCapped {
						nodes[i].NVENCSystemUsed += d.Use.Sessions
					}
					found = true
				}
			}
			if !found {
				t.Fatalf("%s: device of unknown node %q", where(), id)
			}
			placer = nil
		case "place":
			ask, err := parseAsk(fields)
			if err != nil || !hasWant {
				t.Fatalf("%s: bad place line: %v", where(), err)
			}
			if placer == nil {
				placer = NewPlacer(nodes)
			}
			id, grants, ok := placer.Place(ask)
			if !ok {
				id = "none"
			}
			if strings.Contains(want, ":") || len(grants) > 0 {
				var uuids []string
				for _, g := range grants {
					uuids = append(uuids, g.UUID)
				}
				id += ":" + strings.Join(uuids, "+")
			}
			if id != want {
				t.Errorf("%s: %s placed on %s, want %s", where(), lhs, id, want)
			}
		case "release":
			if len(fields) < 2 {
				t.Fatalf("%s: release wants <id> <resources> [<device uuid>]...", where())
			}
			if placer == nil {
				placer = NewPlacer(nodes)
			}
			var grants []Grant
			for _, u := range fields[2:] {
				grants = append(grants, Grant{UUID: u})
			}
			placer.Release(fields[0], mustParse(t, where(), fields[1]), grants)
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
