//go:build !unix

package main

// raiseFileLimit does nothing where there are no rlimits.
func raiseFileLimit(need uint64) (uint64, error) { return need, nil }
