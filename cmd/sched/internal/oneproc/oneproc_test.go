package oneproc

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// reportEnv, set in a child of this test binary, makes it print its
// GOMAXPROCS and exit instead of running the tests.
const reportEnv = "ONEPROC_REPORT"

func TestMain(m *testing.M) {
	if os.Getenv(reportEnv) != "" {
		os.Stdout.WriteString("procs=" + strconv.Itoa(runtime.GOMAXPROCS(0)) + "\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// procsOf runs this test binary as a child with the environment changed
// by set (GOMAXPROCS removed where set does not name it) and returns the
// GOMAXPROCS it ran with.
func procsOf(t *testing.T, set ...string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, reportEnv+"=1"), set...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "procs="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("child said %q", line)
			}
			return n
		}
	}
	t.Fatalf("child printed no procs= line:\n%s", out)
	return 0
}

// The process runs on one P from init on, unless GOMAXPROCS in the
// environment says otherwise.
func TestOneP(t *testing.T) {
	if got := procsOf(t); got != 1 {
		t.Errorf("GOMAXPROCS unset: the process ran on %d Ps, want 1", got)
	}
	if runtime.NumCPU() == 1 {
		t.Log("one cpu: the runtime's default is one P too, so only GOMAXPROCS=3 tells")
	}
	if got := procsOf(t, "GOMAXPROCS=3"); got != 3 {
		t.Errorf("GOMAXPROCS=3: the process ran on %d Ps, want the 3 asked for", got)
	}
}
