package encap

// DropReason says why a packet was refused. Parsers return OK on success.
// The data plane counts drops per reason, so every reason has a stable
// snake_case label (String) usable as a metric label value.
type DropReason uint8

const (
	OK               DropReason = iota // not a drop
	DropTruncated                      // shorter than a header or than a length field says, or offsets out of range
	DropBadVersion                     // outer IP version nibble wrong
	DropBadHeaderLen                   // IPv4 IHL < 5 or beyond the packet
	DropBadChecksum                    // IPv4 header, GRE or UDP checksum mismatch
	DropFragment                       // outer IPv4/IPv6 fragment (we do not reassemble)
	DropBadProtocol                    // outer protocol / next header / GRE protocol type / EtherType not the expected one
	DropBadFlags                       // GRE reserved bits, routing bit or version != 0; VXLAN I flag missing
	DropBadVNI                         // VXLAN VNI differs from the configured one
	DropBadKey                         // GRE key missing, unexpected, or different from the configured one
	DropBadInner                       // inner packet malformed (version does not match the tunnel, bad lengths)
	DropOversize                       // longer than the buffer/limit allows
	NumDropReasons                     // number of reasons, for sizing counter arrays
)

var dropReasonNames = [NumDropReasons]string{
	OK:               "ok",
	DropTruncated:    "truncated",
	DropBadVersion:   "bad_version",
	DropBadHeaderLen: "bad_header_len",
	DropBadChecksum:  "bad_checksum",
	DropFragment:     "fragment",
	DropBadProtocol:  "bad_protocol",
	DropBadFlags:     "bad_flags",
	DropBadVNI:       "bad_vni",
	DropBadKey:       "bad_key",
	DropBadInner:     "bad_inner",
	DropOversize:     "oversize",
}

// String returns the snake_case label of r, or "unknown" for values
// outside the defined set. It never allocates.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}
