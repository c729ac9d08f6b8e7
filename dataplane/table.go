package dataplane

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync/atomic"

	"tunnelplane/dataplane/stats"
)

// Peer is one remote tunnel endpoint and the overlay prefixes behind it.
// Peers are immutable once in a Table.
type Peer struct {
	Index    int // position in Table.Peers; stable for the life of the snapshot
	Remote   netip.Addr
	Prefixes []netip.Prefix
	MAC      [6]byte // VTEP MAC (VXLAN in TUN mode) or a static FDB entry (TAP mode, when StaticMAC)
	// StaticMAC says MAC is a configured FDB entry for TAP mode rather than
	// a derived default.
	StaticMAC bool
	stats     *stats.PeerStats // set by Dataplane.SetPeers; nil in bare tables
	pathMTU   int              // set by Dataplane.SetPeers; 0 = unknown, no check
	// offUnderlay is set by Dataplane.SetPeers, with the kernel path
	// attached, when the route toward Remote leaves by another device
	// than the underlay's: the programs cannot reach the peer.
	offUnderlay bool
}

// Stats returns the peer's counters (nil outside a running data plane).
func (p *Peer) Stats() *stats.PeerStats { return p.stats }

// Table is an immutable snapshot of the peers and the routes to them. The
// data plane reads it through an atomic.Pointer and never locks; a change
// builds a new Table and swaps the pointer.
type Table struct {
	Peers     []*Peer
	byRemote  map[netip.Addr]*Peer
	byRemote4 map[uint32]*Peer // the IPv4 remotes again, for the 32-bit map fast path
	// Distinct prefix lengths per family, longest first: a lookup masks the
	// address to each length and probes the map, so its cost grows with the
	// number of distinct lengths, not with the number of prefixes.
	lens4, lens6 []int
	// routes4 holds the IPv4 prefixes, one map per prefix length keyed by
	// the masked address as a uint32 (the runtime's 32-bit map fast path is
	// several times quicker than hashing a netip.Prefix), with the peer's
	// index as the value: 8 bytes an entry, which at 100,000 prefixes is
	// what keeps two snapshots side by side (during a swap) small.
	routes4 [33]map[uint32]int32
	routes6 map[netip.Prefix]int32
	static  map[[6]byte]*Peer
	// FDB holds the MACs learned from peers (TAP mode). It is the one part
	// of a snapshot that changes, and it does so without locks.
	FDB *FDB
}

// NewTable builds a snapshot. Peers must already be valid (the config
// package checks duplicates and overlaps); later peers win on a clash.
func NewTable(peers []*Peer) *Table {
	t := &Table{
		Peers:     peers,
		byRemote:  make(map[netip.Addr]*Peer, len(peers)),
		byRemote4: make(map[uint32]*Peer, len(peers)),
		static:    make(map[[6]byte]*Peer),
		FDB:       NewFDB(4096),
	}
	// Size the maps first: growing a map of 100,000 entries doubles it
	// five times and leaves the old storage to the collector.
	var n4 [33]int
	n6 := 0
	for _, p := range peers {
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Is4() {
				n4[pfx.Bits()]++
			} else {
				n6++
			}
		}
	}
	for l, n := range n4 {
		if n > 0 {
			t.routes4[l] = make(map[uint32]int32, n)
			t.lens4 = append(t.lens4, l)
		}
	}
	if n6 > 0 {
		t.routes6 = make(map[netip.Prefix]int32, n6)
	}
	seen6 := map[int]bool{}
	for i, p := range peers {
		p.Index = i
		t.byRemote[p.Remote.Unmap()] = p
		if r := p.Remote.Unmap(); r.Is4() {
			a4 := r.As4()
			t.byRemote4[binary.BigEndian.Uint32(a4[:])] = p
		}
		if p.StaticMAC {
			t.static[p.MAC] = p
		}
		for _, pfx := range p.Prefixes {
			pfx = pfx.Masked()
			if pfx.Addr().Is4() {
				a4 := pfx.Addr().As4()
				t.routes4[pfx.Bits()][binary.BigEndian.Uint32(a4[:])] = int32(i)
				continue
			}
			t.routes6[pfx] = int32(i)
			if !seen6[pfx.Bits()] {
				seen6[pfx.Bits()] = true
				t.lens6 = append(t.lens6, pfx.Bits())
			}
		}
	}
	slices.SortFunc(t.lens4, func(a, b int) int { return b - a })
	slices.SortFunc(t.lens6, func(a, b int) int { return b - a })
	return t
}

// Lookup returns the peer whose prefix is the longest match for dst, or nil.
func (t *Table) Lookup(dst netip.Addr) *Peer {
	if dst.Is4() {
		a4 := dst.As4()
		a := binary.BigEndian.Uint32(a4[:])
		for _, l := range t.lens4 {
			if i, ok := t.routes4[l][a&^(0xffffffff>>l)]; ok {
				return t.Peers[i]
			}
		}
		return nil
	}
	for _, l := range t.lens6 {
		pfx, err := dst.Prefix(l)
		if err != nil {
			continue
		}
		if i, ok := t.routes6[pfx]; ok {
			return t.Peers[i]
		}
	}
	return nil
}

// PeerByRemote returns the peer whose underlay address is a, or nil.
func (t *Table) PeerByRemote(a netip.Addr) *Peer {
	if a.Is4() {
		a4 := a.As4()
		return t.byRemote4[binary.BigEndian.Uint32(a4[:])]
	}
	return t.byRemote[a.Unmap()]
}

// Allowed reports whether p may send packets with inner source src: like
// WireGuard's allowed IPs, src must route back to p.
func (t *Table) Allowed(p *Peer, src netip.Addr) bool { return t.Lookup(src) == p }

// LookupMAC returns the peer for an inner destination MAC (TAP mode): a
// static entry first, then a learned one younger than the FDB's ageing time.
func (t *Table) LookupMAC(mac [6]byte, now int64) *Peer {
	if p := t.static[mac]; p != nil {
		return p
	}
	if i, ok := t.FDB.Lookup(mac, now); ok && i < len(t.Peers) {
		return t.Peers[i]
	}
	return nil
}

// DefaultFDBAgeing matches the Linux bridge and vxlan default (300 s).
const DefaultFDBAgeing = 300e9

// fdbProbe is how many neighbouring slots an entry may live in.
const fdbProbe = 4

// FDB is a fixed-size, lock-free MAC -> peer table with ageing. Each slot
// packs the MAC and the peer index into one 64-bit word, so a reader sees
// either the old or the new entry, never half of each. Learning from the
// same MAC on the same peer only refreshes the timestamp, and only once a
// second, so steady traffic does not keep writing shared cache lines.
type FDB struct {
	slots  []fdbSlot
	mask   uint64
	Ageing int64 // nanoseconds
}

type fdbSlot struct {
	key  atomic.Uint64 // mac<<16 | (peer index + 1); 0 = empty
	seen atomic.Int64  // monotonic nanoseconds of the last refresh
}

// NewFDB returns an FDB with room for about size entries (rounded up to a
// power of two).
func NewFDB(size int) *FDB {
	n := 1
	for n < size {
		n <<= 1
	}
	return &FDB{slots: make([]fdbSlot, n), mask: uint64(n - 1), Ageing: DefaultFDBAgeing}
}

func macKey(mac [6]byte) uint64 {
	var b [8]byte
	copy(b[2:], mac[:])
	return binary.BigEndian.Uint64(b[:])
}

func fdbHash(k uint64) uint64 { k *= 0x9E3779B97F4A7C15; return k ^ k>>29 }

// Lookup returns the peer index learned for mac, if it is fresh.
func (f *FDB) Lookup(mac [6]byte, now int64) (int, bool) {
	k := macKey(mac)
	h := fdbHash(k)
	for i := uint64(0); i < fdbProbe; i++ {
		s := &f.slots[(h+i)&f.mask]
		v := s.key.Load()
		if v>>16 == k && v&0xffff != 0 {
			if now-s.seen.Load() > f.Ageing {
				return 0, false
			}
			return int(v&0xffff) - 1, true
		}
	}
	return 0, false
}

// Learn records that mac was seen behind peer index idx at time now.
func (f *FDB) Learn(mac [6]byte, idx int, now int64) {
	if idx < 0 || idx >= 0xffff {
		return
	}
	k := macKey(mac)
	want := k<<16 | uint64(idx+1)
	h := fdbHash(k)
	var victim *fdbSlot
	for i := uint64(0); i < fdbProbe; i++ {
		s := &f.slots[(h+i)&f.mask]
		v := s.key.Load()
		if v>>16 == k && v != 0 {
			if v != want {
				s.key.Store(want) // the MAC moved to another peer
				s.seen.Store(now)
			} else if now-s.seen.Load() > 1e9 {
				s.seen.Store(now)
			}
			return
		}
		if victim == nil && (v == 0 || now-s.seen.Load() > f.Ageing) {
			victim = s
		}
	}
	if victim == nil { // all probed slots live: replace the oldest
		victim = &f.slots[h&f.mask]
		for i := uint64(1); i < fdbProbe; i++ {
			s := &f.slots[(h+i)&f.mask]
			if s.seen.Load() < victim.seen.Load() {
				victim = s
			}
		}
	}
	victim.seen.Store(now)
	victim.key.Store(want)
}
