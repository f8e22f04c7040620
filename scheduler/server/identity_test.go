package server

import (
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"

	"github.com/banyan-sched/banyan/api/tlsconfig"
)

func TestRoleAllowedTable(t *testing.T) {
	server := tlsconfig.Identity{Role: tlsconfig.RoleServer, ID: "s1"}
	agent := tlsconfig.Identity{Role: tlsconfig.RoleAgent, ID: "a1"}
	client := tlsconfig.Identity{Role: tlsconfig.RoleClient, ID: "alice"}
	for _, tc := range []struct {
		method string
		id     tlsconfig.Identity
		ok     bool
	}{
		{methodJoin, server, true}, {methodJoin, client, false}, {methodJoin, agent, false},
		{methodRemove, server, true}, {methodRemove, client, false},
		{methodSession, agent, true}, {methodSession, client, false}, {methodSession, server, false},
		{"/banyan.v1.JobService/SubmitJobs", client, true}, {"/banyan.v1.JobService/SubmitJobs", server, true},
		{"/banyan.v1.JobService/SubmitJobs", agent, false}, {"/banyan.v1.PoolService/UpdatePool", agent, false},
		{pb.EventService_Stream_FullMethodName, client, true}, {pb.EventService_Stream_FullMethodName, server, true},
		{pb.EventService_Stream_FullMethodName, agent, false},
	} {
		if err := roleAllowed(tc.method, tc.id); (err == nil) != tc.ok {
			t.Errorf("roleAllowed(%s, %s) = %v; want ok=%v", tc.method, tc.id, err, tc.ok)
		}
	}
	if joinAllowed(server, &pb.JoinRequest{Id: "s1"}, false) != nil || joinAllowed(server, &pb.JoinRequest{Id: "s9"}, false) == nil ||
		joinAllowed(server, &pb.JoinRequest{Id: "s9"}, true) != nil {
		t.Error("joinAllowed: a server joins only as itself, unless forwarded")
	}
	if helloAllowed(agent, "a1") != nil || helloAllowed(agent, "a2") == nil || helloAllowed(server, "s1") == nil {
		t.Error("helloAllowed: an agent may say hello only as itself")
	}
}

func TestCheckInsecureBindTable(t *testing.T) {
	for _, tc := range []struct {
		addr            string
		withTLS, unsafe bool
		ok              bool
	}{
		{"127.0.0.1:7400", false, false, true}, {"localhost:7400", false, false, true}, {"[::1]:7400", false, false, true},
		{"127.0.0.5:7400", false, false, true},
		{"0.0.0.0:7400", false, false, false}, {":7400", false, false, false}, {"10.0.0.1:7400", false, false, false},
		{"sched-1.farm:7400", false, false, false}, {"[::]:7400", false, false, false},
		{"0.0.0.0:7400", true, false, true}, {"0.0.0.0:7400", false, true, true},
	} {
		if err := checkInsecureBind(tc.addr, tc.withTLS, tc.unsafe); (err == nil) != tc.ok {
			t.Errorf("checkInsecureBind(%s, tls=%v, insecure=%v) = %v; want ok=%v", tc.addr, tc.withTLS, tc.unsafe, err, tc.ok)
		}
	}
}
