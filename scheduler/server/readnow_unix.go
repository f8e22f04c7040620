//go:build unix

package server

import (
	"errors"
	"syscall"
)

// canReadNow says that readNow reads sockets on this system.
const canReadNow = true

// readNow reads what a non-blocking socket holds into buf. ready is false
// when it holds nothing yet (the caller waits for it to become readable
// and tries again); n is never negative.
func readNow(fd uintptr, buf []byte) (n int, ready bool, err error) {
	for {
		n, err = syscall.Read(int(fd), buf)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, false, nil
	}
	return max(n, 0), true, err
}
