package bpfpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Path is a tunnel's two programs, attached, and the peer maps they read.
// Close detaches both; so does the end of the process that attached them
// (tcx links live with their file descriptors), so a crashed tunneld
// leaves no datapath behind.
type Path struct {
	underlay       int // ifindex the encap sends by
	cpus           int // possible CPUs: the per-CPU maps' value count
	counters       *ebpf.Map
	peers, remotes *ebpf.Map
	progs          []*ebpf.Program
	links          []link.Link
	mu             sync.Mutex // SetPeers, Counters, Close: the maps go on Close
	havePeers      map[lpmKey]peerVal
	haveRemotes    map[[4]byte]uint32
}

type lpmKey struct {
	Bits uint32
	Addr [4]byte
}

type peerVal struct {
	Remote [4]byte
	MAC    [6]byte
	Sum    uint16
}

func (v peerVal) bytes() []byte {
	b := make([]byte, peerValueSz)
	copy(b[peerRemote:], v.Remote[:])
	copy(b[peerMAC:], v.MAC[:])
	binary.NativeEndian.PutUint16(b[peerSum:], v.Sum)
	return b
}

func (k lpmKey) bytes() []byte {
	b := make([]byte, lpmKeySz)
	binary.NativeEndian.PutUint32(b, k.Bits)
	copy(b[4:], k.Addr[:])
	return b
}

// Attach loads the tunnel's programs and attaches the encapsulation to the
// overlay device's egress and the decapsulation to the underlay device's
// ingress (tcx, Linux 6.6+). It must run on a thread in the namespace of
// both devices. Loading needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN).
// The path carries nothing until SetPeers gives it peers.
func Attach(c Config) (*Path, error) {
	pa, err := load(c)
	if err != nil {
		return nil, err
	}
	for i, s := range []struct {
		ifidx  int
		attach ebpf.AttachType
	}{
		{c.Device, ebpf.AttachTCXEgress},
		{c.Underlay, ebpf.AttachTCXIngress},
	} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: s.ifidx, Program: pa.progs[i], Attach: s.attach})
		if err != nil {
			pa.Close()
			return nil, fmt.Errorf("bpfpath: attach %s to ifindex %d: %w", progNames[i], s.ifidx, err)
		}
		pa.links = append(pa.links, l)
	}
	return pa, nil
}

// progNames are the programs' names, encap then decap, as bpftool shows them.
var progNames = [2]string{"tp_encap", "tp_decap"}

// load creates the maps and loads the programs (through the verifier)
// without attaching them.
func load(c Config) (*Path, error) {
	enc, err := c.EncapProgram()
	if err != nil {
		return nil, err
	}
	dec, err := c.DecapProgram()
	if err != nil {
		return nil, err
	}
	maxPeers := uint32(c.MaxPeers)
	if maxPeers == 0 {
		maxPeers = 1 << 16
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("bpfpath: %w", err)
	}
	pa := &Path{underlay: c.Underlay, cpus: cpus, havePeers: map[lpmKey]peerVal{}, haveRemotes: map[[4]byte]uint32{}}
	for _, m := range []struct {
		dst  **ebpf.Map
		spec ebpf.MapSpec
	}{
		{&pa.counters, ebpf.MapSpec{Name: countersSym, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: uint32(NumReasons)}},
		{&pa.peers, ebpf.MapSpec{Name: peersSym, Type: ebpf.LPMTrie, KeySize: lpmKeySz, ValueSize: peerValueSz, MaxEntries: maxPeers, Flags: 1 /* BPF_F_NO_PREALLOC */}},
		{&pa.remotes, ebpf.MapSpec{Name: remotesSym, Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: peerStatsSz, MaxEntries: maxPeers}},
	} {
		if *m.dst, err = ebpf.NewMap(&m.spec); err != nil {
			pa.Close()
			return nil, fmt.Errorf("bpfpath: map %s: %w", m.spec.Name, err)
		}
	}
	for _, p := range []asm.Instructions{enc, dec} {
		for sym, m := range map[string]*ebpf.Map{countersSym: pa.counters, peersSym: pa.peers, remotesSym: pa.remotes} {
			if err := p.AssociateMap(sym, m); err != nil && !errors.Is(err, asm.ErrUnreferencedSymbol) {
				pa.Close()
				return nil, fmt.Errorf("bpfpath: %w", err)
			}
		}
	}
	for i, insns := range []asm.Instructions{enc, dec} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         progNames[i],
			Type:         ebpf.SchedCLS,
			Instructions: insns,
			License:      "Apache-2.0",
		})
		if err != nil {
			pa.Close()
			return nil, fmt.Errorf("bpfpath: load %s (%s): %w", progNames[i], c.Encap, err)
		}
		pa.progs = append(pa.progs, prog)
	}
	return pa, nil
}

// SetPeers makes the maps hold exactly these peers: new and changed
// prefixes are written first, then the ones gone are deleted, so a packet
// for a prefix that stays never misses. Each entry changes atomically;
// the set as a whole does not (a packet between two writes sees some old
// and some new entries, as with the kernel's own FDB and routes).
// Prefixes that are not IPv4, or whose remote is not, stay with the
// user-space path; SetPeers returns how many it left there.
func (pa *Path) SetPeers(peers []Peer) (skipped int, err error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.peers == nil {
		return 0, ErrClosed
	}
	want := make(map[lpmKey]peerVal, len(peers))
	remotes := make(map[[4]byte]uint32)
	for _, p := range peers {
		if !p.Prefix.Addr().Is4() || !p.Remote.Is4() {
			skipped++
			continue
		}
		pr := p.Prefix.Masked()
		r := p.Remote.As4()
		s := uint32(binary.BigEndian.Uint16(r[0:])) + uint32(binary.BigEndian.Uint16(r[2:]))
		s = s&0xffff + s>>16
		want[lpmKey{uint32(pr.Bits()), pr.Addr().As4()}] = peerVal{Remote: r, MAC: p.MAC, Sum: uint16(s)}
		remotes[r]++
	}
	// Remotes first, so a decap that a new prefix's peer needs is there
	// when its first packet is; removed last, for the same reason.
	// Every step runs whatever failed before it, so that one refused
	// write does not keep stale entries (a removed prefix still sent to
	// its old peer) until the next change.
	var errs []error
	for r, n := range remotes {
		if _, ok := pa.haveRemotes[r]; ok {
			pa.haveRemotes[r] = n
			continue
		}
		// A new peer starts its counters at zero; one already there
		// keeps them (the entry is never rewritten while it stays).
		zero := make([]PeerCounters, pa.cpus)
		if err := pa.remotes.Update(r[:], zero, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			errs = append(errs, fmt.Errorf("bpfpath: peer %v: %w", netip.AddrFrom4(r), err))
			continue
		}
		pa.haveRemotes[r] = n
	}
	for k, v := range want {
		if old, ok := pa.havePeers[k]; ok && old == v {
			continue
		}
		if err := pa.peers.Put(k.bytes(), v.bytes()); err != nil {
			errs = append(errs, fmt.Errorf("bpfpath: prefix %v/%d: %w", netip.AddrFrom4(k.Addr), k.Bits, err))
			continue
		}
		pa.havePeers[k] = v
	}
	for k := range pa.havePeers {
		if _, ok := want[k]; ok {
			continue
		}
		if err := pa.peers.Delete(k.bytes()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("bpfpath: prefix %v/%d: %w", netip.AddrFrom4(k.Addr), k.Bits, err))
			continue
		}
		delete(pa.havePeers, k)
	}
	for r := range pa.haveRemotes {
		if _, ok := remotes[r]; ok {
			continue
		}
		if err := pa.remotes.Delete(r[:]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("bpfpath: peer %v: %w", netip.AddrFrom4(r), err))
			continue
		}
		delete(pa.haveRemotes, r)
	}
	return skipped, errors.Join(errs...)
}

// ErrClosed is what a Path's methods return after Close.
var ErrClosed = errors.New("bpfpath: path closed")

// Underlay is the ifindex of the device the programs send and receive by.
func (pa *Path) Underlay() int { return pa.underlay }

// PeerCounters is what the programs carried for one peer, counted as
// tunneld's user-space path counts (dataplane's per-peer statistics).
type PeerCounters struct {
	TxPackets, TxBytes uint64 // encapsulated and sent; bytes without the outer IPv4 (and UDP) header
	RxPackets, RxBytes uint64 // decapsulated and handed to the device; bytes of the inner packets
}

// PeerCounters returns each peer's counters, summed over the CPUs, by its
// underlay address.
func (pa *Path) PeerCounters() (map[netip.Addr]PeerCounters, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.remotes == nil {
		return nil, ErrClosed
	}
	out := make(map[netip.Addr]PeerCounters, len(pa.haveRemotes))
	var per []PeerCounters
	for r := range pa.haveRemotes {
		if err := pa.remotes.Lookup(r[:], &per); err != nil {
			return out, fmt.Errorf("bpfpath: counters of %v: %w", netip.AddrFrom4(r), err)
		}
		var c PeerCounters
		for _, v := range per {
			c.TxPackets += v.TxPackets
			c.TxBytes += v.TxBytes
			c.RxPackets += v.RxPackets
			c.RxBytes += v.RxBytes
		}
		out[netip.AddrFrom4(r)] = c
	}
	return out, nil
}

// Counters returns the programs' counts by Reason, summed over the CPUs.
func (pa *Path) Counters() ([NumReasons]uint64, error) {
	var out [NumReasons]uint64
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.counters == nil {
		return out, ErrClosed
	}
	for r := Reason(0); r < NumReasons; r++ {
		var per []uint64
		if err := pa.counters.Lookup(uint32(r), &per); err != nil {
			return out, fmt.Errorf("bpfpath: counter %s: %w", r, err)
		}
		for _, v := range per {
			out[r] += v
		}
	}
	return out, nil
}

// Close detaches and unloads the programs.
func (pa *Path) Close() error {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	var errs []error
	for _, l := range pa.links {
		errs = append(errs, l.Close())
	}
	for _, p := range pa.progs {
		errs = append(errs, p.Close())
	}
	for _, m := range []*ebpf.Map{pa.counters, pa.peers, pa.remotes} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	pa.links, pa.progs, pa.counters, pa.peers, pa.remotes = nil, nil, nil, nil, nil
	return errors.Join(errs...)
}
