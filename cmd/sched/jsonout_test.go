package main

import (
	"bytes"
	"encoding/json"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
)

// TestJSONNumbersAndWords: -o json gives 64-bit integers as numbers and
// enums as the words the flags take.
func TestJSONNumbersAndWords(t *testing.T) {
	j := &pb.Job{Id: "job-1", State: pb.JobState_JOB_STATE_SUCCEEDED, Class: pb.JobClass_JOB_CLASS_OPPORTUNISTIC,
		SubmittedUnixMs: 1_700_000_000_123, Counts: &pb.TaskCounts{Total: 3},
		Tasks: []*pb.Task{{Id: "job-1.0", State: pb.TaskState_TASK_STATE_RUNNING,
			Spec: &pb.TaskSpec{Env: map[string]string{"K": "V"}, Resources: &pb.Resources{MemoryBytes: 1 << 40}}}}}
	var buf bytes.Buffer
	if err := printJSON(&buf, j); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v["state"] != "succeeded" || v["class"] != "opportunistic" {
		t.Fatalf("enums: %v %v", v["state"], v["class"])
	}
	if n, ok := v["submitted_unix_ms"].(json.Number); !ok || n.String() != "1700000000123" {
		t.Fatalf("int64 as %T %v", v["submitted_unix_ms"], v["submitted_unix_ms"])
	}
	task := v["tasks"].([]any)[0].(map[string]any)
	if task["state"] != "running" || task["spec"].(map[string]any)["env"].(map[string]any)["K"] != "V" {
		t.Fatalf("task: %v", task)
	}
	if n := task["spec"].(map[string]any)["resources"].(map[string]any)["memory_bytes"].(json.Number); n.String() != "1099511627776" {
		t.Fatalf("memory_bytes %v", n)
	}
	if _, ok := v["reason"]; ok {
		t.Fatal("zero fields are left out")
	}
	if got := enumWord(pb.NVENCLimit_NVENC_LIMIT_PER_SYSTEM.Descriptor(), 2); got != "per_system" {
		t.Fatalf("NVENCLimit word %v", got)
	}
}
