// Package cgrouptest gives tests a real cgroup Manager, or a clear skip
// where the test lacks the privileges to create cgroups.
package cgrouptest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/banyan-sched/banyan/agent/cgroup"
)

// RequireEnv, when set to 1, makes Manager fail instead of skip where
// cgroups cannot be created, so CI that should have them notices.
const RequireEnv = "BANYAN_REQUIRE_CGROUPS"

// Manager sets up a Manager for a test (a uniquely named directory in
// the test's own cgroup, removed when the test ends). Without the
// privileges to create cgroups it skips, saying why, unless RequireEnv is
// set.
func Manager(t testing.TB) *cgroup.Manager {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	m, err := cgroup.Setup(cgroup.Options{Name: "banyan-test-" + hex.EncodeToString(rnd[:])})
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("cgroups required (%s=1) but unavailable: %v", RequireEnv, err)
		}
		t.Skipf("needs a writable cgroup v2 hierarchy (root, or a delegated subtree): %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return m
}
