//go:build !linux

package bench

import (
	"context"

	"tunnelplane/bench/topo"
)

// RunUDP needs Linux (network namespaces, sendmmsg).
func RunUDP(ctx context.Context, o UDPOptions) (UDPResult, error) {
	return UDPResult{}, topo.ErrUnsupported
}
