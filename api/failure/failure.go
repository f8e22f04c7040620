// Package failure is the convention by which a task tells the scheduler why
// it failed, and the scheduler's rule for which failures a retry can fix.
//
// The scheduler knows nothing of what tasks do, so the reason travels as a
// generic convention: a task's process exit code classifies its failure
// (ExitBadInput, ExitDecodeError, ExitVerificationFailed, ExitEncoderError;
// any other non-zero exit is a generic failure), and the way an attempt
// ended classifies the rest (a timeout, a lost agent, a preemption).
// Classify maps the two to a class; Permanent says which classes are not
// worth a retry. A task that wants its failure to stop the job (or hand over
// to its fallback) at once exits with one of the permanent codes.
//
// The package is pure and has no dependencies, so task code (the encoder)
// can use its exit codes without importing the scheduler.
package failure

// Exit codes a task's process uses to classify its failure. They follow
// the BSD sysexits range (EX_DATAERR is 65) but carry Banyan's meanings.
const (
	// ExitBadInput: the task's input is bad (not media, truncated, refused).
	ExitBadInput = 65
	// ExitDecodeError: the input does not decode cleanly, even from a clean
	// start.
	ExitDecodeError = 66
	// ExitVerificationFailed: the output was checked and is wrong.
	ExitVerificationFailed = 67
	// ExitEncoderError: the encoder or another tool failed; a retry (maybe
	// on another agent) may succeed.
	ExitEncoderError = 68
	// ExitNVENCSessionLimit: the GPU refused a new NVENC session because
	// the driver's session limit was reached. The work is sound: it goes to
	// its CPU fallback (or back to the queue) without using a retry, and
	// the agent offers fewer sessions until the device recovers.
	ExitNVENCSessionLimit = 69
)

// Failure classes, the values of banyan.v1.Attempt.failure_class.
const (
	// BadInput is a failure with ExitBadInput. Permanent.
	BadInput = "bad_input"
	// DecodeError is a failure with ExitDecodeError. Permanent.
	DecodeError = "decode_error"
	// VerificationFailed is a failure with ExitVerificationFailed. Permanent.
	VerificationFailed = "verification_failed"
	// EncoderError is a failure with ExitEncoderError. Retried with backoff.
	EncoderError = "encoder_error"
	// NVENCSessionLimit is a failure with ExitNVENCSessionLimit. It does not
	// use a retry; a task with a fallback hands over to it at once.
	NVENCSessionLimit = "nvenc_session_limit"
	// DeviceLost is an attempt whose GPU was marked unhealthy while it ran.
	// Requeued without using a retry.
	DeviceLost = "device_lost"
	// Failed is any other failure: another non-zero exit, or an error on the
	// agent's side (the command could not start, its result was unreadable
	// or invalid). Retried with backoff.
	Failed = "failed"
	// Timeout is an attempt stopped at its task's timeout. Retried with
	// backoff, using a retry.
	Timeout = "timeout"
	// AgentLost is an attempt whose agent missed its lease, restarted
	// without it, or lost the worker running it. Requeued without using a
	// retry.
	AgentLost = "agent_lost"
	// Preempted is an attempt stopped to make room for more important work.
	// Requeued without using a retry.
	Preempted = "preempted"
)

// Attempt outcomes that Classify reads (banyan.v1.Attempt.outcome).
const (
	outcomeFailed    = "failed"
	outcomeTimeout   = "timeout"
	outcomeLost      = "lost"
	outcomePreempted = "preempted"
	// OutcomeDeviceLost ends an attempt whose GPU was marked unhealthy.
	OutcomeDeviceLost = "device_lost"
)

// Classify returns the failure class of an attempt that ended with outcome
// and, for a process, exitCode. Outcomes that are not failures
// ("succeeded", "cancelled", "fallback") and outcomes it does not know have
// no class: it returns "".
func Classify(outcome string, exitCode int32) string {
	switch outcome {
	case outcomeFailed:
		return classOfExit(exitCode)
	case outcomeTimeout:
		return Timeout
	case outcomeLost:
		return AgentLost
	case outcomePreempted:
		return Preempted
	case OutcomeDeviceLost:
		return DeviceLost
	}
	return ""
}

// classOfExit classifies a failed process by its exit code.
func classOfExit(code int32) string {
	switch code {
	case ExitBadInput:
		return BadInput
	case ExitDecodeError:
		return DecodeError
	case ExitVerificationFailed:
		return VerificationFailed
	case ExitEncoderError:
		return EncoderError
	case ExitNVENCSessionLimit:
		return NVENCSessionLimit
	}
	return Failed
}

// Permanent reports whether a class is one a retry cannot fix: the task
// fails at once, whatever retries it has left.
func Permanent(class string) bool {
	return class == BadInput || class == DecodeError || class == VerificationFailed
}

// UsesRetry reports whether an attempt of this class counts against its
// task's retries (a permanent one counts too, as the task's last attempt).
// Lost and preempted attempts, and attempts with no class, do not: they go
// back to the queue as they are.
func UsesRetry(class string) bool {
	switch class {
	case "", AgentLost, Preempted, NVENCSessionLimit, DeviceLost:
		return false
	}
	return true
}
