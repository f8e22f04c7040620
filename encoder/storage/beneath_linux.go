//go:build linux && (amd64 || arm64 || 386 || arm || riscv64 || loong64 || ppc64 || ppc64le || s390x)

package storage

import (
	"errors"
	"syscall"
	"unsafe"
)

// openat2 and its flags (linux/openat2.h). The syscall number is 437 and
// O_PATH is 0x200000 on every architecture this file builds for.
const (
	sysOpenat2          = 437
	oPath               = 0x200000
	resolveNoMagiclinks = 0x02
	resolveNoSymlinks   = 0x04
	resolveBeneath      = 0x08
)

// openHow is struct open_how.
type openHow struct {
	flags, mode, resolve uint64
}

// beneath asks the kernel (openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS) whether rel, relative to dir, is reached without
// leaving dir and without following any link. checked is false when the
// kernel has no openat2 (before Linux 5.6, or filtered by seccomp).
func beneath(dir, rel string) (checked bool, err error) {
	dfd, err := syscall.Open(dir, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return true, err
	}
	defer syscall.Close(dfd)
	p, err := syscall.BytePtrFromString(rel)
	if err != nil {
		return true, err
	}
	how := openHow{flags: oPath | syscall.O_CLOEXEC, resolve: resolveBeneath | resolveNoSymlinks | resolveNoMagiclinks}
	fd, _, errno := syscall.Syscall6(sysOpenat2, uintptr(dfd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
	switch {
	case errno == 0:
		syscall.Close(int(fd))
		return true, nil
	case errors.Is(errno, syscall.ENOSYS) || errors.Is(errno, syscall.EPERM):
		return false, nil
	}
	return true, errno
}
