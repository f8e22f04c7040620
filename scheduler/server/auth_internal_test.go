package server

import (
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/banyan-sched/banyan/scheduler/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func readerCaller() *caller {
	p := &acl.Policy{Name: "r", Pools: []acl.PoolRule{{Pattern: "studio", Level: acl.Read}}}
	return &caller{enforce: true, tok: &pb.ACLToken{AccessorId: "acc", Name: "r", Policies: []string{"r"}},
		token: acl.Token{AccessorID: "acc", Name: "r", Policies: []string{"r"}}, policies: map[string]*acl.Policy{"r": p}}
}

func TestRedactJobCopiesAndKeepsKeys(t *testing.T) {
	c := readerCaller()
	orig := &pb.Job{Id: "job-1", Pool: "studio", Tasks: []*pb.Task{{Spec: &pb.TaskSpec{
		Env: map[string]string{"S3_KEY": "secret"}, Fallback: &pb.TaskSpec{Env: map[string]string{"FB": "x"}}}}}}
	got := c.redactJob(orig)
	if got.Tasks[0].Spec.Env["S3_KEY"] != Redacted || got.Tasks[0].Spec.Fallback.Env["FB"] != Redacted {
		t.Fatalf("not redacted: %v", got.Tasks[0].Spec)
	}
	if orig.Tasks[0].Spec.Env["S3_KEY"] != "secret" {
		t.Fatal("redaction changed the original job")
	}
	if (&caller{}).redactJob(orig) != orig {
		t.Fatal("a caller without ACLs got a redacted copy")
	}
}

// Every method of the API has a rule: one without is refused to every
// token while ACLs are on.
func TestEveryMethodHasACLRule(t *testing.T) {
	for _, desc := range []*grpc.ServiceDesc{&pb.JobService_ServiceDesc, &pb.PoolService_ServiceDesc,
		&pb.AgentService_ServiceDesc, &pb.ClusterService_ServiceDesc, &pb.ACLService_ServiceDesc,
		&pb.EventService_ServiceDesc, &pb.LogsService_ServiceDesc, &pb.OperatorService_ServiceDesc} {
		var names []string
		for _, m := range desc.Methods {
			names = append(names, m.MethodName)
		}
		for _, st := range desc.Streams {
			names = append(names, st.StreamName)
		}
		for _, name := range names {
			if full := "/" + desc.ServiceName + "/" + name; methodChecks[full] == nil {
				t.Errorf("%s has no ACL rule", full)
			}
		}
	}
}

// A page of tasks is redacted as its job would be: a reader of the pool
// sees the names of its tasks' variables, not their values.
func TestListTasksRedacted(t *testing.T) {
	page := &pb.ListTasksResponse{Pool: "studio", Total: 1, Tasks: []*pb.Task{{Spec: &pb.TaskSpec{
		Env: map[string]string{"S3_KEY": "secret"}}}}}
	got := readerCaller().filter(page, 0).(*pb.ListTasksResponse)
	if v, ok := got.Tasks[0].Spec.Env["S3_KEY"]; !ok || v != Redacted || got.Total != 1 || got.Pool != "studio" {
		t.Fatalf("page for a reader: %v", got)
	}
	if page.Tasks[0].Spec.Env["S3_KEY"] != "secret" {
		t.Fatal("redaction changed the page it was given")
	}
	if plain := (&caller{}).filter(page, 0).(*pb.ListTasksResponse); plain.Tasks[0].Spec.Env["S3_KEY"] != "secret" {
		t.Fatal("a caller without ACLs got a redacted page")
	}
}

func TestTypedCheckRefusesWrongRequestType(t *testing.T) {
	err := methodChecks[pb.JobService_CancelJob_FullMethodName](readerCaller(), state.New(state.DefaultDefaults),
		&pb.GetJobRequest{Id: "job-1"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("wrong request type: %v, want InvalidArgument", err)
	}
}

func TestFilterPoolsAndUsage(t *testing.T) {
	c := readerCaller()
	pools := c.filter(&pb.ListPoolsResponse{Pools: []*pb.Pool{{Path: "studio"}, {Path: "studio/a"}, {Path: "default"}}}, 0).(*pb.ListPoolsResponse)
	if len(pools.Pools) != 2 || pools.Pools[1].Path != "studio/a" {
		t.Fatalf("readable pools: %v", pools.Pools)
	}
	usage := c.filter(&pb.PoolUsageResponse{Pools: []*pb.PoolUsage{{Path: "studio"}}}, 0).(*pb.PoolUsageResponse)
	if len(usage.Pools) != 0 {
		t.Fatalf("a reader sees usage it does not administer: %v", usage.Pools)
	}
}
