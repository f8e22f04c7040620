//go:build !schedthin

package main

import (
	"fmt"
	"log/slog"
	"os/user"
	"strconv"
	"strings"

	"github.com/banyan-sched/banyan/agent/cgroup"
	"github.com/banyan-sched/banyan/agent/process"
)

// userLookup is how --run-as finds a user: os/user in the binary, a fake in
// tests.
type userLookup struct {
	byName func(string) (*user.User, error)
	byID   func(string) (*user.User, error)
	groups func(*user.User) ([]string, error)
}

// systemUsers looks users up through os/user.
var systemUsers = userLookup{byName: user.Lookup, byID: user.LookupId,
	groups: func(u *user.User) ([]string, error) { return u.GroupIds() }}

// resolveRunAs turns --run-as into the user tasks run as, for an agent
// running as euid. Without --run-as a root agent refuses to start (tasks
// run as root only when asked: --run-as root) and any other agent runs
// tasks as itself. Switching to another user needs root.
func resolveRunAs(name string, euid int, lookup userLookup) (*process.User, error) {
	if name == "" {
		if euid == 0 {
			return nil, usageError{"the agent runs as root: give --run-as USER, the unprivileged user tasks run as " +
				"(the deploy unit uses banyan), or --run-as root to run tasks as root"}
		}
		return nil, nil
	}
	u, err := lookup.byName(name)
	if err != nil {
		if _, numErr := strconv.ParseUint(name, 10, 32); numErr == nil {
			u, err = lookup.byID(name)
		}
	}
	if err != nil {
		return nil, usageError{fmt.Sprintf("--run-as %s: %v", name, err)}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, usageError{fmt.Sprintf("--run-as %s: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)}
	}
	if euid != 0 && int(uid) != euid {
		return nil, usageError{fmt.Sprintf("--run-as %s: running tasks as another user needs root; this agent runs as uid %d", name, euid)}
	}
	gids, err := lookup.groups(u)
	if err != nil {
		return nil, fmt.Errorf("--run-as %s: groups: %w", name, err)
	}
	out := &process.User{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--run-as %s: non-numeric group id %q", name, g)
		}
		out.Groups = append(out.Groups, uint32(n))
	}
	return out, nil
}

// agentCgroups sets up the agent's task cgroups, logging once how tasks
// will be limited; nil means tasks run without cgroups.
func agentCgroups(id string, disabled bool, log *slog.Logger) *cgroup.Manager {
	if disabled {
		log.Warn("cgroups off (--no-cgroups): tasks run without resource limits; cancel kills their process groups only")
		return nil
	}
	m, err := cgroup.Setup(cgroup.Options{Name: "banyan-tasks-" + id})
	if err != nil {
		log.Warn("cannot create cgroups: tasks run without resource limits; cancel kills their process groups only", "err", err)
		return nil
	}
	if missing := m.Missing(); len(missing) > 0 {
		log.Warn("cgroup controllers not available to the agent: those limits are not enforced",
			"missing", strings.Join(missing, ","), "cgroup", m.Dir())
	}
	return m
}
