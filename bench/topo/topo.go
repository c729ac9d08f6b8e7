package topo

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// RequirePrivEnv names the environment variable that turns "skip when not
// privileged" into a test failure (CI sets it so that integration tests can
// not silently vanish).
const RequirePrivEnv = "TUNNELPLANE_REQUIRE_PRIV"

// ErrUnsupported is returned on systems without network namespaces.
var ErrUnsupported = errors.New("topo: network namespaces need Linux")

// The only address ranges this package configures or sends traffic to.
var (
	UnderlayV4 = netip.MustParsePrefix("10.99.0.0/24")
	UnderlayV6 = netip.MustParsePrefix("fd99::/64")
	OverlayV4  = netip.MustParsePrefix("10.200.0.0/16")
	OverlayV6  = netip.MustParsePrefix("fd00:200::/64")
)

// Default underlay addresses of a Pair.
var (
	DefaultAddrA  = netip.MustParsePrefix("10.99.0.1/24")
	DefaultAddrB  = netip.MustParsePrefix("10.99.0.2/24")
	DefaultAddrA6 = netip.MustParsePrefix("fd99::1/64")
	DefaultAddrB6 = netip.MustParsePrefix("fd99::2/64")
)

// Default interface names of a Pair's veth ends.
const (
	DefaultIfA = "veth-a"
	DefaultIfB = "veth-b"
)

// Allowed reports whether addr lies in one of the project's ranges (or is a
// loopback address). Ping refuses anything else.
func Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() {
		return true
	}
	for _, p := range []netip.Prefix{UnderlayV4, UnderlayV6, OverlayV4, OverlayV6} {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// RequireRoot skips the test with a clear message when the process is not
// root (or not on Linux) — unless RequirePrivEnv is set to a non-empty value,
// in which case it fails the test with that message.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	var msg string
	switch {
	case runtime.GOOS != "linux":
		msg = "topo: this test needs Linux network namespaces (GOOS=" + runtime.GOOS + ")"
	case os.Geteuid() != 0:
		msg = "topo: this test needs root (it creates network namespaces and veth pairs); " +
			"run it as root, e.g. `sudo -E go test ...`"
	default:
		return
	}
	if os.Getenv(RequirePrivEnv) != "" {
		tb.Fatal(msg + " [" + RequirePrivEnv + " is set, so this is a failure, not a skip]")
	}
	tb.Skip(msg)
}

// NS is a named network namespace created by this package.
type NS struct {
	// Name is the namespace's name under /run/netns (usable with `ip netns exec`).
	Name string

	fd     int             // open handle of the namespace (setns target)
	handle *netlink.Handle // netlink sockets living in the namespace
	ctx    context.Context // cancelled by Close: kills processes from Command
	cancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// Pair is two namespaces joined by a veth pair, one end in each.
type Pair struct {
	A, B     *NS
	IfA, IfB string
	// Underlay addresses (10.99.0.1/24 and 10.99.0.2/24).
	AddrA, AddrB netip.Prefix
	// IPv6 underlay addresses (fd99::1/64 and fd99::2/64); invalid (zero)
	// unless PairOptions.IPv6 was set.
	AddrA6, AddrB6 netip.Prefix
	// MTU of both veth ends.
	MTU int
	// Offloads is true when the veth offloads were left at the kernel defaults.
	Offloads bool

	closeOnce sync.Once
	closeErr  error
}

// PairOptions selects what NewPair and Build configure.
type PairOptions struct {
	// IPv6 also configures fd99::1/64 and fd99::2/64 (nodad, usable at once).
	IPv6 bool
	// Offloads false turns the veth offloads off on both ends
	// (`ethtool -K IF rx off tx off tso off gso off gro off`), as interop tests and
	// raw-socket readers need; true leaves the kernel defaults.
	Offloads bool
	// MTU of both veth ends; 0 means 1500.
	MTU int
}

// KernelVXLAN describes a kernel vxlan device programmed like flannel's.
type KernelVXLAN struct {
	Name string // device name, e.g. "vxlan42"
	VNI  uint32
	Port int // UDP destination port; 0 means 4789
	// Local is the underlay address the device sends from; Remote the peer
	// VTEP's underlay address (target of the all-zero FDB entry). An invalid
	// Remote skips the FDB entry.
	Local, Remote netip.Addr
	MAC           [6]byte      // fixed device MAC
	Addr          netip.Prefix // overlay address on the device
	MTU           int          // 0: kernel default (underlay MTU - overhead)

	// Dev optionally names the underlay device (flannel sets it); empty lets
	// the kernel route by Local/Remote.
	Dev string
	// UDPCsum forces outer UDP checksums on (IPv4 underlay). False keeps the
	// kernel's default for the device.
	UDPCsum bool
	// PeerRoutes are extra overlay prefixes routed `via PEER onlink` over the
	// device (flannel's per-node pod subnet route).
	PeerRoutes []netip.Prefix
}

// PingOptions tunes NS.PingWith.
type PingOptions struct {
	Count        int           // packets; 0 means 3
	Size         int           // payload bytes (-s); 0: ping's default
	DontFragment bool          // -M do
	Interval     time.Duration // 0 means 200ms
	Timeout      time.Duration // per-reply wait (-W); 0 means 2s
}

// Frame is one captured Ethernet frame.
type Frame struct {
	Data     []byte
	PktType  uint8 // PACKET_HOST, PACKET_OUTGOING, ... (see packet(7))
	Outgoing bool  // sent by this namespace rather than received
	Len      int   // original length on the wire (> len(Data) if truncated)
}

// NewPair creates two fresh namespaces joined by a veth pair (see Build) and
// registers their teardown with tb.Cleanup, so they go away even when the
// test fails. It calls RequireRoot first.
func NewPair(tb testing.TB, opt PairOptions) *Pair {
	tb.Helper()
	RequireRoot(tb)
	p, err := Build(opt)
	if err != nil {
		tb.Fatalf("topo: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("topo: teardown: %v", err)
		}
	})
	return p
}

// NewNS creates one fresh, empty namespace (lo up) for building other
// topologies, with teardown registered through tb.Cleanup. label becomes part
// of the name ("tp-<run>-<label>"). It calls RequireRoot first.
func NewNS(tb testing.TB, label string) *NS {
	tb.Helper()
	RequireRoot(tb)
	n, err := BuildNS(label)
	if err != nil {
		tb.Fatalf("topo: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("topo: teardown of %s: %v", n.Name, err)
		}
	})
	return n
}

// SendUDP sends one datagram to dst from a socket opened inside n (the
// kernel picks the source): a packet to follow through a data path.
func (n *NS) SendUDP(dst netip.AddrPort, payload []byte) error {
	return n.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
}
