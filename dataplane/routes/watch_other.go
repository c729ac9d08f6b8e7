//go:build !linux

package routes

import (
	"context"
	"errors"
)

// ErrUnsupported is returned by Watch where there are no netlink routes.
var ErrUnsupported = errors.New("routes: route-driven peers need Linux netlink")

// Watch needs Linux.
func Watch(ctx context.Context, devName string, fn func([]Peer)) error {
	return ErrUnsupported
}

// WatchWithOptions needs Linux.
func WatchWithOptions(ctx context.Context, devName string, opt WatchOptions, fn func([]Peer)) error {
	return ErrUnsupported
}
