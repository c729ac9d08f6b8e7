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
	NumReasons
)

var reasonNames = [NumReasons]string{"encap_sent", "encap_not_ipv4", "encap_short", "encap_no_peer", "encap_not_tcp_gso", "encap_too_long", "encap_refused", "encap_no_room",
	"decap_received", "decap_other", "decap_batch", "decap_short", "decap_fragment", "decap_unknown_peer", "decap_no_room"}

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
// all there, and jumps to then; a packet shorter than n ends the program
// for reason short. It clobbers R0-R5.
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
	return append(p, asm.JGT.Reg(asm.R4, asm.R3, "pass_"+short.String()), asm.Ja.Label(then))
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

// Stack slots of the encap program (offsets from R10). Helpers leave the
// stack alone, so what the program learns before it resizes the packet
// waits here.
const (
	stKey  = -8  // LPM key: prefix length 32, then the inner destination
	stPeer = -24 // the peer's value, copied out of the map
	stTOS  = -28 // the outer TOS (uint32)
	stDF   = -32 // the outer frag_off word in host order: 0 or 0x4000
)

// EncapProgram is the program for the overlay device's egress: it looks
// up the peer whose prefix holds each IPv4 packet's destination, puts the
// outer headers in front (a TSO super-packet stays whole, marked for the
// kernel's own tunnel segmentation) and redirects it to the underlay
// through the kernel's FIB and neighbour tables. What it does not take
// (not IPv4, no peer, too long, a failed resize) goes on to the device,
// where tunneld's user-space path handles it as before.
func (c Config) EncapProgram() (asm.Instructions, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	h := c.header()
	over := int32(len(h))
	flags := int64(fixedGSO | encapL3v4)
	switch c.Encap {
	case GRE:
		flags |= encapL4GRE
	case VXLAN:
		flags |= encapL4UDP | encapL2Eth | encapL2(ethLen)
	}
	const (
		ctx  = asm.R6
		hash = asm.R7
		n    = asm.R8
		ipID = asm.R9
	)
	p := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(asm.R2, ctx, skbProtocol, asm.Word),
		asm.JNE.Imm(asm.R2, etherTypeIPv4LE, "pass_"+EncapNotIPv4.String()),
		asm.LoadMem(asm.R2, ctx, skbLen, asm.Word),
		asm.JGT.Imm(asm.R2, 0xffff-over, "pass_"+EncapTooLong.String()),
	}
	p = append(p, linear(ctx, ipv4Len, EncapShort, "inner")...)
	p = append(p,
		asm.LoadMem(asm.R4, asm.R2, 0, asm.Byte).WithSymbol("inner"),
		asm.RSh.Imm(asm.R4, 4),
		asm.JNE.Imm(asm.R4, 4, "pass_"+EncapNotIPv4.String()),
		asm.LoadMem(asm.R4, ctx, skbGSOSize, asm.Word),
		asm.JEq.Imm(asm.R4, 0, "not_gso"),
		asm.LoadMem(asm.R4, asm.R2, 9, asm.Byte),
		asm.JNE.Imm(asm.R4, 6, "pass_"+EncapNotTCPGSO.String()),
		asm.LoadMem(asm.R4, asm.R2, 16, asm.Word).WithSymbol("not_gso"),
		asm.StoreMem(asm.R10, stKey+4, asm.R4, asm.Word),
		asm.StoreImm(asm.R10, stKey, 32, asm.Word),
	)
	if c.TOS == Inherit {
		p = append(p,
			asm.LoadMem(asm.R4, asm.R2, 1, asm.Byte),
			asm.Mov.Reg(asm.R5, asm.R4),
			asm.And.Imm(asm.R5, 3),
			asm.JNE.Imm(asm.R5, 3, "tos_done"),
			asm.Xor.Imm(asm.R4, 1), // CE (11) leaves as ECT(0) (10)
			asm.StoreMem(asm.R10, stTOS, asm.R4, asm.Word).WithSymbol("tos_done"),
		)
	}
	if c.DF == Inherit {
		p = append(p,
			asm.LoadMem(asm.R4, asm.R2, 6, asm.Byte),
			asm.And.Imm(asm.R4, 0x40),
			asm.LSh.Imm(asm.R4, 8),
			asm.StoreMem(asm.R10, stDF, asm.R4, asm.Word),
		)
	}
	p = append(p,
		asm.LoadMapPtr(asm.R1, 0).WithReference(peersSym),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass_"+EncapNoPeer.String()),
	)
	for off := int16(0); off < peerValueSz; off += 4 {
		p = append(p,
			asm.LoadMem(asm.R1, asm.R0, off, asm.Word),
			asm.StoreMem(asm.R10, stPeer+off, asm.R1, asm.Word),
		)
	}
	if c.Encap == VXLAN {
		p = append(p,
			asm.Mov.Reg(asm.R1, ctx),
			asm.FnGetHashRecalc.Call(),
			asm.Mov.Reg(hash, asm.R0),
		)
	}
	p = append(p,
		// The room for the outer headers first, at the front (a TUN's
		// packets have no link-layer header, so the MAC offset is 0):
		// when the kernel refuses it (a packet already marked
		// encapsulated, say one the decap program let through whole),
		// the packet is as it was and goes on to tunneld.
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, over),
		asm.Mov.Imm(asm.R3, admRoomMAC),
		asm.LoadImm(asm.R4, flags, asm.DWord),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass_"+EncapRefused.String()),
		// Then a link-layer header: bpf_redirect_neigh strips one
		// before it fills in the underlay's (the zeroes never leave).
		// Failing here (out of memory) leaves a half-built packet, which
		// is dropped and counted.
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, ethLen),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnSkbChangeHead.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop_no_room"),
		// An IP id per packet, so that fragments of different packets
		// (DF clear) never share one (RFC 6864); the kernel numbers a
		// super-packet's segments on from it.
		asm.FnGetPrandomU32.Call(),
		asm.And.Imm(asm.R0, 0xffff),
		asm.Mov.Reg(ipID, asm.R0),
		asm.LoadMem(n, ctx, skbLen, asm.Word),
		asm.LoadMem(asm.R2, ctx, skbData, asm.Word),
		asm.LoadMem(asm.R3, ctx, skbDataEnd, asm.Word),
		asm.Add.Imm(asm.R2, ethLen),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, over),
		// The room is in the linear head, so this never fails; the
		// verifier needs it said.
		asm.JGT.Reg(asm.R4, asm.R3, "drop"),
		asm.Add.Imm(n, -ethLen),
	)
	// The constant template, then the per-packet fields over it.
	for off := 0; off+4 <= len(h); off += 4 {
		p = append(p, asm.StoreImm(asm.R2, int16(off), int64(le32(h[off:])), asm.Word))
	}
	if len(h)%4 != 0 { // VXLAN's 50 bytes end in a half word
		off := len(h) - 2
		p = append(p, asm.StoreImm(asm.R2, int16(off), int64(le16(h[off:])), asm.Half))
	}
	p = append(p,
		// tot_len
		asm.Mov.Reg(asm.R4, n),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.StoreMem(asm.R2, 2, asm.R4, asm.Half),
		// destination
		asm.LoadMem(asm.R4, asm.R10, stPeer+peerRemote, asm.Word),
		asm.StoreMem(asm.R2, 16, asm.R4, asm.Word),
		// checksum: the template's sum, the length, the peer's sum, then
		// TOS and DF when inherited; fold twice, complement
		asm.Mov.Reg(asm.R5, n),
		asm.Add.Imm(asm.R5, int32(ipSum(h))),
		asm.LoadMem(asm.R4, asm.R10, stPeer+peerSum, asm.Half),
		asm.Add.Reg(asm.R5, asm.R4),
		asm.Add.Reg(asm.R5, ipID),
		asm.Mov.Reg(asm.R4, ipID),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.StoreMem(asm.R2, 4, asm.R4, asm.Half),
	)
	if c.TOS == Inherit {
		p = append(p,
			asm.LoadMem(asm.R4, asm.R10, stTOS, asm.Word),
			asm.StoreMem(asm.R2, 1, asm.R4, asm.Byte),
			asm.Add.Reg(asm.R5, asm.R4),
		)
	}
	if c.DF == Inherit {
		p = append(p,
			asm.LoadMem(asm.R4, asm.R10, stDF, asm.Word),
			asm.Add.Reg(asm.R5, asm.R4),
			asm.HostTo(asm.BE, asm.R4, asm.Half),
			asm.StoreMem(asm.R2, 6, asm.R4, asm.Half),
		)
	}
	p = append(p,
		asm.Mov.Reg(asm.R4, asm.R5),
		asm.RSh.Imm(asm.R4, 16),
		asm.And.Imm(asm.R5, 0xffff),
		asm.Add.Reg(asm.R5, asm.R4),
		asm.Mov.Reg(asm.R4, asm.R5),
		asm.RSh.Imm(asm.R4, 16),
		asm.Add.Reg(asm.R5, asm.R4),
		asm.Xor.Imm(asm.R5, 0xffff),
		asm.And.Imm(asm.R5, 0xffff),
		asm.HostTo(asm.BE, asm.R5, asm.Half),
		asm.StoreMem(asm.R2, 10, asm.R5, asm.Half),
	)
	if c.Encap == VXLAN {
		p = append(p,
			// source port from the inner flow's hash
			asm.RSh.Imm(hash, 16),
			asm.Or.Imm(hash, udpSrcBase),
			asm.HostTo(asm.BE, hash, asm.Half),
			asm.StoreMem(asm.R2, 20, hash, asm.Half),
			// UDP length
			asm.Mov.Reg(asm.R4, n),
			asm.Add.Imm(asm.R4, -ipv4Len),
			asm.HostTo(asm.BE, asm.R4, asm.Half),
			asm.StoreMem(asm.R2, 24, asm.R4, asm.Half),
			// inner destination MAC
			asm.LoadMem(asm.R4, asm.R10, stPeer+peerMAC, asm.Word),
			asm.StoreMem(asm.R2, 36, asm.R4, asm.Word),
			asm.LoadMem(asm.R4, asm.R10, stPeer+peerMAC+4, asm.Half),
			asm.StoreMem(asm.R2, 40, asm.R4, asm.Half),
		)
	}
	p = append(p, count(EncapSent)...)
	hdrs := int32(ipv4Len) // what tunneld's tx bytes leave out
	if c.Encap == VXLAN {
		hdrs += udpLen
	}
	p = append(p,
		// the peer's counters (this CPU's copy)
		asm.LoadMapPtr(asm.R1, 0).WithReference(remotesSym),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stPeer+peerRemote),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "tx_counted"),
		asm.LoadMem(asm.R1, asm.R0, statTxPackets, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, statTxPackets, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, statTxBytes, asm.DWord),
		asm.Add.Reg(asm.R1, n),
		asm.Add.Imm(asm.R1, -hdrs),
		asm.StoreMem(asm.R0, statTxBytes, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R1, int32(c.Underlay)).WithSymbol("tx_counted"),
		asm.Mov.Imm(asm.R2, 0), // no nexthop given: the kernel's FIB lookup of the outer destination
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
	)
	noRoom := count(EncapNoRoom)
	noRoom[0] = noRoom[0].WithSymbol("drop_no_room")
	p = append(p, noRoom...)
	p = append(p,
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
	)
	for _, r := range []Reason{EncapNotIPv4, EncapShort, EncapNoPeer, EncapNotTCPGSO, EncapTooLong, EncapRefused} {
		p = append(p, passWith(r)...)
	}
	return p, nil
}

// DecapProgram is the program for the underlay device's ingress: it takes
// each unfragmented packet of the tunnel's format addressed to Local from
// a peer in the peer maps, removes the outer headers and hands the inner
// IPv4 packet to the overlay device's ingress, as if the device had
// received it (a super-packet the veth or GRO kept whole stays whole).
// Everything else goes on to the stack, and so to tunneld's sockets,
// which count and drop what is malformed or spoofed.
func (c Config) DecapProgram() (asm.Instructions, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	h := c.header()
	over := int32(len(h))
	need := int32(ethLen) + over + 4 // and the inner IPv4 header's first word
	const (
		ctx   = asm.R6
		stats = asm.R7 // the peer's counters, found with the peer check
	)
	l := c.Local.As4()
	p := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(asm.R2, ctx, skbProtocol, asm.Word),
		asm.JNE.Imm(asm.R2, etherTypeIPv4LE, "pass_"+DecapOther.String()),
	}
	p = append(p, linear(ctx, need, DecapShort, "linear")...)
	p = append(p,
		asm.LoadMem(asm.R4, asm.R2, ethLen+0, asm.Byte).WithSymbol("linear"),
		asm.JNE.Imm(asm.R4, 0x45, "pass_"+DecapFragment.String()), // IPv4 without options
		asm.LoadMem(asm.R4, asm.R2, ethLen+9, asm.Byte),
		asm.JNE.Imm(asm.R4, int32(h[9]), "pass_"+DecapOther.String()),
		asm.LoadMem(asm.R4, asm.R2, ethLen+6, asm.Half),
		asm.And.Imm(asm.R4, 0xff3f), // MF and the fragment offset, as a little-endian load sees them
		asm.JNE.Imm(asm.R4, 0, "pass_"+DecapFragment.String()),
		asm.LoadMem(asm.R4, asm.R2, ethLen+16, asm.Word),
		asm.JNE.Imm32(asm.R4, le32(l[:]), "pass_"+DecapOther.String()),
	)
	switch c.Encap {
	case GRE:
		p = append(p,
			// no flags, version 0, IPv4 inside
			asm.LoadMem(asm.R4, asm.R2, ethLen+20, asm.Word),
			asm.JNE.Imm32(asm.R4, le32(h[20:]), "pass_"+DecapOther.String()),
		)
	case VXLAN:
		p = append(p,
			asm.LoadMem(asm.R4, asm.R2, ethLen+22, asm.Half),
			asm.JNE.Imm(asm.R4, le16(h[22:]), "pass_"+DecapOther.String()),
			asm.LoadMem(asm.R4, asm.R2, ethLen+28, asm.Word),
			asm.JNE.Imm32(asm.R4, le32(h[28:]), "pass_"+DecapOther.String()),
			asm.LoadMem(asm.R4, asm.R2, ethLen+32, asm.Word),
			asm.JNE.Imm32(asm.R4, le32(h[32:]), "pass_"+DecapOther.String()),
			asm.LoadMem(asm.R4, asm.R2, ethLen+48, asm.Half),
			asm.JNE.Imm(asm.R4, le16(h[48:]), "pass_"+DecapOther.String()), // IPv4 inside; ARP and the rest go to user space
			// addressed to this VTEP (else the user-space path drops it
			// as not for us, as the kernel's vxlan device does)
			asm.LoadMem(asm.R4, asm.R2, ethLen+36, asm.Word),
			asm.JNE.Imm32(asm.R4, le32(c.LocalMAC[0:4]), "pass_"+DecapOther.String()),
			asm.LoadMem(asm.R4, asm.R2, ethLen+40, asm.Half),
			asm.JNE.Imm(asm.R4, le16(c.LocalMAC[4:6]), "pass_"+DecapOther.String()),
		)
	}
	p = append(p,
		// A super-packet must be one outer packet around one inner (a
		// TSO or GRO'd TCP stream); a UDP GSO or GRO batch is datagrams
		// each with its own outer headers, for the sockets to take apart.
		asm.LoadMem(asm.R4, ctx, skbGSOSize, asm.Word),
		asm.JEq.Imm(asm.R4, 0, "one_packet"),
		asm.LoadMem(asm.R4, asm.R2, int16(ethLen+over+2), asm.Half),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.LoadMem(asm.R5, ctx, skbLen, asm.Word),
		asm.Add.Imm(asm.R5, -(ethLen+over)),
		asm.JNE.Reg(asm.R4, asm.R5, "pass_"+DecapBatch.String()),
		// The source last: a peer in the map, or the user-space path
		// counts it as spoofed.
		asm.LoadMem(asm.R4, asm.R2, ethLen+12, asm.Word).WithSymbol("one_packet"),
		asm.StoreMem(asm.R10, -8, asm.R4, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(remotesSym),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass_"+DecapUnknownPeer.String()),
		asm.Mov.Reg(stats, asm.R0),

		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, -over),
		asm.Mov.Imm(asm.R3, admRoomMAC),
		asm.LoadImm(asm.R4, fixedGSO, asm.DWord),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass_"+DecapNoRoom.String()),
	)
	p = append(p, count(DecapReceived)...)
	p = append(p,
		asm.LoadMem(asm.R1, stats, statRxPackets, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(stats, statRxPackets, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, stats, statRxBytes, asm.DWord),
		asm.LoadMem(asm.R2, ctx, skbLen, asm.Word),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.Add.Imm(asm.R1, -ethLen),
		asm.StoreMem(stats, statRxBytes, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R1, int32(c.Device)),
		asm.Mov.Imm(asm.R2, bpfFIngress),
		asm.FnRedirect.Call(),
		asm.Return(),
	)
	for _, r := range []Reason{DecapOther, DecapBatch, DecapShort, DecapFragment, DecapUnknownPeer, DecapNoRoom} {
		p = append(p, passWith(r)...)
	}
	return p, nil
}
