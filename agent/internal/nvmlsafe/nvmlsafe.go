// Package nvmlsafe calls NVML so that no failure of the library can take
// the agent down: every query's Return becomes an error, and a panic inside
// a query becomes an error too.
package nvmlsafe

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Call runs one NVML query and turns its Return into an error (nil on
// SUCCESS) that wraps the Return, so errors.Is(err, nvml.ERROR_...) works.
// A panic inside the query, which go-nvml raises when a symbol is missing
// from the loaded library (and its mocks raise for methods a test did not
// provide), becomes an error too, so a broken driver install can never take
// the agent down.
func Call[T any](op string, f func() (T, nvml.Return)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, fmt.Errorf("nvml %s: panic: %v", op, r)
		}
	}()
	v, ret := f()
	if ret != nvml.SUCCESS {
		return v, fmt.Errorf("nvml %s: %w", op, ret)
	}
	return v, nil
}

// Call0 is Call for queries that return only a status.
func Call0(op string, f func() nvml.Return) error {
	_, err := Call(op, func() (struct{}, nvml.Return) { return struct{}{}, f() })
	return err
}
