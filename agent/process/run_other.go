//go:build !linux

package process

import "context"

// Run reports failure: process groups, parent-death signals and the exit
// watch Run relies on are implemented for Linux only.
func Run(ctx context.Context, spec Spec) Result {
	if r := prepare(ctx, &spec); r != nil {
		return *r
	}
	return notStarted(spec.Now, OutcomeFailed, "running processes is only supported on Linux")
}
