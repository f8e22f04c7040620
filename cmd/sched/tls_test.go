package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banyan-sched/banyan/api/tlsconfig"
	"github.com/banyan-sched/banyan/api/tlsconfig/tlstest"
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

func TestServerConfigFileTLSKeys(t *testing.T) {
	ca := tlstest.NewCA(t)
	files := ca.Issue(t, tlstest.Server("s7"))
	path := filepath.Join(t.TempDir(), "server.yaml")
	yaml := "data_dir: " + t.TempDir() + "\nbind: 0.0.0.0:7400\ntls_ca: " + files.CA + "\ntls_cert: " + files.Cert +
		"\ntls_key: " + files.Key + "\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newServerCmd(&globals{})
	cfg, err := serverConfig(cmd, fileAt(t, path), serverFile{Lease: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.NodeID != "s7" || cfg.Insecure {
		t.Fatalf("config: TLS %v, node %q, insecure %v", cfg.TLS != nil, cfg.NodeID, cfg.Insecure)
	}
	if err := os.WriteFile(path, []byte("data_dir: x\nnode_id: s1\n"+yaml[strings.Index(yaml, "tls_ca"):]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := serverConfig(cmd, fileAt(t, path), serverFile{Lease: "10s"}); err == nil || !strings.Contains(err.Error(), "names server/s7") {
		t.Fatalf("node id not matching the certificate: %v", err)
	}
	if err := os.WriteFile(path, []byte("data_dir: x\ninsecure: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := serverConfig(cmd, fileAt(t, path), serverFile{Lease: "10s"}); err != nil || !cfg.Insecure || cfg.TLS != nil {
		t.Fatalf("insecure key: %+v %v", cfg, err)
	}
}
