//go:build !linux

package hugeheap

import (
	"context"
	"log/slog"
)

// Start does nothing off Linux, where there is no such advice, and returns
// nil.
func Start(ctx context.Context, log *slog.Logger) <-chan struct{} { return nil }
