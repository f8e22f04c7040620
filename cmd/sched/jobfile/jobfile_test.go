package jobfile

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/api/taskarray"
)

// examplesDir holds the example job files at the top of the repository.
const examplesDir = "../../../examples"

func readTestdata(t *testing.T, name string) []*pb.JobSpec {
	t.Helper()
	specs, err := ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("ReadFile(%s): %v", name, err)
	}
	return specs
}

func res(cpuMillis, mem, gpus, gpuMem, nvenc int64) *pb.Resources {
	return &pb.Resources{CpuMillis: cpuMillis, MemoryBytes: mem, Gpus: gpus, GpuMemoryBytes: gpuMem, Nvenc: nvenc}
}

func sameResources(t *testing.T, where string, got, want *pb.Resources) {
	t.Helper()
	if got.Vector() != want.Vector() {
		t.Errorf("%s: resources = %v, want %v", where, got.Vector(), want.Vector())
	}
}

func TestGoodFiles(t *testing.T) {
	defaultAsk := pb.FromVector(DefaultAsk)
	tests := []struct {
		file  string
		check func(t *testing.T, specs []*pb.JobSpec)
	}{
		{"single.yaml", func(t *testing.T, specs []*pb.JobSpec) {
			if len(specs) != 1 {
				t.Fatalf("got %d jobs, want 1", len(specs))
			}
			j := specs[0]
			if j.Name != "transcode-trailer" || j.Pool != "default" || j.Class != pb.JobClass_JOB_CLASS_LATENCY ||
				j.Priority != 10 || j.IdempotencyKey != "trailer-2024-06" || j.MaxWaitMs != 120_000 {
				t.Errorf("job fields wrong: %v", j)
			}
			if len(j.Tasks) != 2 {
				t.Fatalf("got %d tasks, want 2", len(j.Tasks))
			}
			probe, enc := j.Tasks[0], j.Tasks[1]
			if probe.Name != "probe" || !reflect.DeepEqual(probe.Command, []string{"ffprobe", "-v", "error", "input.mp4"}) {
				t.Errorf("probe = %v", probe)
			}
			sameResources(t, "probe", probe.Resources, res(500, 256<<20, 0, 0, 0))
			if probe.TimeoutMs != 0 || probe.Retry != nil || len(probe.After) != 0 {
				t.Errorf("probe has fields it did not set: %v", probe)
			}
			if enc.Name != "encode" || !reflect.DeepEqual(enc.Command, []string{"ffmpeg", "-i", "input.mp4", "out.mp4"}) {
				t.Errorf("encode = %v", enc)
			}
			if !reflect.DeepEqual(enc.Env, map[string]string{"PRESET": "slow"}) || enc.Workdir != "scratch" {
				t.Errorf("encode env/workdir = %v %q", enc.Env, enc.Workdir)
			}
			sameResources(t, "encode", enc.Resources, res(4000, 8<<30, 0, 0, 0))
			if enc.TimeoutMs != 30*60_000 || enc.ExclusiveKey != "trailer" || !reflect.DeepEqual(enc.After, []string{"probe"}) {
				t.Errorf("encode timeout/exclusive/after = %d %q %v", enc.TimeoutMs, enc.ExclusiveKey, enc.After)
			}
			r := enc.Retry
			if r == nil || r.MaxAttempts != 3 || r.InitialBackoffMs != 10_000 || r.MaxBackoffMs != 300_000 {
				t.Errorf("encode retry = %v", r)
			}
		}},
		{"batch.yaml", func(t *testing.T, specs []*pb.JobSpec) {
			if len(specs) != 3 {
				t.Fatalf("got %d jobs, want 3", len(specs))
			}
			want := []struct {
				name, pool string
				class      pb.JobClass
				prio       int32
				maxWait    int64
				tasks      int
			}{
				{"first", "default", pb.JobClass_JOB_CLASS_LATENCY, 5, 0, 1},
				{"second", "archive", pb.JobClass_JOB_CLASS_BATCH, 0, 0, 2},
				{"third", "", pb.JobClass_JOB_CLASS_OPPORTUNISTIC, 0, 3_600_000, 1},
			}
			for i, w := range want {
				j := specs[i]
				if j.Name != w.name || j.Pool != w.pool || j.Class != w.class || j.Priority != w.prio ||
					j.MaxWaitMs != w.maxWait || len(j.Tasks) != w.tasks {
					t.Errorf("job %d = %v, want %+v", i, j, w)
				}
			}
			if got := specs[1].Tasks[1].Command; !reflect.DeepEqual(got, []string{"echo", "three"}) {
				t.Errorf("second job's second task command = %v", got)
			}
			// A task that names no resources asks for the default.
			sameResources(t, "first/#1", specs[0].Tasks[0].Resources, defaultAsk)
		}},
		{"single.json", func(t *testing.T, specs []*pb.JobSpec) {
			if len(specs) != 1 || len(specs[0].Tasks) != 1 {
				t.Fatalf("got %v", specs)
			}
			j, ts := specs[0], specs[0].Tasks[0]
			if j.Name != "json-job" || j.Pool != "default" || j.Class != pb.JobClass_JOB_CLASS_BATCH || j.Priority != 3 {
				t.Errorf("job = %v", j)
			}
			if ts.Name != "only" || !reflect.DeepEqual(ts.Command, []string{"sh", "-c", "echo hi"}) || ts.TimeoutMs != 90_000 {
				t.Errorf("task = %v", ts)
			}
			sameResources(t, "only", ts.Resources, res(2000, 1<<30, 0, 0, 0))
		}},
		{"array.yaml", func(t *testing.T, specs []*pb.JobSpec) {
			if len(specs) != 1 {
				t.Fatalf("got %d jobs, want 1", len(specs))
			}
			if n := len(specs[0].Tasks); n != 2 || specs[0].Tasks[0].Count != 4 {
				t.Fatalf("got %d specs, want an array of 4 chunks sent as one and a join", n)
			}
			tasks := taskarray.Expand(specs[0].Tasks)
			if len(tasks) != 5 {
				t.Fatalf("got %d tasks, want 4 chunks and a join", len(tasks))
			}
			for i, idx := range []string{"0", "1", "2", "3"} {
				ts := tasks[i]
				if ts.Name != "chunk-"+idx {
					t.Errorf("task %d name = %q", i, ts.Name)
				}
				wantCmd := []string{"encode-chunk", "--index", idx, "--out=chunk-" + idx + ".mkv"}
				if !reflect.DeepEqual(ts.Command, wantCmd) {
					t.Errorf("%s command = %v, want %v", ts.Name, ts.Command, wantCmd)
				}
				if !reflect.DeepEqual(ts.Env, map[string]string{"CHUNK": idx, "FIXED": "same"}) {
					t.Errorf("%s env = %v", ts.Name, ts.Env)
				}
				if ts.Workdir != "scratch/chunk-"+idx || ts.ExclusiveKey != "chunk-"+idx {
					t.Errorf("%s workdir/exclusive = %q %q", ts.Name, ts.Workdir, ts.ExclusiveKey)
				}
				sameResources(t, ts.Name, ts.Resources, res(1000, 0, 0, 0, 0))
			}
			join := tasks[4]
			if join.Name != "join" || !reflect.DeepEqual(join.After, []string{"chunk-0", "chunk-1", "chunk-2", "chunk-3"}) {
				t.Errorf("join = %v", join)
			}
		}},
		{"gpu.yaml", func(t *testing.T, specs []*pb.JobSpec) {
			if len(specs) != 1 || len(specs[0].Tasks) != 1 {
				t.Fatalf("got %v", specs)
			}
			ts := specs[0].Tasks[0]
			if specs[0].Pool != "gpu" {
				t.Errorf("pool = %q", specs[0].Pool)
			}
			sameResources(t, "nvenc", ts.Resources, res(2000, 4<<30, 1, 2<<30, 2))
			want := []struct{ label, op, value string }{
				{"encoder", "=", "nvenc"},
				{"gpu.model", "!=", "T4"},
				{"spot", "not_exists", ""},
				{"ssd", "exists", ""},
			}
			if len(ts.Constraints) != len(want) {
				t.Fatalf("got %d constraints, want %d: %v", len(ts.Constraints), len(want), ts.Constraints)
			}
			for i, w := range want {
				c := ts.Constraints[i]
				if c.Label != w.label || c.Op != w.op || c.Value != w.value {
					t.Errorf("constraint %d = %v, want %+v", i, c, w)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tt.check(t, readTestdata(t, tt.file))
		})
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		file  string
		wants []string // fragments the error must contain
	}{
		{"syntax.yaml", []string{"line 3", "yaml"}},
		{"syntax.json", []string{"line "}},
		{"unknown-field.yaml", []string{`unknown field "comand"`, "task encode", `did you mean "command"`}},
		{"unknown-field.json", []string{`unknown field "bogus"`, "job j: task #1"}},
		{"unknown-field-nested.yaml", []string{`unknown field "max_atempts"`, "job b: task t: retry"}},
		{"negative-cpu.yaml", []string{"cpu", "negative", "task big"}},
		{"unknown-resource.yaml", []string{`unknown resource "tpu"`, "task t"}},
		{"bad-duration.yaml", []string{"timeout", `"5 minutes" is not a duration`, "task slow"}},
		{"unknown-class.yaml", []string{`unknown class "urgent"`}},
		{"empty.yaml", []string{"empty job file"}},
		{"only-comment.yaml", []string{"no job in file"}},
		{"tasks-and-jobs.yaml", []string{"not both"}},
		{"top-field-and-jobs.yaml", []string{"not both"}},
		{"no-command.yaml", []string{"task lazy", "command is missing"}},
		{"count-no-name.yaml", []string{"count needs a name"}},
		{"count-negative.yaml", []string{"task arr", "count -1"}},
		{"wrong-type.yaml", []string{"task second", "count", "want a whole number, got a string"}},
		{"yaml-bool.yaml", []string{"task t: command: want a string, got a boolean", "quote"}},
		{"duplicate-key.yaml", []string{"line 4", `"command" already set`}},
		{"constraint-no-label.yaml", []string{`constraint "=nvenc"`, "no label"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			specs, err := ReadFile(path)
			if err == nil {
				t.Fatalf("parsed without error: %v", specs)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			for _, w := range tt.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			// No Go type names or decoder layers leak into messages.
			for _, leak := range []string{"Go struct field", "jobfile.", "JSON:"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q contains %q", msg, leak)
				}
			}
		})
	}
}

// TestEveryBadFileCovered keeps the table above in step with testdata/bad.
func TestEveryBadFileCovered(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := ReadFile(filepath.Join("testdata", "bad", e.Name())); err == nil {
			t.Errorf("testdata/bad/%s parses without error", e.Name())
		}
	}
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join("testdata", "does-not-exist.yaml"))
	if err == nil || !strings.Contains(err.Error(), "read job file") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseErrorsOneLine(t *testing.T) {
	// Inputs whose errors come from different layers: the YAML parser, the
	// strict decoder, and the checks after decoding.
	inputs := []string{
		"tasks:\n  - command: [a]\n    command: [b]\n",
		"tasks:\n\t- command: [a]\n",
		"- a\n- b\n",
		"just a string\n",
		"tasks:\n  - command: a\n",
		"tasks:\n  - command: [a]\n    env: {A: 1}\n",
		"tasks:\n  - command: [a]\n    resources: {\"cpu\\nx\": 1}\n",
		"tasks:\n  - command: [a]\n    timeout: \"1\\nm\"\n",
		"tasks:\n  - command: [\"\"]\n",
	}
	for _, in := range inputs {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", in)
			continue
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("Parse(%q) error is not one line: %q", in, err)
		}
	}
}

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		in               string
		label, op, value string
		wantErr          bool
	}{
		{"encoder=nvenc", "encoder", "=", "nvenc", false},
		{" gpu.model != T4 ", "gpu.model", "!=", "T4", false},
		{"!spot", "spot", "not_exists", "", false},
		{"ssd", "ssd", "exists", "", false},
		{"", "", "", "", true},
		{"=x", "", "", "", true},
		{"!=x", "", "", "", true},
		{"!", "", "", "", true},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseConstraint(%q) = %v, want an error", tt.in, c)
			}
			continue
		}
		if err != nil || c.Label != tt.label || c.Op != tt.op || c.Value != tt.value {
			t.Errorf("ParseConstraint(%q) = %v, %v", tt.in, c, err)
		}
	}
}

func TestParseClass(t *testing.T) {
	for in, want := range map[string]pb.JobClass{
		"": pb.JobClass_JOB_CLASS_UNSPECIFIED, "latency": pb.JobClass_JOB_CLASS_LATENCY,
		"Batch": pb.JobClass_JOB_CLASS_BATCH, "opportunistic": pb.JobClass_JOB_CLASS_OPPORTUNISTIC,
	} {
		if got, err := ParseClass(in); err != nil || got != want {
			t.Errorf("ParseClass(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseClass("urgent"); err == nil {
		t.Error("ParseClass(urgent) succeeded")
	}
}

func TestExamplesParse(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"hello.yaml": true, "thousand.yaml": true, "batch.yaml": true, "gpu-encode.yaml": true, "chunks.yaml": true}
	for _, p := range paths {
		delete(want, filepath.Base(p))
		specs, err := ReadFile(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(specs) == 0 {
			t.Errorf("%s: no jobs", p)
		}
	}
	for name := range want {
		t.Errorf("example %s is missing", name)
	}

	// Spot checks on what the examples promise.
	specs, err := ReadFile(filepath.Join(examplesDir, "thousand.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := taskarray.Tasks(specs[0].Tasks); n != 1000 {
		t.Errorf("thousand.yaml: %d tasks, want 1000", n)
	} else if got := taskarray.Expand(specs[0].Tasks)[999]; got.Name != "echo-999" || !reflect.DeepEqual(got.Command, []string{"sh", "-c", "echo 999"}) {
		t.Errorf("thousand.yaml: last task = %v", got)
	}
	specs, err = ReadFile(filepath.Join(examplesDir, "batch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Class != pb.JobClass_JOB_CLASS_LATENCY || specs[1].Class != pb.JobClass_JOB_CLASS_BATCH ||
		specs[0].Pool != "default" || specs[1].Pool != "default" || specs[0].Priority <= specs[1].Priority {
		t.Errorf("batch.yaml = %v", specs)
	}
	specs, err = ReadFile(filepath.Join(examplesDir, "hello.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs[0].Tasks) != 3 || len(specs[0].Tasks[2].After) == 0 {
		t.Errorf("hello.yaml = %v", specs)
	}
	specs, err = ReadFile(filepath.Join(examplesDir, "gpu-encode.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ts := specs[0].Tasks[0]
	if v := ts.Resources.Vector(); v.GPUs != 1 || v.NVENC != 1 || v.GPUMemoryBytes != 2<<30 ||
		len(ts.Constraints) != 1 || ts.Constraints[0].Label != "encoder" || ts.Constraints[0].Value != "nvenc" {
		t.Errorf("gpu-encode.yaml task = %v", ts)
	}
}

func TestBadExamples(t *testing.T) {
	tests := []struct {
		file string
		want string // fragment of the error; "" means it must parse
	}{
		{"syntax.yaml", "line "},
		{"unknown-field.yaml", `unknown field "comand"`},
		{"negative.yaml", "negative"},
		// These parse; the server rejects them.
		{"unknown-pool.yaml", ""},
		{"over-max.yaml", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := ReadFile(filepath.Join(examplesDir, "bad", tt.file))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("want it to parse, got %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("parsed; want an error containing %q", tt.want)
			case err != nil && (!strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n")):
				t.Errorf("error %q: want one line containing %q", err, tt.want)
			}
		})
	}
}

// A job file's quantities refuse NaN, infinities and overflow, naming the
// resource (YAML's .nan and .inf are refused by the YAML-to-JSON step,
// naming the value).
func TestResourcesRefuseNaNInfOverflow(t *testing.T) {
	for r, want := range map[string]string{`cpu: NaN`: "cpu", `cpu: .nan`: "NaN", `memory: .inf`: "Inf",
		`memory: "Inf"`: "memory", `cpu: 1e300`: "cpu", `memory: 1e30`: "memory", `gpu_memory: 99999999Ti`: "gpu_memory",
		`nvenc: 1e20`: "nvenc"} {
		doc := "name: j\ntasks:\n  - command: [\"x\"]\n    resources:\n      " + r + "\n"
		if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one naming %s", r, err, want)
		}
	}
}
