package encap

// Fixed header lengths in bytes. Offsets move by exactly these amounts when a
// header is pushed or stripped.
const (
	EthernetLen = 14
	IPv4Len     = 20 // without options; we never send options
	IPv6Len     = 40
	UDPLen      = 8
	VXLANLen    = 8
	GREBaseLen  = 4
	GREMaxLen   = 16 // base + checksum/reserved1 + key + sequence number

	// MaxOverhead is the largest outer stack any tunnel here prepends:
	// IPv6 + UDP + VXLAN + inner Ethernet. Buffers keep at least this much
	// headroom in front of the packet.
	MaxOverhead = IPv6Len + UDPLen + VXLANLen + EthernetLen
)

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtoICMP   = 1
	ProtoIPIP   = 4 // IPv4 encapsulated in IP (RFC 2003)
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoIPv6   = 41 // IPv6 encapsulated in IP: 6in4/SIT (RFC 4213)
	ProtoGRE    = 47
	ProtoICMPv6 = 58

	// protoIPv6Fragment is the IPv6 Fragment extension header (RFC 8200 4.5).
	protoIPv6Fragment = 44
)

// EtherTypes, also used as GRE protocol types (RFC 2784 section 2.4).
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86DD
	EtherTypeTEB  = 0x6558 // transparent Ethernet bridging: an Ethernet frame follows
	EtherTypeVLAN = 0x8100 // 802.1Q tag; reported, not parsed
)

// UDP ports.
const (
	PortVXLAN = 4789 // IANA; flannel's vxlan backend uses 8472 instead
	PortIPUDP = 8285 // flannel's udp backend
)

// hasBytes reports whether off and end describe a valid window of b holding
// at least n bytes. Every parser calls it first so that no index that
// follows can be out of range, whatever the caller passed.
func hasBytes(b []byte, off, end, n int) bool {
	return off >= 0 && off <= end && end <= len(b) && end-off >= n
}

// CheckEncap is the check Push functions leave to their caller: it reports
// whether the payload b[off:end] can take overhead bytes of outer headers.
// It returns DropTruncated when off and end are not a valid window of b,
// and DropOversize when fewer than overhead bytes of headroom precede off
// or the encapsulated packet, end-off+overhead bytes, would exceed limit
// (the underlay MTU; the data plane answers with ICMP "fragmentation
// needed" / "packet too big" when the inner packet forbids fragmenting).
func CheckEncap(b []byte, off, end, overhead, limit int) DropReason {
	if !hasBytes(b, off, end, 0) {
		return DropTruncated
	}
	if off < overhead || end-off > limit-overhead {
		return DropOversize
	}
	return OK
}
