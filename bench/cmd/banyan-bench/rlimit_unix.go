//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseFileLimit makes sure this process may hold need open files,
// raising its soft limit (and, where allowed, its hard limit) as needed.
// It returns the limit in force and an error naming it when it stays below
// need.
func raiseFileLimit(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	want := syscall.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not allowed past the hard limit: take what it allows.
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err2 != nil {
			return lim.Cur, fmt.Errorf("open-file limit %d, %d needed: %w", lim.Cur, need, err)
		}
		return lim.Max, fmt.Errorf("open-file limit %d (the hard limit), %d needed: %w", lim.Max, need, err)
	}
	return need, nil
}
