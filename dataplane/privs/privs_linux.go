package privs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Default is what Drop keeps when it is given no capabilities.
var Default = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}

// ErrCgo is returned (wrapped) by Drop and Supported in binaries that link
// cgo: there the Go runtime cannot run a system call on every thread, and
// changing the capabilities of the calling thread only would leave the
// others privileged.
var ErrCgo = errors.New("privs: this binary uses cgo, so capabilities cannot be changed on all threads; build it with CGO_ENABLED=0")

// Supported reports whether Drop can work in this binary: nil, or an error
// wrapping ErrCgo.
func Supported() error {
	// A harmless call whose result is the same on every thread.
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_GETPPID, 0, 0, 0)
	if e == syscall.ENOTSUP {
		return ErrCgo
	}
	if e != 0 {
		return fmt.Errorf("privs: all-threads probe: %w", e)
	}
	return nil
}

// Drop keeps only the given capabilities (Default when none are given) and
// removes every other one, on every thread of the process:
//
//   - each capability not kept is removed from the bounding set
//     (PR_CAPBSET_DROP). That needs CAP_SETPCAP; a process without it (a
//     non-root user with file or ambient capabilities) keeps its bounding
//     set, which is then harmless: with no_new_privs set, execve can never
//     raise capabilities above the permitted set. systemd's
//     CapabilityBoundingSet= narrows it from outside;
//   - the ambient set is cleared (tunneld runs no other programs);
//   - no_new_privs is set, so no later execve can gain privileges;
//   - the permitted, effective and inheritable sets become exactly the kept
//     capabilities that the process had permitted. Capabilities asked for
//     but not held are not an error: Drop only ever lowers privileges; check
//     Current when that matters.
//
// Threads the runtime starts afterwards inherit the lowered sets. In a cgo
// binary Drop returns an error wrapping ErrCgo and changes nothing. On
// another error the process may be left partly lowered (never raised).
func Drop(keep ...uintptr) error {
	if len(keep) == 0 {
		keep = Default
	}
	last := lastCap()
	var want uint64
	for _, c := range keep {
		if c > uintptr(last) {
			return fmt.Errorf("privs: capability %d is not known to this kernel (last is %d)", c, last)
		}
		want |= 1 << c
	}
	hdr, data, err := capget()
	if err != nil {
		return err
	}
	permitted := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	keepMask := want & permitted
	if err := Supported(); err != nil {
		return err
	}

	effective := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	canBound := effective&(1<<unix.CAP_SETPCAP) != 0
	for c := 0; c <= last && canBound; c++ {
		if want&(1<<c) != 0 {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return fmt.Errorf("privs: read bounding set (%s): %w", Name(uintptr(c)), err)
		}
		if in == 0 {
			continue
		}
		if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); e != 0 {
			return fmt.Errorf("privs: drop %s from the bounding set: %w", Name(uintptr(c)), e)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 && e != syscall.EINVAL {
		// EINVAL: a kernel older than 4.3 has no ambient set.
		return fmt.Errorf("privs: clear the ambient set: %w", e)
	}
	if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("privs: set no_new_privs: %w", e)
	}

	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	hdr.Pid = 0
	for i := range data {
		v := uint32(keepMask >> (32 * i))
		data[i] = unix.CapUserData{Effective: v, Permitted: v, Inheritable: v}
	}
	// AllThreadsSyscall is go:uintptrescapes: hdr and data stay alive and in
	// place for the duration of the call.
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("privs: capset: %w", e)
	}
	return nil
}

// Current returns the effective capability set of the calling thread as a
// bitmask (bit n = capability n, e.g. 1<<unix.CAP_NET_ADMIN).
func Current() (uint64, error) {
	_, data, err := capget()
	if err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

func capget() (*unix.CapUserHeader, *[2]unix.CapUserData, error) {
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return nil, nil, fmt.Errorf("privs: capget: %w", err)
	}
	return hdr, data, nil
}

// lastCap is the highest capability number of the running kernel.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}

// ThreadSets is one thread's capability sets, as /proc shows them.
type ThreadSets struct {
	TID                                                  int
	Inheritable, Permitted, Effective, Bounding, Ambient uint64
	NoNewPrivs                                           bool
}

// Threads reads the capability sets of every thread of this process from
// /proc/self/task/*/status, for verification and logging.
func Threads() ([]ThreadSets, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("privs: %w", err)
	}
	var out []ThreadSets
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := readStatus("/proc/self/task/" + e.Name() + "/status")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return nil, err
		}
		s.TID = tid
		out = append(out, s)
	}
	return out, nil
}

func readStatus(path string) (ThreadSets, error) {
	var s ThreadSets
	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var dst *uint64
		switch k {
		case "CapInh":
			dst = &s.Inheritable
		case "CapPrm":
			dst = &s.Permitted
		case "CapEff":
			dst = &s.Effective
		case "CapBnd":
			dst = &s.Bounding
		case "CapAmb":
			dst = &s.Ambient
		case "NoNewPrivs":
			s.NoNewPrivs = v == "1"
			continue
		default:
			continue
		}
		n, err := strconv.ParseUint(v, 16, 64)
		if err != nil {
			return s, fmt.Errorf("privs: %s: %s: %w", path, k, err)
		}
		*dst = n
	}
	return s, sc.Err()
}
