package state

import (
	"bytes"
	"errors"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/banyan-sched/banyan/scheduler/fsmpb"
	"google.golang.org/protobuf/proto"
)

func aclApply(t *testing.T, s *State, cmd *fsmpb.Command) error {
	t.Helper()
	cmd.NowUnixMs = 1000
	return s.Apply(cmd).Err
}

func tokenRecord(accessor, secret, name string, management bool, policies ...string) *fsmpb.ACLTokenRecord {
	return &fsmpb.ACLTokenRecord{SecretHash: acl.HashSecret(secret), Token: &pb.ACLToken{
		AccessorId: accessor, Name: name, Management: management, Policies: policies}}
}

func TestACLCommandsAndSnapshotRoundTrip(t *testing.T) {
	s := New(DefaultDefaults)
	must := func(cmd *fsmpb.Command) {
		t.Helper()
		if err := aclApply(t, s, cmd); err != nil {
			t.Fatal(err)
		}
	}
	must(&fsmpb.Command{Cmd: &fsmpb.Command_AclBootstrap{AclBootstrap: &fsmpb.ACLBootstrap{
		Token: tokenRecord("acc-root", "root-secret", "bootstrap", true)}}})
	err := aclApply(t, s, &fsmpb.Command{Cmd: &fsmpb.Command_AclBootstrap{AclBootstrap: &fsmpb.ACLBootstrap{
		Token: tokenRecord("acc-2", "other", "bootstrap", true)}}})
	if !errors.Is(err, ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v, want ErrACLBootstrapped", err)
	}
	must(&fsmpb.Command{Cmd: &fsmpb.Command_AclPolicyPut{AclPolicyPut: &fsmpb.ACLPolicyPut{Policy: &pb.ACLPolicy{
		Name: "ingest", Pools: []*pb.ACLPoolRule{{Pattern: "default", Capability: "submit"}}}}}})
	err = aclApply(t, s, &fsmpb.Command{Cmd: &fsmpb.Command_AclTokenCreate{AclTokenCreate: &fsmpb.ACLTokenCreate{
		Token: tokenRecord("acc-x", "x", "ci", false, "nope")}}})
	if !errors.Is(err, ErrACLPolicyMissing) {
		t.Fatalf("token naming a missing policy: %v", err)
	}
	must(&fsmpb.Command{Cmd: &fsmpb.Command_AclTokenCreate{AclTokenCreate: &fsmpb.ACLTokenCreate{
		Token: tokenRecord("acc-ci", "ci-secret", "ci", false, "ingest")}}})
	must(&fsmpb.Command{Cmd: &fsmpb.Command_AclTokenCreate{AclTokenCreate: &fsmpb.ACLTokenCreate{
		Token: tokenRecord("acc-gone", "gone-secret", "gone", false, "ingest")}}})
	must(&fsmpb.Command{Cmd: &fsmpb.Command_AclTokenRevoke{AclTokenRevoke: &fsmpb.ACLTokenRevoke{AccessorId: "acc-gone"}}})
	if _, ok := s.ACLResolve(acl.HashSecret("gone-secret")); ok {
		t.Fatal("revoked token still resolves")
	}

	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("ci-secret")) || bytes.Contains(buf.Bytes(), []byte("root-secret")) {
		t.Fatal("snapshot contains a token secret")
	}
	r, err := ReadSnapshot(&buf, DefaultDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if !r.ACLBootstrapped() {
		t.Fatal("restored state forgot it was bootstrapped")
	}
	tok, ok := r.ACLResolve(acl.HashSecret("ci-secret"))
	if !ok || tok.AccessorId != "acc-ci" || tok.Name != "ci" || tok.Secret != "" {
		t.Fatalf("restored token: %v %v", tok, ok)
	}
	if _, ok := r.ACLResolve(acl.HashSecret("gone-secret")); ok {
		t.Fatal("revoked token came back from the snapshot")
	}
	if got, want := len(r.ACLTokenList()), 2; got != want {
		t.Fatalf("restored %d tokens, want %d", got, want)
	}
	if !proto.Equal(&pb.ListPoliciesResponse{Policies: r.ACLPolicyList()}, &pb.ListPoliciesResponse{Policies: s.ACLPolicyList()}) {
		t.Fatalf("policies changed in the round trip: %v vs %v", r.ACLPolicyList(), s.ACLPolicyList())
	}
	if err := acl.Allow(acl.TokenFromPB(tok), r.ACLPolicies(), acl.PoolSubmit, "default"); err != nil {
		t.Fatalf("restored policy no longer grants submit: %v", err)
	}
	err = aclApply(t, r, &fsmpb.Command{Cmd: &fsmpb.Command_AclBootstrap{AclBootstrap: &fsmpb.ACLBootstrap{
		Token: tokenRecord("acc-3", "again", "bootstrap", true)}}})
	if !errors.Is(err, ErrACLBootstrapped) {
		t.Fatalf("bootstrap after restore: %v, want ErrACLBootstrapped", err)
	}
	// Deleting the policy takes the grant away from the token that names it.
	if err := aclApply(t, r, &fsmpb.Command{Cmd: &fsmpb.Command_AclPolicyDelete{AclPolicyDelete: &fsmpb.ACLPolicyDelete{Name: "ingest"}}}); err != nil {
		t.Fatal(err)
	}
	if err := acl.Allow(acl.TokenFromPB(tok), r.ACLPolicies(), acl.PoolSubmit, "default"); err == nil {
		t.Fatal("a deleted policy still grants")
	}
}

func TestSubmitRecordsSubmitter(t *testing.T) {
	s := New(DefaultDefaults)
	sub := &pb.Submitter{AccessorId: "acc-ci", Name: "ci"}
	r := s.Apply(&fsmpb.Command{NowUnixMs: 1, Cmd: &fsmpb.Command_Submit{Submit: &fsmpb.SubmitJobs{Submitter: sub,
		Jobs: []*pb.JobSpec{{Name: "j", Pool: DefaultPool, Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"true"},
			Resources: &pb.Resources{CpuMillis: 100}}}}}}}})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if !proto.Equal(r.Jobs[0].Submitter, sub) {
		t.Fatalf("submit answer submitter %v, want %v", r.Jobs[0].Submitter, sub)
	}
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSnapshot(&buf, DefaultDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.JobView(r.Jobs[0].Id, false).Submitter; !proto.Equal(got, sub) {
		t.Fatalf("restored submitter %v, want %v", got, sub)
	}
}
