package failure

import "testing"

func TestClassify(t *testing.T) {
	cases := []struct {
		outcome   string
		exit      int32
		class     string
		permanent bool
		usesRetry bool
	}{
		{"failed", 65, BadInput, true, true},
		{"failed", 66, DecodeError, true, true},
		{"failed", 67, VerificationFailed, true, true},
		{"failed", 68, EncoderError, false, true},
		{"failed", 1, Failed, false, true},
		{"failed", 64, Failed, false, true},
		{"failed", 69, NVENCSessionLimit, false, false},
		{"failed", 70, Failed, false, true},
		{"failed", 0, Failed, false, true},  // an agent-side error: no exit code
		{"failed", -1, Failed, false, true}, // killed by a signal or never started
		{"timeout", -1, Timeout, false, true},
		{"timeout", 65, Timeout, false, true}, // the outcome decides, not a stray code
		{"lost", 0, AgentLost, false, false},
		{"lost", 66, AgentLost, false, false},
		{"preempted", 0, Preempted, false, false},
		{"device_lost", 0, DeviceLost, false, false},
		{"succeeded", 0, "", false, false},
		{"succeeded", 65, "", false, false},
		{"cancelled", -1, "", false, false},
		{"fallback", 0, "", false, false},
		{"", 0, "", false, false},
		{"something-new", 65, "", false, false},
	}
	for _, c := range cases {
		got := Classify(c.outcome, c.exit)
		if got != c.class {
			t.Errorf("Classify(%q, %d) = %q, want %q", c.outcome, c.exit, got, c.class)
		}
		if p := Permanent(got); p != c.permanent {
			t.Errorf("Permanent(%q) = %v, want %v", got, p, c.permanent)
		}
		if u := UsesRetry(got); u != c.usesRetry {
			t.Errorf("UsesRetry(%q) = %v, want %v", got, u, c.usesRetry)
		}
	}
}

// TestExitCodesAreTheContract pins the numbers: tasks written elsewhere
// (the encoder) exit with them, so they must never change.
func TestExitCodesAreTheContract(t *testing.T) {
	for code, class := range map[int32]string{ExitBadInput: BadInput, ExitDecodeError: DecodeError,
		ExitVerificationFailed: VerificationFailed, ExitEncoderError: EncoderError, ExitNVENCSessionLimit: NVENCSessionLimit} {
		if got := Classify("failed", code); got != class {
			t.Errorf("exit %d: class %q, want %q", code, got, class)
		}
	}
	if ExitBadInput != 65 || ExitDecodeError != 66 || ExitVerificationFailed != 67 || ExitEncoderError != 68 ||
		ExitNVENCSessionLimit != 69 {
		t.Fatalf("exit codes changed: %d %d %d %d", ExitBadInput, ExitDecodeError, ExitVerificationFailed, ExitEncoderError)
	}
}
