//go:build !linux

package underlay

import "log/slog"

// Open is not supported: batched socket I/O needs Linux.
func Open(o Options, queues int, log *slog.Logger) (*Sockets, error) { return nil, errNotSupported }

// IsTransient reports false.
func IsTransient(err error) bool { return false }

// IsGSORefused reports false: there is no GSO here.
func IsGSORefused(err error) bool { return false }
