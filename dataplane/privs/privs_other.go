//go:build !linux

package privs

import (
	"errors"
	"runtime"
)

// Default is what Drop keeps when it is given no capabilities (CAP_NET_ADMIN
// and CAP_NET_RAW on Linux).
var Default = []uintptr{12, 13}

// ErrCgo is returned on Linux in binaries that link cgo; see the Linux docs.
var ErrCgo = errors.New("privs: this binary uses cgo, so capabilities cannot be changed on all threads; build it with CGO_ENABLED=0")

var errOS = errors.New("privs: capabilities are Linux only (GOOS=" + runtime.GOOS + ")")

// Supported reports whether Drop can work: never outside Linux.
func Supported() error { return errOS }

// Drop is Linux only.
func Drop(keep ...uintptr) error { return errOS }

// Current is Linux only.
func Current() (uint64, error) { return 0, errOS }
