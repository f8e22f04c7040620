package pool

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output in testdata/*.txt")

// TestScenarios runs the scripts in testdata. A script is a list of blocks
// separated by blank lines; '#' lines are comments. A block is commands,
// then optionally "----" and the output they must print. Commands:
//
//	reset                                 empty tree, usage, nodes, tasks
//	pool PATH [g=RES] [max=RES]           create a pool (max names only ceilings)
//	cluster RES                           capacity of the agents up
//	usage PATH RES                        a pool's own usage (rebuilds the view)
//	add PATH RES / remove PATH RES        View.Add / View.Remove
//	admit PATH ask=RES                    View.Admit (and Lender when borrowed)
//	within PATH ask=RES                   View.WithinGuarantee
//	share PATH...                         View.Share and Weight
//	order PATH...                         View.Order
//	node ID free=RES                      a node the pending task may use
//	run ID pool=P node=N ask=RES [class=latency|batch|opp] [prio=N] [started=MS]
//	victims PATH ask=RES now=MS [min=MS] [max=N]   View.Victims
//
// RES is a resource list as ParseResources reads it ("cpu=4,gpu=1").
// Run with -rewrite to regenerate the expected output, then review the diff.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}

type block struct {
	comments []string // lines before the commands
	cmds     []string
	hasOut   bool
	want     []string
	line     int
}

func parseScript(t *testing.T, data string) []block {
	var out []block
	cur := block{}
	inOut := false
	flush := func() {
		if len(cur.cmds) > 0 || len(cur.comments) > 0 {
			out = append(out, cur)
		}
		cur, inOut = block{}, false
	}
	for i, line := range strings.Split(data, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case inOut:
			cur.want = append(cur.want, line)
		case line == "----":
			cur.hasOut, inOut = true, true
		case strings.HasPrefix(line, "#") && len(cur.cmds) == 0:
			cur.comments = append(cur.comments, line)
		case strings.HasPrefix(line, "#"):
			t.Fatalf("line %d: comment inside a block's commands", i+1)
		default:
			if len(cur.cmds) == 0 {
				cur.line = i + 1
			}
			cur.cmds = append(cur.cmds, line)
		}
	}
	flush()
	return out
}

func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseScript(t, string(data))
	h := newHarness()
	var rewritten strings.Builder
	for _, b := range blocks {
		var got []string
		for _, c := range b.cmds {
			lines, err := h.run(t, c)
			if err != nil {
				t.Fatalf("%s:%d: %s: %v", file, b.line, c, err)
			}
			got = append(got, lines...)
		}
		if !*rewrite && !slices.Equal(got, b.want) {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, b.line, strings.Join(b.cmds, "; "),
				strings.Join(got, "\n"), strings.Join(b.want, "\n"))
		}
		for _, l := range b.comments {
			rewritten.WriteString(l + "\n")
		}
		for _, l := range b.cmds {
			rewritten.WriteString(l + "\n")
		}
		if len(got) > 0 || b.hasOut {
			rewritten.WriteString("----\n")
			for _, l := range got {
				rewritten.WriteString(l + "\n")
			}
		}
		rewritten.WriteString("\n")
	}
	if *rewrite {
		out := strings.TrimSuffix(rewritten.String(), "\n")
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type harness struct {
	tree    *Tree
	cluster Resources
	usage   map[string]Resources
	view    *View
	nodes   []NodeFree
	running []Running
}

func newHarness() *harness {
	return &harness{tree: NewTree(), usage: map[string]Resources{}}
}

func (h *harness) v() *View {
	if h.view == nil {
		h.view = NewView(h.tree, h.usage, h.cluster)
	}
	return h.view
}

// args splits "cmd POS k=v ..." into positional fields and key=values.
func args(line string) (cmd string, pos []string, kv map[string]string) {
	f := strings.Fields(line)
	kv = map[string]string{}
	for _, a := range f[1:] {
		k, v, ok := strings.Cut(a, "=")
		if ok && !strings.Contains(k, "/") && k != "" && !isResource(k) {
			kv[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	return f[0], pos, kv
}

func isResource(k string) bool { return slices.Contains(ResourceNames, normalizeName(k)) }

func (h *harness) run(t *testing.T, line string) ([]string, error) {
	cmd, pos, kv := args(line)
	resArg := func(s string) (Resources, error) { return ParseResources(s) }
	intArg := func(k string) (int64, error) {
		if kv[k] == "" {
			return 0, nil
		}
		return strconv.ParseInt(kv[k], 10, 64)
	}
	switch cmd {
	case "reset":
		*h = *newHarness()
	case "pool":
		g, err := resArg(kv["g"])
		if err != nil {
			return nil, err
		}
		m, names, err := ParseResourcesNamed(kv["max"])
		if err != nil {
			return nil, err
		}
		q := Quota{Guaranteed: g}
		if err := q.SetMax(m, names); err != nil {
			return nil, err
		}
		h.view = nil
		if err := h.tree.Put(pos[0], q, true); err != nil {
			return []string{"error: " + err.Error()}, nil
		}
	case "cluster":
		r, err := resArg(strings.Join(pos, ","))
		h.cluster, h.view = r, nil
		return nil, err
	case "usage":
		r, err := resArg(pos[1])
		h.usage[pos[0]], h.view = r, nil
		return nil, err
	case "add", "remove":
		r, err := resArg(pos[1])
		if cmd == "add" {
			h.v().Add(pos[0], r)
		} else {
			h.v().Remove(pos[0], r)
		}
		return nil, err
	case "admit", "within":
		ask, err := resArg(kv["ask"])
		if err != nil {
			return nil, err
		}
		if cmd == "within" {
			return []string{fmt.Sprint(h.v().WithinGuarantee(pos[0], ask))}, nil
		}
		d := h.v().Admit(pos[0], ask)
		switch {
		case !d.OK:
			return []string{"no: " + d.Reason}, nil
		case d.Borrowed:
			lender := h.v().Lender(pos[0], ask)
			if lender == "" {
				lender = "none"
			}
			return []string{"ok borrowed lender=" + lender}, nil
		}
		return []string{"ok"}, nil
	case "share":
		var out []string
		for _, p := range pos {
			out = append(out, fmt.Sprintf("%s share=%.3f weight=%.3f rolled=%s", p, h.v().Share(p), h.v().Weight(p), h.v().Rolled(p)))
		}
		return out, nil
	case "order":
		return []string{strings.Join(h.v().Order(pos), " ")}, nil
	case "node":
		r, err := resArg(kv["free"])
		h.nodes = append(h.nodes, NodeFree{Node: pos[0], Free: r})
		return nil, err
	case "run":
		ask, err := resArg(kv["ask"])
		if err != nil {
			return nil, err
		}
		prio, err := intArg("prio")
		if err != nil {
			return nil, err
		}
		started, err := intArg("started")
		if err != nil {
			return nil, err
		}
		class := map[string]Class{"": ClassBatch, "latency": ClassLatency, "batch": ClassBatch, "opp": ClassOpportunistic}[kv["class"]]
		h.running = append(h.running, Running{TaskID: pos[0], Pool: kv["pool"], Node: kv["node"], Ask: ask,
			Class: class, Priority: int32(prio), StartedMs: started})
		// The task's usage counts in the view like any placed task.
		h.usage[kv["pool"]], h.view = h.usage[kv["pool"]].Add(ask), nil
	case "victims":
		ask, err := resArg(kv["ask"])
		if err != nil {
			return nil, err
		}
		now, err := intArg("now")
		if err != nil {
			return nil, err
		}
		minRun, err := intArg("min")
		if err != nil {
			return nil, err
		}
		maxV := int64(100)
		if kv["max"] != "" {
			if maxV, err = intArg("max"); err != nil {
				return nil, err
			}
		}
		pre, ok := h.v().Victims(pos[0], ask, h.nodes, GroupByNode(h.running), now, PreemptPolicy{MinRuntimeMs: minRun, MaxVictims: int(maxV)})
		if !ok {
			return []string{"none"}, nil
		}
		return []string{fmt.Sprintf("node=%s victims=%s", pre.Node, strings.Join(pre.Victims, ","))}, nil
	default:
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	return nil, nil
}
