// Package otelenv reads whether the standard OTEL_* environment variables
// ask for traces to be exported. It imports no OpenTelemetry code, so that
// the thin sched client can tell, without linking the SDK, that a call
// must be handed to banyand to be traced (cmd/sched/thin.go); package
// tracing decides with it too, so both agree.
package otelenv

import "strings"

// Enabled reports whether environ (os.Environ's form) asks for traces to
// be exported: OTEL_TRACES_EXPORTER=otlp, or any OTEL_EXPORTER_OTLP_*
// variable set to a value, unless OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER names another exporter ("none", "console").
func Enabled(environ []string) bool {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTEL_") {
			env[k] = v
		}
	}
	if strings.EqualFold(env["OTEL_SDK_DISABLED"], "true") {
		return false
	}
	if e := strings.TrimSpace(env["OTEL_TRACES_EXPORTER"]); e != "" {
		return strings.EqualFold(e, "otlp")
	}
	for k, v := range env {
		if strings.HasPrefix(k, "OTEL_EXPORTER_OTLP_") && v != "" {
			return true
		}
	}
	return false
}
