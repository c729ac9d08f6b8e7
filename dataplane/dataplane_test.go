package dataplane

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/device/devicetest"
	"tunnelplane/dataplane/underlay"
	"tunnelplane/dataplane/underlay/underlaytest"
)

// What New does with the parts it is handed, tested with fakes: the
// Network seam on the control path, Close, and a device that goes away.

// fakeNetwork records the data plane's calls to its network side.
type fakeNetwork struct {
	mtu     map[netip.Addr]int // path MTU per remote; others get limit
	lookups [][]netip.Addr     // the remotes of each PathMTUs call
	routes  []netip.Prefix     // what the kernel would have, sorted
	hads    [][]netip.Prefix   // the had of each SyncRoutes call
}

func (n *fakeNetwork) PathMTUs(remotes []netip.Addr, limit int, mtus []int) {
	n.lookups = append(n.lookups, slices.Clone(remotes))
	for i, r := range remotes {
		mtus[i] = limit
		if m, ok := n.mtu[r]; ok {
			mtus[i] = min(m, limit)
		}
	}
}

func (n *fakeNetwork) SyncRoutes(want, had []netip.Prefix) ([]netip.Prefix, error) {
	n.hads = append(n.hads, had)
	n.routes = slices.Clone(want)
	slices.SortFunc(n.routes, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	n.routes = slices.Compact(n.routes)
	return n.routes, nil
}

// closeRecorder is a device or socket that records its Close.
type closeRecorder struct {
	devicetest.Fake
	name   string
	closed *[]string
}

func (c *closeRecorder) Close() error { *c.closed = append(*c.closed, c.name); return nil }

const networkConfig = `
device:
  name: tpnet
  addresses: [10.200.0.1/24]
encap:
  type: vxlan
underlay:
  local: 10.99.0.1
  mtu: 1400
peers:
  - remote: 10.99.0.2
    prefixes: [10.200.0.2/32, 10.201.0.0/16]
  - remote: 10.99.0.3
    prefixes: [10.202.0.0/16]
`

func newNetworkDataplane(t *testing.T, dev device.Device, conn *underlaytest.Fake, nw Network, closers []io.Closer, undo func()) *Dataplane {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(networkConfig))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Parts{
		Devices:  []device.Device{dev},
		Underlay: underlay.Sockets{Queues: []underlay.Queue{{Recv: conn, Send: conn}}, Closers: closers},
		Network:  nw,
		Undo:     undo,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestSetPeersNetwork: New looks up every peer's path MTU in one call and
// routes the prefixes the device's subnet does not cover; a change looks
// up only the peers it adds (the others keep counters and path MTU) and
// hands the routes it has back to SyncRoutes; owned prefixes get none.
func TestSetPeersNetwork(t *testing.T) {
	a, b, c := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("10.99.0.4")
	nw := &fakeNetwork{mtu: map[netip.Addr]int{a: 1300, c: 9000}}
	d := newNetworkDataplane(t, &devicetest.Fake{}, &underlaytest.Fake{}, nw, nil, nil)
	defer d.Close()
	if want := [][]netip.Addr{{a, b}}; !slices.EqualFunc(nw.lookups, want, slices.Equal) {
		t.Fatalf("PathMTUs calls %v, want %v", nw.lookups, want)
	}
	tbl := d.Table()
	pa, pb := tbl.PeerByRemote(a), tbl.PeerByRemote(b)
	if pa.pathMTU != 1300 || pb.pathMTU != 1400 {
		t.Fatalf("path MTUs %d, %d; want 1300 and 1400 (the underlay's)", pa.pathMTU, pb.pathMTU)
	}
	if want := pfxs("10.201.0.0/16", "10.202.0.0/16"); !slices.Equal(nw.routes, want) {
		t.Fatalf("routes %v, want %v (10.200.0.2/32 lies in the device's subnet)", nw.routes, want)
	}

	pa.stats.TxPackets.Add(7)
	peers := []*Peer{
		{Remote: a, Prefixes: pfxs("10.201.0.0/16")},
		{Remote: c, Prefixes: pfxs("10.203.0.0/16", "10.204.0.0/16")},
	}
	if err := d.SetPeersRouted(peers, map[netip.Prefix]bool{netip.MustParsePrefix("10.204.0.0/16"): true}); err != nil {
		t.Fatal(err)
	}
	if len(nw.lookups) != 2 || !slices.Equal(nw.lookups[1], []netip.Addr{c}) {
		t.Fatalf("PathMTUs calls %v: the change should look up only %v", nw.lookups, c)
	}
	tbl = d.Table()
	if p := tbl.PeerByRemote(a); p.stats.TxPackets.Load() != 7 || p.pathMTU != 1300 {
		t.Fatalf("kept peer: tx %d, path MTU %d; want its counters (7) and path MTU (1300)", p.stats.TxPackets.Load(), p.pathMTU)
	}
	if p := tbl.PeerByRemote(c); p.pathMTU != 1400 || p.stats.TxPackets.Load() != 0 {
		t.Fatalf("new peer: path MTU %d (want at most the underlay's 1400), tx %d", p.pathMTU, p.stats.TxPackets.Load())
	}
	if want := pfxs("10.201.0.0/16", "10.202.0.0/16"); !slices.Equal(nw.hads[1], want) {
		t.Fatalf("SyncRoutes had %v, want the routes of the last call %v", nw.hads[1], want)
	}
	if want := pfxs("10.201.0.0/16", "10.203.0.0/16"); !slices.Equal(nw.routes, want) {
		t.Fatalf("routes %v, want %v (10.204.0.0/16 is owned by a routing daemon)", nw.routes, want)
	}

	// The routes changed (reroute.go): every peer is looked up again, and
	// a table of copies with the new path MTU replaces the old one, the
	// counters kept; the old table's peers, which forwarding may still
	// read, are not written. Nothing changed: the table stays.
	nw.mtu[c] = 1200
	before := d.Table()
	d.recheckRoutes()
	tbl = d.Table()
	if p := tbl.PeerByRemote(c); p.pathMTU != 1200 {
		t.Fatalf("after the route change: path MTU %d, want 1200", p.pathMTU)
	}
	if p := tbl.PeerByRemote(a); p.stats.TxPackets.Load() != 7 || p.pathMTU != 1300 {
		t.Fatalf("after the route change, the unchanged peer: tx %d, path MTU %d", p.stats.TxPackets.Load(), p.pathMTU)
	}
	if p := before.PeerByRemote(c); p.pathMTU != 1400 {
		t.Fatalf("the old table's peer was written: path MTU %d", p.pathMTU)
	}
	if d.recheckRoutes(); d.Table() != tbl {
		t.Fatal("a look that found nothing changed replaced the table")
	}
}

// TestCloseParts: Close closes the sockets, then the device queues, then
// runs Undo, once.
func TestCloseParts(t *testing.T) {
	var log []string
	dev := &closeRecorder{name: "device", closed: &log}
	sock := &closeRecorder{name: "socket", closed: &log}
	d := newNetworkDataplane(t, dev, &underlaytest.Fake{}, nil, []io.Closer{sock}, func() { log = append(log, "undo") })
	d.Close()
	d.Close()
	if want := []string{"socket", "device", "undo"}; !slices.Equal(log, want) {
		t.Fatalf("Close did %v, want %v", log, want)
	}
}

// TestNewRejectsMismatchedParts: every device queue needs its sockets;
// New closes what it was given when it fails.
func TestNewRejectsMismatchedParts(t *testing.T) {
	var log []string
	cfg, err := config.Parse("test.yaml", []byte(networkConfig))
	if err != nil {
		t.Fatal(err)
	}
	dev := &closeRecorder{name: "device", closed: &log}
	if _, err := New(cfg, Parts{Devices: []device.Device{dev}}, nil); err == nil {
		t.Fatal("New with a device queue and no sockets succeeded")
	}
	if !slices.Equal(log, []string{"device"}) {
		t.Fatalf("after a failed New: closed %v, want the device", log)
	}
}

// TestDeviceGoneIsReported: a device queue that reports closed while the
// data plane runs (a deleted device) stops its reader and is reported on
// Err, naming the stage.
func TestDeviceGoneIsReported(t *testing.T) {
	dev := &devicetest.Fake{Pkt: innerPacket("10.200.0.1", "10.200.0.2"), Left: 100, Burst: 8}
	conn := &underlaytest.Fake{} // Left 0: its reader stops as a closed socket does
	d := newNetworkDataplane(t, dev, conn, nil, nil, nil)
	d.Start()
	defer d.Close()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-d.Err():
			if !isClosed(err) || !strings.Contains(err.Error(), "reader") {
				t.Fatalf("Err delivered %v", err)
			}
			if strings.Contains(err.Error(), "device-reader") {
				if s := d.Stats(); s.EgressTxPackets != 100 {
					t.Fatalf("before the device went: %d packets sent, want 100", s.EgressTxPackets)
				}
				return
			}
		case <-deadline:
			t.Fatal("no error on Err after the device closed")
		}
	}
}
