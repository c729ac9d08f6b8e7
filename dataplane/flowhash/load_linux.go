package flowhash

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const bpfAttrLen = 128

// Load loads prog as a socket-filter program and returns its file
// descriptor, for the caller to attach and close. Loading needs CAP_BPF
// or CAP_SYS_ADMIN (tunneld does it before dropping privileges).
func Load(prog []Insn) (int, error) {
	license := []byte("Apache-2.0\x00")
	logBuf := make([]byte, 4096)
	var attr [bpfAttrLen]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = unix.BPF_PROG_TYPE_SOCKET_FILTER
	*(*uint32)(unsafe.Pointer(&attr[4])) = uint32(len(prog))
	*(*uint64)(unsafe.Pointer(&attr[8])) = uint64(uintptr(unsafe.Pointer(&prog[0])))
	*(*uint64)(unsafe.Pointer(&attr[16])) = uint64(uintptr(unsafe.Pointer(&license[0])))
	*(*uint32)(unsafe.Pointer(&attr[24])) = 1 // log_level
	*(*uint32)(unsafe.Pointer(&attr[28])) = uint32(len(logBuf))
	*(*uint64)(unsafe.Pointer(&attr[32])) = uint64(uintptr(unsafe.Pointer(&logBuf[0])))
	// The verifier gives up with EAGAIN when a signal is pending, and the
	// Go runtime signals threads to preempt them: retry a few times, as
	// libbpf and cilium/ebpf do.
	var fd uintptr
	var errno unix.Errno
	for try := 0; try < 10; try++ {
		if fd, _, errno = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), bpfAttrLen); errno != unix.EAGAIN {
			break
		}
	}
	runtime.KeepAlive(prog) // the attribute holds their addresses as plain integers
	runtime.KeepAlive(license)
	runtime.KeepAlive(logBuf)
	if errno != 0 {
		return -1, fmt.Errorf("load flow-hash program: %w: %s", errno, cString(logBuf))
	}
	return int(fd), nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
