package routes

import (
	"time"

	"github.com/vishvananda/netns"
)

// DefaultDebounce is how long Watch waits after a route change for more
// changes before it reports a snapshot.
const DefaultDebounce = 50 * time.Millisecond

// maxDelay bounds the wait of a continuous stream of changes: a snapshot
// goes out at the latest this long after the first change of a burst.
const maxDelay = 500 * time.Millisecond

// WatchOptions tunes WatchWithOptions.
type WatchOptions struct {
	// Namespace is the network namespace whose routes are watched (its
	// netlink sockets are opened there). 0 and netns.None() mean the
	// namespace of the calling thread.
	Namespace netns.NsHandle
	// Debounce is the quiet time after a change before a snapshot is
	// reported; 0 means DefaultDebounce. A burst of changes (a routing
	// daemon's full table at start-up) yields one callback.
	Debounce time.Duration
}
