package bpfpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/asm"
)

// Encap is the tunnel format the programs write and accept.
type Encap uint8

const (
	IPIP  Encap = iota + 1 // IPv4 in IPv4, protocol 4
	GRE                    // GRE (RFC 2784, no key, checksum or sequence), protocol 47
	VXLAN                  // VXLAN (RFC 7348) over UDP, with an inner Ethernet header
)

func (e Encap) String() string {
	switch e {
	case IPIP:
		return "ipip"
	case GRE:
		return "gre"
	case VXLAN:
		return "vxlan"
	}
	return fmt.Sprintf("encap(%d)", uint8(e))
}

// Overhead is the bytes the encapsulation adds in front of an inner IPv4
// packet (the outer Ethernet header not counted).
func (e Encap) Overhead() int {
	switch e {
	case IPIP:
		return ipv4Len
	case GRE:
		return ipv4Len + greLen
	case VXLAN:
		return ipv4Len + udpLen + vxlanLen + ethLen
	}
	return 0
}

// Config is the tunnel as the two programs see it: the overlay device
// they serve, the underlay device, the local underlay address and the
// outer header fields tunneld's user-space path writes too. The peers are
// not here: they live in maps (Path.SetPeers), so a lease or route change
// needs no reload.
type Config struct {
	Encap Encap
	Local netip.Addr // IPv4 underlay address
	// VXLAN only: the VNI, the UDP destination port (0: 4789) and this
	// node's VTEP MAC, the inner Ethernet source.
	VNI      uint32
	Port     uint16
	LocalMAC [6]byte
	// TTL of the outer header (0: 64); TOS a value 0..255 or Inherit (the
	// inner packet's, with CE sent as ECT(0)); DF 0, 1 or Inherit.
	TTL     uint8
	TOS, DF int
	// Device is the ifindex of the overlay device (a TUN: IP packets, no
	// link-layer header); Underlay the ifindex of the device the outer
	// packets leave and arrive by (the kernel's FIB and neighbour tables
	// pick the next hop on it). Both in the same namespace.
	Device, Underlay int
	// MaxPeers bounds the peer maps (0: 65536 prefixes).
	MaxPeers int
}

// Inherit as Config.TOS or Config.DF copies the field from the inner packet.
const Inherit = -1

// Peer is one overlay prefix and the node it lives behind.
type Peer struct {
	Prefix netip.Prefix // IPv4 overlay prefix
	Remote netip.Addr   // the peer's IPv4 underlay address
	MAC    [6]byte      // VXLAN: the peer's VTEP MAC, the inner Ethernet destination
}

const (
	ethLen   = 14
	ipv4Len  = 20
	greLen   = 4
	udpLen   = 8
	vxlanLen = 8

	// struct __sk_buff field offsets (include/uapi/linux/bpf.h).
	skbLen      = 0
	skbProtocol = 16
	skbData     = 76
	skbDataEnd  = 80
	skbGSOSize  = 176

	admRoomMAC = 1 // BPF_ADJ_ROOM_MAC: room after the link-layer header

	// bpf_skb_adjust_room flags.
	fixedGSO   = 1 << 0 // keep gso_size: the inner stack already sized segments for the device MTU
	encapL3v4  = 1 << 1
	encapL4GRE = 1 << 3
	encapL4UDP = 1 << 4
	encapL2Eth = 1 << 6

	bpfFIngress = 1 // BPF_F_INGRESS for bpf_redirect

	// tcx verdicts.
	tcxNext = -1 // on to the next program, then the stack: the user-space path
	tcxDrop = 2

	etherTypeIPv4LE = 0x0008 // htons(ETH_P_IP) as a little-endian load of the field reads it
	vxlanDefault    = 4789
	defaultTTL      = 64
	udpSrcBase      = 0xc000 // RFC 7348: source ports from the dynamic range, by flow hash
)

func encapL2(n int) int64 { return int64(n) << 56 }

// Reason is what became of a packet a program saw; the programs count
// each in a per-CPU array map indexed by it.
type Reason uint32

const (
	EncapSent        Reason = iota // encapsulated and redirected to the underlay
	EncapNotIPv4                   // left to the device: not IPv4
	EncapShort                     // left to the device: shorter than an IPv4 header
	EncapNoPeer                    // left to the device: no peer's prefix holds the destination
	EncapNotTCPGSO                 // left to the device: a super-packet that is not TCP's (UDP GSO; the kernel resizes only TCP's with these flags)
	EncapTooLong                   // left to the device: would exceed 64 KB with the outer headers
	EncapRefused                   // left to the device: the kernel would not add the outer headers (a packet already encapsulated, or too long for the device)
	EncapNoRoom                    // dropped: no memory for the link-layer header after the outer ones were added
	DecapReceived                  // decapsulated and handed to the overlay device
	DecapOther                     // left to the stack: not this tunnel's (other protocol, port, VNI, inner type)
	DecapBatch                     // left to the stack: a batch of datagrams (UDP GSO or GRO), each with its own outer headers
	DecapShort                     // left to the stack: shorter than the headers
	DecapFragment                  // left to the stack: an outer fragment, or IPv4 options
	DecapUnknownPeer               // left to the stack: from an address that is not the peer
	DecapNoRoom                    // left to the stack: the kernel refused the resize
	DecapCE                        // left to the stack: the outer header is marked ECN CE, which the user-space path passes on to the inner packet (RFC 6040)
	NumReasons
)

var reasonNames = [NumReasons]string{"encap_sent", "encap_not_ipv4", "encap_short", "encap_no_peer", "encap_not_tcp_gso", "encap_too_long", "encap_refused", "encap_no_room",
	"decap_received", "decap_other", "decap_batch", "decap_short", "decap_fragment", "decap_unknown_peer", "decap_no_room", "decap_ce"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// The maps as the instructions name them; Attach associates the maps it
// creates with these symbols.
const (
	countersSym = "tp_counters" // per-CPU array: a uint64 per Reason
	peersSym    = "tp_peers"    // LPM trie: overlay prefix -> peerValue
	remotesSym  = "tp_remotes"  // per-CPU hash: peer underlay IPv4 -> the peer's counters (peerStats); a peer is one that has an entry
)

// peerValue is a tp_peers entry as the encap program reads it.
const (
	peerRemote  = 0  // [4]byte, the outer destination
	peerMAC     = 4  // [6]byte, VXLAN's inner destination
	peerSum     = 10 // uint16 in host order: the ones'-complement sum of the two 16-bit words of the remote address
	peerValueSz = 12
	lpmKeySz    = 8 // uint32 prefix length, then the IPv4 address

	// The counters of a tp_remotes entry, uint64 each.
	statTxPackets = 0
	statTxBytes   = 8 // as tunneld counts them: without the outer IPv4 (and UDP) header
	statRxPackets = 16
	statRxBytes   = 24 // the inner packets
	peerStatsSz   = 32
)

// count adds one to the reason's counter. It clobbers R0-R5.
func count(r Reason) asm.Instructions {
	skip := fmt.Sprintf("count_%d_done", r)
	return asm.Instructions{
		asm.StoreImm(asm.R10, -4, int64(r), asm.Word),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, 0).WithReference(countersSym),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(skip),
	}
}

// linear leaves the packet's data in R2 and its end in R3 with at least n
// bytes between them, pulling them into the linear head when they are not
// all there; then names the instruction that follows (where the linear
// case jumps straight on). A packet shorter than n ends the program for
// reason short. It clobbers R0-R5.
func linear(ctx asm.Register, n int32, short Reason, then string) asm.Instructions {
	load := asm.Instructions{
		asm.LoadMem(asm.R2, ctx, skbData, asm.Word),
		asm.LoadMem(asm.R3, ctx, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, n),
	}
	p := append(asm.Instructions{}, load...)
	p = append(p,
		asm.JLE.Reg(asm.R4, asm.R3, then),
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, n),
		asm.FnSkbPullData.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass_"+short.String()),
	)
	p = append(p, load...)
	return append(p, asm.JGT.Reg(asm.R4, asm.R3, "pass_"+short.String()))
}

// passWith ends the program for reason r, leaving the packet to the next
// hook (the device or the stack).
func passWith(r Reason) asm.Instructions {
	p := count(r)
	p[0] = p[0].WithSymbol("pass_" + r.String())
	return append(p, asm.Mov.Imm(asm.R0, tcxNext), asm.Return())
}

func (c Config) check() error {
	if !c.Local.Is4() {
		return errors.New("bpfpath: Local must be an IPv4 address")
	}
	if c.Encap < IPIP || c.Encap > VXLAN {
		return fmt.Errorf("bpfpath: unknown encapsulation %d", c.Encap)
	}
	if c.VNI >= 1<<24 {
		return fmt.Errorf("bpfpath: VNI %d out of range", c.VNI)
	}
	if c.TOS < Inherit || c.TOS > 255 {
		return fmt.Errorf("bpfpath: TOS %d: want 0..255 or Inherit", c.TOS)
	}
	if c.DF < Inherit || c.DF > 1 {
		return fmt.Errorf("bpfpath: DF %d: want 0, 1 or Inherit", c.DF)
	}
	if c.Device <= 0 || c.Underlay <= 0 {
		return errors.New("bpfpath: Device and Underlay ifindexes are required")
	}
	return nil
}

func (c Config) port() uint16 {
	if c.Port == 0 {
		return vxlanDefault
	}
	return c.Port
}

func (c Config) ttl() uint8 {
	if c.TTL == 0 {
		return defaultTTL
	}
	return c.TTL
}

// header is the outer headers' constant part. The encap program fills in
// per packet: tot_len, the TOS and DF when inherited, the checksum, the
// destination (and for VXLAN the UDP source port and length and the inner
// destination MAC).
func (c Config) header() []byte {
	h := make([]byte, c.Encap.Overhead())
	h[0] = 0x45
	if c.TOS != Inherit {
		h[1] = uint8(c.TOS)
	}
	if c.DF == 1 {
		binary.BigEndian.PutUint16(h[6:], 0x4000)
	}
	h[8] = c.ttl()
	l := c.Local.As4()
	copy(h[12:16], l[:])
	switch c.Encap {
	case IPIP:
		h[9] = 4
	case GRE:
		h[9] = 47
		binary.BigEndian.PutUint16(h[22:], 0x0800)
	case VXLAN:
		h[9] = 17
		binary.BigEndian.PutUint16(h[22:], c.port())
		// The UDP checksum stays zero (RFC 7348 section 5: SHOULD be
		// transmitted as zero over IPv4); segments the kernel cuts from a
		// super-packet then need no checksum pass either.
		h[28] = 0x08 // I flag
		binary.BigEndian.PutUint32(h[32:], c.VNI<<8)
		copy(h[42:48], c.LocalMAC[:])
		binary.BigEndian.PutUint16(h[48:], 0x0800)
	}
	return h
}

// ipSum is the ones'-complement sum of the outer IPv4 header's 16-bit
// words as header() leaves them (the per-packet fields zero).
func ipSum(h []byte) uint32 {
	var s uint32
	for i := 0; i < ipv4Len; i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	return s
}

// le16/le32 give the immediate that a little-endian store or load of these
// bytes uses (eBPF runs in the host's byte order; tunneld is built for
// little-endian Linux only, see doc.go).
func le16(b []byte) int32 { return int32(binary.LittleEndian.Uint16(b)) }
func le32(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }
