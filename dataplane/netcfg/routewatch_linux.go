package netcfg

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteChanges reports, on the returned channel (capacity 1: a burst of
// changes is one report, never a backlog), that a route of the main
// table changed whose output device is not skip (the tunnel device,
// whose own routes are the peers' prefixes, not the way to the peers),
// until done is closed. The report says only that something changed: the
// caller looks up what it needs again.
func RouteChanges(skip int, done <-chan struct{}) (<-chan struct{}, error) {
	updates := make(chan netlink.RouteUpdate, 256)
	if err := netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{ReceiveBufferSize: 1 << 20}); err != nil {
		return nil, fmt.Errorf("netcfg: subscribe to routes: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		for u := range updates {
			if u.Table != unix.RT_TABLE_MAIN || u.LinkIndex == skip && skip != 0 {
				continue
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, nil
}
