package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os/user"
	"slices"
	"strings"
	"testing"
)

func fakeUsers() userLookup {
	users := map[string]*user.User{
		"banyan": {Username: "banyan", Uid: "990", Gid: "990"},
		"root":   {Username: "root", Uid: "0", Gid: "0"},
	}
	return userLookup{
		byName: func(n string) (*user.User, error) {
			if u, ok := users[n]; ok {
				return u, nil
			}
			return nil, user.UnknownUserError(n)
		},
		byID: func(id string) (*user.User, error) {
			for _, u := range users {
				if u.Uid == id {
					return u, nil
				}
			}
			return nil, errors.New("unknown uid " + id)
		},
		groups: func(u *user.User) ([]string, error) { return []string{u.Gid, "44"}, nil },
	}
}

func TestResolveRunAs(t *testing.T) {
	l := fakeUsers()
	if _, err := resolveRunAs("", 0, l); err == nil || !strings.Contains(err.Error(), "--run-as") {
		t.Errorf("root agent without --run-as: %v, want a refusal naming --run-as", err)
	}
	if u, err := resolveRunAs("", 1000, l); err != nil || u != nil {
		t.Errorf("non-root agent without --run-as: %v, %v; want its own user", u, err)
	}
	u, err := resolveRunAs("banyan", 0, l)
	if err != nil || u.UID != 990 || u.GID != 990 || !slices.Equal(u.Groups, []uint32{990, 44}) || u.Name != "banyan" {
		t.Errorf("--run-as banyan: %+v, %v", u, err)
	}
	if u, err := resolveRunAs("990", 0, l); err != nil || u.Name != "banyan" {
		t.Errorf("--run-as 990: %+v, %v", u, err)
	}
	if u, err := resolveRunAs("root", 0, l); err != nil || u.UID != 0 {
		t.Errorf("--run-as root: %+v, %v", u, err)
	}
	if u, err := resolveRunAs("banyan", 990, l); err != nil || u.UID != 990 {
		t.Errorf("--run-as its own user: %+v, %v", u, err)
	}
	if _, err := resolveRunAs("root", 990, l); err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("non-root agent switching user: %v", err)
	}
	if _, err := resolveRunAs("ghost", 0, l); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("unknown user: %v", err)
	}
}

func TestAgentCgroupsSaysOnceHowTasksAreLimited(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if m := agentCgroups("x", true, log); m != nil {
		t.Fatal("--no-cgroups gave a manager")
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), "--no-cgroups") {
		t.Fatalf("--no-cgroups logged %d lines: %s", n, buf.String())
	}
	buf.Reset()
	m := agentCgroups("isolation-test", false, log)
	if m != nil {
		defer m.Close()
		if len(m.Missing()) == 0 && buf.Len() != 0 {
			t.Errorf("all controllers available but warned: %s", buf.String())
		}
		if len(m.Missing()) > 0 && !strings.Contains(buf.String(), "not enforced") {
			t.Errorf("missing %v without a warning: %s", m.Missing(), buf.String())
		}
	} else if !strings.Contains(buf.String(), "cannot create cgroups") {
		t.Errorf("no cgroups and no warning: %s", buf.String())
	}
	if n := strings.Count(buf.String(), "\n"); n > 1 {
		t.Errorf("logged %d lines at start, want at most one: %s", n, buf.String())
	}
}
