package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestPrintTreeWithoutParent draws pools whose parent an ACL hides as tops.
func TestPrintTreeWithoutParent(t *testing.T) {
	var out bytes.Buffer
	printTree(&out, &pb.ListPoolsResponse{Cluster: &pb.Resources{}, Pools: []*pb.Pool{
		{Path: "studio/ingest"}, {Path: "studio/ingest/dailies"}, {Path: "studio/marketing"}}})
	for _, want := range []string{"ingest", "└─ dailies", "marketing"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("tree lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPrintJobShowsSubmitter names the submitting token in job show.
func TestPrintJobShowsSubmitter(t *testing.T) {
	var out bytes.Buffer
	printJob(&out, &pb.Job{Id: "job-1", Counts: &pb.TaskCounts{},
		Submitter: &pb.Submitter{AccessorId: "4f1c", Name: "ci"}})
	if !strings.Contains(out.String(), "submitted by ci (accessor 4f1c)") {
		t.Fatalf("job show lacks the submitter:\n%s", out.String())
	}
}

// TestServerConfigACL reads acl and token from the config file and --acl
// from the command line.
func TestServerConfigACL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.yaml")
	if err := os.WriteFile(path, []byte("data_dir: d\nacl: true\ntoken: join-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newServerCmd(&globals{})
	cfg, err := serverConfig(cmd, fileAt(t, path), serverFile{Bind: DefaultAddr, Lease: "10s"})
	if err != nil || !cfg.ACL || cfg.Token != "join-secret" {
		t.Fatalf("config file: acl %v token %q (%v), want true and join-secret", cfg.ACL, cfg.Token, err)
	}
	cmd = newServerCmd(&globals{})
	if err := cmd.Flags().Parse([]string{"--acl", "--data-dir", "d"}); err != nil {
		t.Fatal(err)
	}
	cfg, err = serverConfig(cmd, serverFile{}, serverFile{DataDir: "d", Bind: DefaultAddr, Lease: "10s", ACL: true})
	if err != nil || !cfg.ACL {
		t.Fatalf("--acl: acl %v (%v), want true", cfg.ACL, err)
	}
	cfg, err = serverConfig(newServerCmd(&globals{}), serverFile{}, serverFile{DataDir: "d", Bind: DefaultAddr, Lease: "10s"})
	if err != nil || cfg.ACL {
		t.Fatalf("default: acl %v (%v), want false", cfg.ACL, err)
	}
}
