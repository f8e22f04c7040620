// Command grpcgo submits the submit workload's one-task job with the
// least a grpc-go client can do: grpc.NewClient, one SubmitJobs call
// through the generated stub and Banyan's wire codec, and the job's id
// printed. No flags, no job file, no cobra, no retries, no token. Against
// `sched job submit` it shows what sched's own code costs a call; against
// h2frame, what linking and running grpc-go and the protobuf runtime cost
// (bench/README.md, "What a CLI call costs").
//
// Usage: grpcgo ADDR
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/wirecodec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcgo ADDR")
		os.Exit(2)
	}
	id, err := submit(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcgo:", err)
		os.Exit(1)
	}
	fmt.Println(id)
}

// submit sends the job to the scheduler at addr and returns its id.
func submit(addr string) (string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), wirecodec.DialOption())
	if err != nil {
		return "", fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := pb.NewJobServiceClient(conn).SubmitJobs(ctx, &pb.SubmitJobsRequest{Jobs: []*pb.JobSpec{job()}})
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	if len(resp.Jobs) != 1 || resp.Jobs[0].Id == "" {
		return "", fmt.Errorf("submit: %d jobs in the reply, want one with an id", len(resp.Jobs))
	}
	return resp.Jobs[0].Id, nil
}

// job is peers.SubmitJobYAML's job with an idempotency key, as `sched job
// submit` sends it.
func job() *pb.JobSpec {
	var key [12]byte
	_, _ = rand.Read(key[:])
	return &pb.JobSpec{Name: "one", IdempotencyKey: "probe-" + hex.EncodeToString(key[:]),
		Tasks: []*pb.TaskSpec{{Name: "t", Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: 1000, MemoryBytes: 16 << 20}}}}
}
