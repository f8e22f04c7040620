//go:build !(linux && (amd64 || arm64 || 386 || arm || riscv64 || loong64 || ppc64 || ppc64le || s390x))

package storage

// beneath reports that the kernel check is not available here: the
// resolution in user space stands alone.
func beneath(dir, rel string) (checked bool, err error) { return false, nil }
