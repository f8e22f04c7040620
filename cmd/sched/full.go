//go:build !schedthin

package main

// handOff is where the thin build hands daemon commands to banyand
// (thin.go); the full build runs every command itself.
func handOff([]string) {}
