package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Network places the cluster's processes and cuts a server off.
type Network interface {
	// ServerAddr is the address server i (0-based) binds and is reached at.
	ServerAddr(i int) string
	// Command wraps a server's command line so it runs where the server
	// lives (its own network namespace, or as is on loopback).
	Command(server int, name string, args ...string) *exec.Cmd
	// Partition cuts server i off from every other process; Heal undoes it.
	// Both return ErrUnsupported where the network cannot partition.
	Partition(ctx context.Context, i int) error
	Heal(ctx context.Context, i int) error
	// CanPartition says whether Partition works.
	CanPartition() bool
}

// ErrUnsupported is returned for a fault the environment cannot make.
var ErrUnsupported = fmt.Errorf("not supported here")

// loopback runs every process on 127.0.0.1 with its own port. It cannot
// partition.
type loopback struct{ addrs []string }

// NewLoopback picks n free loopback ports.
func NewLoopback(n int) (Network, error) {
	addrs, err := FreeLoopbackAddrs(n)
	if err != nil {
		return nil, err
	}
	return &loopback{addrs: addrs}, nil
}

// FreeLoopbackAddrs returns n distinct loopback addresses, each free a
// moment ago. The listeners are held until all n are chosen: a port
// closed at once can come back from the next Listen, and two servers
// given one port fail to bootstrap ("duplicate address").
func FreeLoopbackAddrs(n int) ([]string, error) {
	var addrs []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a loopback port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

func (l *loopback) ServerAddr(i int) string { return l.addrs[i] }
func (l *loopback) Command(_ int, name string, args ...string) *exec.Cmd {
	return exec.Command(name, args...)
}
func (l *loopback) Partition(context.Context, int) error { return ErrUnsupported }
func (l *loopback) Heal(context.Context, int) error      { return ErrUnsupported }
func (l *loopback) CanPartition() bool                   { return false }

// Namespaces is the network the harness builds for partitions: a hub
// namespace (the harness itself, the agents and the client run in it) with
// a bridge, and one namespace per server joined to the bridge by a veth
// pair. Nothing is connected to the host's own network: the addresses
// exist only inside these namespaces, which the harness creates and
// deletes. A partition takes a server's link down.
type Namespaces struct {
	// Prefix names every namespace and link the harness made.
	Prefix string
	n      int
}

// subnet is the private network inside the namespaces.
const subnet = "10.213.0."

// NsEnv is set in the harness's own environment once it runs inside the
// hub namespace; it holds the prefix.
const NsEnv = "BANYAN_CHAOS_NETNS"

// NamespacePrefix returns a prefix unique to this process, short enough
// for link names (15 bytes with a suffix).
func NamespacePrefix() string { return "bc" + strconv.FormatInt(int64(os.Getpid()), 36) }

// HubName is the hub namespace of prefix.
func HubName(prefix string) string { return prefix + "-hub" }

func serverNS(prefix string, i int) string { return prefix + "-s" + strconv.Itoa(i+1) }
func hubLink(prefix string, i int) string  { return prefix + "h" + strconv.Itoa(i+1) }

// ip runs one ip(8) command.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CreateNamespaces builds the hub and n server namespaces (run outside
// them, as root). On error it removes what it made.
func CreateNamespaces(ctx context.Context, prefix string, n int) (err error) {
	defer func() {
		if err != nil {
			DeleteNamespaces(context.Background(), prefix, n)
		}
	}()
	hub := HubName(prefix)
	steps := [][]string{
		{"netns", "add", hub},
		{"-n", hub, "link", "set", "lo", "up"},
		{"-n", hub, "link", "add", prefix + "br", "type", "bridge"},
		{"-n", hub, "addr", "add", subnet + "1/24", "dev", prefix + "br"},
		{"-n", hub, "link", "set", prefix + "br", "up"},
	}
	for i := range n {
		ns, hl := serverNS(prefix, i), hubLink(prefix, i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", hub, "link", "add", hl, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", hub, "link", "set", hl, "master", prefix + "br"},
			[]string{"-n", hub, "link", "set", hl, "up"},
			[]string{"-n", ns, "addr", "add", subnet + strconv.Itoa(11+i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("create test network: %w", err)
		}
	}
	return nil
}

// DeleteNamespaces removes the namespaces (and with them their links).
func DeleteNamespaces(ctx context.Context, prefix string, n int) {
	for i := range n {
		_ = ip(ctx, "netns", "delete", serverNS(prefix, i))
	}
	_ = ip(ctx, "netns", "delete", HubName(prefix))
}

// NewNamespaces is the Network of namespaces made by CreateNamespaces,
// used from inside the hub.
func NewNamespaces(prefix string, n int) *Namespaces { return &Namespaces{Prefix: prefix, n: n} }

// ServerAddr is server i's address on the bridge.
func (s *Namespaces) ServerAddr(i int) string { return subnet + strconv.Itoa(11+i) + ":7400" }

// Command runs name in server i's namespace.
func (s *Namespaces) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", serverNS(s.Prefix, i), name}, args...)...)
}

// Partition takes server i's link to the bridge down.
func (s *Namespaces) Partition(ctx context.Context, i int) error {
	return ip(ctx, "link", "set", hubLink(s.Prefix, i), "down")
}

// Heal brings server i's link back.
func (s *Namespaces) Heal(ctx context.Context, i int) error {
	return ip(ctx, "link", "set", hubLink(s.Prefix, i), "up")
}

// CanPartition is true.
func (s *Namespaces) CanPartition() bool { return true }
