package dataplane

import (
	"net/netip"
	"testing"
)

func mustPeers(t *testing.T) []*Peer {
	t.Helper()
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	return []*Peer{
		{Remote: netip.MustParseAddr("10.99.0.2"), Prefixes: pp("10.200.0.0/16", "fd00:200::/64")},
		{Remote: netip.MustParseAddr("10.99.0.3"), Prefixes: pp("10.200.5.0/24", "10.200.5.7/32")},
		{Remote: netip.MustParseAddr("10.99.0.4"), Prefixes: pp("10.200.5.8/29", "fd00:200::8/125")},
	}
}

func TestTableLookup(t *testing.T) {
	tbl := NewTable(mustPeers(t))
	tests := []struct {
		dst  string
		want int // peer index, -1 = none
	}{
		{"10.200.0.1", 0},
		{"10.200.5.1", 1},
		{"10.200.5.7", 1},
		{"10.200.5.9", 2},
		{"10.201.0.1", -1},
		{"fd00:200::1", 0},
		{"fd00:200::9", 2},
		{"fd00:201::1", -1},
	}
	for _, tc := range tests {
		t.Run(tc.dst, func(t *testing.T) {
			p := tbl.Lookup(netip.MustParseAddr(tc.dst))
			got := -1
			if p != nil {
				got = p.Index
			}
			if got != tc.want {
				t.Fatalf("Lookup(%s) = peer %d, want %d", tc.dst, got, tc.want)
			}
		})
	}
	if p := tbl.PeerByRemote(netip.MustParseAddr("::ffff:10.99.0.3")); p == nil || p.Index != 1 {
		t.Fatalf("PeerByRemote with a v4-mapped address: %v", p)
	}
	if tbl.Allowed(tbl.Peers[0], netip.MustParseAddr("10.200.5.9")) {
		t.Fatal("peer 0 may not source addresses routed to peer 2")
	}
	if !tbl.Allowed(tbl.Peers[2], netip.MustParseAddr("10.200.5.9")) {
		t.Fatal("peer 2 must be allowed its own prefix")
	}
	if n := testing.AllocsPerRun(100, func() { tbl.Lookup(netip.MustParseAddr("10.200.5.9")) }); n != 0 {
		t.Fatalf("Lookup allocates %v per call", n)
	}
}

func TestFDB(t *testing.T) {
	f := NewFDB(16)
	f.Ageing = 10
	a, b := [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 2}
	if _, ok := f.Lookup(a, 0); ok {
		t.Fatal("empty FDB found an entry")
	}
	f.Learn(a, 3, 100)
	if i, ok := f.Lookup(a, 105); !ok || i != 3 {
		t.Fatalf("Lookup = %d,%v want 3,true", i, ok)
	}
	if _, ok := f.Lookup(a, 111); ok {
		t.Fatal("entry did not age out")
	}
	f.Learn(a, 4, 200) // moved to another peer
	if i, _ := f.Lookup(a, 200); i != 4 {
		t.Fatalf("moved MAC maps to %d, want 4", i)
	}
	f.Learn(b, 0, 200)
	if i, ok := f.Lookup(b, 200); !ok || i != 0 {
		t.Fatalf("peer index 0: %d,%v", i, ok)
	}
	// Fill far beyond capacity: lookups of recent entries still work, none panics.
	for i := range 1000 {
		f.Learn([6]byte{2, 1, 0, 0, byte(i >> 8), byte(i)}, i%7, 300)
	}
	if i, ok := f.Lookup([6]byte{2, 1, 0, 0, 3, 231}, 300); !ok || i != 999%7 {
		t.Fatalf("latest entry: %d,%v", i, ok)
	}
	if n := testing.AllocsPerRun(100, func() { f.Learn(a, 1, 400); f.Lookup(a, 400) }); n != 0 {
		t.Fatalf("FDB allocates %v per call", n)
	}
}

// bigTable is 10,000 peers of 10 prefixes each: 100,000 IPv4 prefixes of
// four lengths (/32, /28, /26, /24), as a large Calico or flannel cluster
// gives a node.
func bigTable(tb testing.TB) (*Table, []netip.Addr) {
	tb.Helper()
	lens := []int{32, 28, 26, 24}
	var peers []*Peer
	var probes []netip.Addr
	for i := range 10000 {
		p := &Peer{Remote: netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)})}
		for j := range 10 {
			k := uint32(i*10 + j)
			l := lens[k%4]
			a := 0x0b000000 + k<<8 // one /24's worth of room per prefix; in memory only, nothing is sent
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), l).Masked()
			p.Prefixes = append(p.Prefixes, pfx)
			probes = append(probes, pfx.Addr())
		}
		peers = append(peers, p)
	}
	return NewTable(peers), probes
}

func TestBigTableLookup(t *testing.T) {
	tbl, probes := bigTable(t)
	for i, a := range probes {
		if p := tbl.Lookup(a); p == nil || p.Index != i/10 {
			t.Fatalf("Lookup(%s) = %v, want peer %d", a, p, i/10)
		}
	}
	if n := testing.AllocsPerRun(100, func() { tbl.Lookup(probes[12345]) }); n != 0 {
		t.Fatalf("Lookup in a 100,000-prefix table allocates %v times", n)
	}
}

// BenchmarkLookup100k: longest-prefix match in a 100,000-prefix table,
// addresses spread over all of it (so mostly cache misses, as a busy node
// with many peers sees).
func BenchmarkLookup100k(b *testing.B) {
	tbl, probes := bigTable(b)
	b.ReportAllocs()
	b.ResetTimer()
	var hit int
	for i := range b.N {
		if tbl.Lookup(probes[(i*7919)%len(probes)]) != nil {
			hit++
		}
	}
	if hit != b.N {
		b.Fatalf("%d of %d lookups missed", b.N-hit, b.N)
	}
}

// BenchmarkNewTable100k: building the 100,000-prefix snapshot (a reload
// builds one).
func BenchmarkNewTable100k(b *testing.B) {
	tbl, _ := bigTable(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		NewTable(tbl.Peers)
	}
}
