package main

import (
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
)

func TestCertFlagsRequest(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	req, err := certFlags{server: "s1", dns: []string{"sched-1.farm"}, ips: []string{"10.0.0.5"}, days: 10}.request(now)
	if err != nil {
		t.Fatal(err)
	}
	if req.Identity != (tlsconfig.Identity{Role: tlsconfig.RoleServer, ID: "s1"}) || len(req.IPs) != 1 ||
		req.Validity != 240*time.Hour || !req.NotBefore.Equal(now) {
		t.Fatalf("request %+v", req)
	}
	for _, tc := range []struct {
		f    certFlags
		want string
	}{
		{certFlags{days: 1}, "exactly one of"},
		{certFlags{server: "s1", client: "c", days: 1}, "exactly one of"},
		{certFlags{agent: "a/b", days: 1}, "only letters"},
		{certFlags{agent: "a", days: 0}, "--days"},
		{certFlags{server: "s1", ips: []string{"ten"}, days: 1}, "not an IP"},
		{certFlags{client: "c", dns: []string{"x"}, days: 1}, "server certificates only"},
	} {
		if _, err := tc.f.request(now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.f, err, tc.want)
		}
	}
}
