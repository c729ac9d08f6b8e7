package bpfpath

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"tunnelplane/bench/topo"
)

func peersOf(n, base int) []Peer {
	var ps []Peer
	for i := 0; i < n; i++ {
		ps = append(ps, Peer{
			Prefix: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", base+i)),
			Remote: netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + (base+i)%3)}),
		})
	}
	return ps
}

// mapKeys is what the maps hold: prefixes and remotes.
func mapKeys(t *testing.T, pa *Path) (prefixes, remotes int) {
	t.Helper()
	var k lpmKey
	var v [peerValueSz]byte
	it := pa.peers.Iterate()
	for it.Next(&k, &v) {
		prefixes++
	}
	var r [4]byte
	var n []PeerCounters
	it2 := pa.remotes.Iterate()
	for it2.Next(&r, &n) {
		remotes++
	}
	if err := errors.Join(it.Err(), it2.Err()); err != nil {
		t.Fatal(err)
	}
	return prefixes, remotes
}

// TestSetPeersMaps: the maps hold exactly the last set; a set that does
// not fit is reported and still removes what is gone, so the next one
// fits; after Close the methods say so instead of touching the maps.
func TestSetPeersMaps(t *testing.T) {
	topo.RequireRoot(t)
	pa, err := load(Config{Encap: VXLAN, Local: fuzzLocal, VNI: 1, TOS: Inherit, DF: Inherit, Device: 1, Underlay: 1, MaxPeers: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	if _, err := pa.SetPeers(peersOf(5, 0)); err != nil {
		t.Fatal(err)
	}
	if p, r := mapKeys(t, pa); p != 5 || r != 3 {
		t.Fatalf("after 5 peers: %d prefixes, %d remotes", p, r)
	}
	if _, err := pa.SetPeers(peersOf(2, 1)); err != nil {
		t.Fatal(err)
	}
	if p, r := mapKeys(t, pa); p != 2 || r != 2 {
		t.Fatalf("after 2 peers: %d prefixes, %d remotes", p, r)
	}
	// 6 new prefixes beside the 2 there: the map takes 4 of them, the
	// write of the rest fails, and the 2 old ones are removed anyway.
	if _, err := pa.SetPeers(peersOf(6, 10)); err == nil {
		t.Fatal("an overfull set was not reported")
	}
	if p, _ := mapKeys(t, pa); p != 4 {
		t.Fatalf("after the overfull set: %d prefixes, want the 4 that fitted", p)
	}
	if _, err := pa.SetPeers(peersOf(6, 10)); err != nil {
		t.Fatalf("the same set again: %v", err)
	}
	if p, r := mapKeys(t, pa); p != 6 || r != 3 {
		t.Fatalf("after 6 peers: %d prefixes, %d remotes", p, r)
	}
	if skipped, err := pa.SetPeers([]Peer{{Prefix: netip.MustParsePrefix("fd00::/64"), Remote: fuzzRemote}}); err != nil || skipped != 1 {
		t.Fatalf("IPv6 prefix: skipped %d, %v", skipped, err)
	}
	pa.Close()
	if _, err := pa.Counters(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Counters after Close: %v", err)
	}
	if _, err := pa.SetPeers(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetPeers after Close: %v", err)
	}
}
