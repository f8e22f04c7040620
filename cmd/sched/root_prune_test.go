package main

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The table of top-level commands names each as it calls itself, in the
// order the full tree lists them.
func TestTopCommandsNamed(t *testing.T) {
	full := newRootCmd()
	var names []string
	for _, c := range full.Commands() {
		if c.Name() != "help" && c.Name() != "completion" {
			names = append(names, c.Name())
		}
	}
	table := topCommands(&globals{})
	if len(names) != len(table) {
		t.Fatalf("full tree has %v, table has %d entries", names, len(table))
	}
	for _, c := range table {
		if got := c.build().Name(); got != c.name {
			t.Errorf("table entry %q builds command %q", c.name, got)
		}
	}
}

// commandNamed steps over exactly the root flags that take a value.
func TestRootValueFlags(t *testing.T) {
	want := map[string]bool{}
	newRootCmd().PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if f.Value.Type() == "bool" {
			return
		}
		want["--"+f.Name] = true
		if f.Shorthand != "" {
			want["-"+f.Shorthand] = true
		}
	})
	for f := range want {
		if !rootValueFlags[f] {
			t.Errorf("root flag %s takes a value but is not in rootValueFlags", f)
		}
	}
	for f := range rootValueFlags {
		if !want[f] {
			t.Errorf("rootValueFlags has %s, which is not a root flag taking a value", f)
		}
	}
}

func TestCommandNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"job", "submit", "f.yaml"}, "job"},
		{[]string{"--addr", "h:1", "job", "submit", "f.yaml"}, "job"},
		{[]string{"--addr=h:1", "-o", "json", "pool", "tree"}, "pool"},
		{[]string{"-ojson", "agent", "list"}, "agent"},
		{[]string{"--token", "job", "job", "list"}, "job"}, // the first "job" is the token
		{[]string{"--help"}, ""},
		{[]string{"-h", "job"}, ""},
		{[]string{"help", "job"}, ""},
		{[]string{"completion", "bash"}, ""},
		{[]string{"jbo", "list"}, ""},
		{[]string{"--", "job"}, ""},
		{[]string{"--unknown", "x", "job"}, ""},
		{[]string{"--addr"}, ""},
	} {
		if got := commandNamed(tc.args); got != tc.want {
			t.Errorf("commandNamed(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// Every command of the full tree is found, with the same usage, in the
// tree built for a call of it.
func TestPrunedTreeFindsEveryCommand(t *testing.T) {
	full := newRootCmd()
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			p := append(append([]string(nil), path...), sub.Name())
			pruned := newRootCmdFor(append([]string{"--addr", "127.0.0.1:1"}, p...))
			got, _, err := pruned.Find(p)
			if err != nil {
				t.Errorf("%v: not found in the pruned tree: %v", p, err)
				continue
			}
			if got.CommandPath() != sub.CommandPath() || got.UsageString() != sub.UsageString() {
				t.Errorf("%v: pruned tree's command differs:\n%s\nfull:\n%s", p, got.UsageString(), sub.UsageString())
			}
			n++
			walk(sub, p)
		}
	}
	walk(full, nil)
	if n < 40 {
		t.Fatalf("walked only %d commands", n)
	}
}

func TestClientProcess(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"job", "submit", "f.yaml"}, true},
		{[]string{"--addr", "h:1", "pool", "tree"}, true},
		{[]string{"events"}, true},
		{[]string{"dev"}, false},
		{[]string{"server"}, false},
		{[]string{"agent"}, false},
		{[]string{"agent", "list"}, true},
		{[]string{"--addr", "h:1", "agent", "drain", "a1"}, true},
		{[]string{"agent", "--id", "list"}, false}, // the daemon, whatever its flags' values
		{[]string{"server", "members"}, true},
		{[]string{"--addr", "h:1", "server", "remove", "s3"}, true},
		{[]string{"server", "--config", "members"}, false},
		{[]string{"encode", "x.mp4"}, false},
		{[]string{"fn", "sleep"}, false},
		{[]string{"--help"}, false},
		{nil, false},
	} {
		if got := clientProcess(tc.args); got != tc.want {
			t.Errorf("clientProcess(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// agentClientCommands and serverClientCommands name subcommands that
// exist under `sched agent` and `sched server`, and are every one of them
// (the thin build runs exactly these itself).
func TestAgentClientCommandsExist(t *testing.T) {
	for _, tc := range []struct {
		cmd  *cobra.Command
		subs map[string]bool
	}{{newAgentCmd(&globals{}), agentClientCommands}, {newServerCmd(&globals{}), serverClientCommands}} {
		for name := range tc.subs {
			c, _, err := tc.cmd.Find([]string{name})
			if err != nil || c == tc.cmd {
				t.Errorf("sched %s has no subcommand %q", tc.cmd.Name(), name)
			}
		}
		for _, c := range tc.cmd.Commands() {
			if !tc.subs[c.Name()] {
				t.Errorf("sched %s %s is not in its client subcommands", tc.cmd.Name(), c.Name())
			}
		}
	}
}
