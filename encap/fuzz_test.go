package encap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// Every fuzz target takes the packet bytes plus an arbitrary window
// [off, end), which may be negative or out of range. Each input is run
// twice: over the given window and over the whole of data, so that the
// fuzzer's mutations of data are exercised even when its offsets are
// nonsense. Targets assert: no panic; offsets inside the window and
// ordered when r == OK; and, where a header maps back one to one,
// re-encapsulating the parsed header reproduces its bytes.

// windows returns the two windows each input is run over.
func windows(data []byte, off, end int) [2][2]int {
	return [2][2]int{{off, end}, {0, len(data)}}
}

func checkWithin(t *testing.T, what string, off, end, a, b int) {
	t.Helper()
	if !(off <= a && a <= b && b <= end) {
		t.Fatalf("%s: [%d, %d) not within [%d, %d)", what, a, b, off, end)
	}
}

func FuzzParseIPv4(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			var h IPv4Header
			payOff, payEnd, r := ParseIPv4(data, w[0], w[1], &h)
			if r != OK {
				continue
			}
			checkWithin(t, "payload", w[0], w[1], payOff, payEnd)
			hdr := data[w[0]:payOff]
			if len(hdr) < IPv4Len || !h.Src.Is4() || !h.Dst.Is4() {
				t.Fatalf("header %d bytes, addrs %v %v", len(hdr), h.Src, h.Dst)
			}
			// Round trip: a plain header (no options, reserved flag clear)
			// re-pushed from h is the same header. The checksum is compared
			// by validity: 0x0000 and 0xFFFF can both be correct.
			if len(hdr) == IPv4Len && hdr[6]&0x80 == 0 {
				b := make([]byte, IPv4Len+payEnd-payOff)
				copy(b[IPv4Len:], data[payOff:payEnd])
				PushIPv4(b, IPv4Len, len(b), &h)
				if !bytes.Equal(b[:10], hdr[:10]) || !bytes.Equal(b[12:20], hdr[12:20]) {
					t.Fatalf("round trip: %x, parsed from %x", b[:20], hdr)
				}
				if _, _, r := ParseIPv4(b, 0, len(b), &h); r != OK {
					t.Fatalf("re-pushed header does not parse: %v", r)
				}
			}
		}
	})
}

func FuzzParseIPv6(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			var h IPv6Header
			payOff, payEnd, r := ParseIPv6(data, w[0], w[1], &h)
			if r != OK {
				continue
			}
			checkWithin(t, "payload", w[0], w[1], payOff, payEnd)
			if payOff != w[0]+IPv6Len {
				t.Fatalf("payOff %d, window starts %d", payOff, w[0])
			}
			b := make([]byte, IPv6Len+payEnd-payOff)
			PushIPv6(b, IPv6Len, len(b), &h)
			if !bytes.Equal(b[:IPv6Len], data[w[0]:payOff]) {
				t.Fatalf("round trip: %x, parsed from %x", b[:IPv6Len], data[w[0]:payOff])
			}
		}
	})
}

func FuzzParseUDP(f *testing.F) {
	addrs := [][2]netip.Addr{{outer4Src, outer4Dst}, {outer6Src, outer6Dst}}
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			for _, a := range addrs {
				for _, verify := range []bool{false, true} {
					sp, dp, payOff, payEnd, r := ParseUDP(data, w[0], w[1], a[0], a[1], verify)
					if r != OK {
						continue
					}
					checkWithin(t, "payload", w[0], w[1], payOff, payEnd)
					b := make([]byte, UDPLen+payEnd-payOff)
					copy(b[UDPLen:], data[payOff:payEnd])
					PushUDP(b, UDPLen, len(b), sp, dp)
					if !bytes.Equal(b[:6], data[w[0]:w[0]+6]) {
						t.Fatalf("round trip: %x, parsed from %x", b[:6], data[w[0]:w[0]+6])
					}
					// A checksum we compute must verify.
					SetUDPChecksum(b, 0, len(b), a[0], a[1])
					if _, _, _, _, r := ParseUDP(b, 0, len(b), a[0], a[1], true); r != OK {
						t.Fatalf("our checksum does not verify: %v", r)
					}
				}
			}
		}
	})
}

func FuzzParseEthernet(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			dst, src, et, payOff, r := ParseEthernet(data, w[0], w[1])
			if r != OK {
				continue
			}
			checkWithin(t, "payload", w[0], w[1], payOff, w[1])
			b := make([]byte, EthernetLen)
			PushEthernet(b, EthernetLen, dst, src, et)
			if !bytes.Equal(b, data[w[0]:payOff]) {
				t.Fatalf("round trip: %x, parsed from %x", b, data[w[0]:payOff])
			}
		}
	})
}

// fuzzIPTunnel is the body of FuzzDecapIPIP and FuzzDecapSIT.
func fuzzIPTunnel(t *testing.T, data []byte, off, end int, decap func([]byte, int, int, *IPv4Header) (int, int, DropReason), proto uint8, version byte) {
	for _, w := range windows(data, off, end) {
		var h IPv4Header
		innerOff, innerEnd, r := decap(data, w[0], w[1], &h)
		if r != OK {
			continue
		}
		checkWithin(t, "inner", w[0], w[1], innerOff, innerEnd)
		if h.Protocol != proto || data[innerOff]>>4 != version || innerOff-w[0] < IPv4Len {
			t.Fatalf("accepted protocol %d, inner version %d, outer header %d bytes", h.Protocol, data[innerOff]>>4, innerOff-w[0])
		}
		// The outer ParseIPv4 and the inner CheckInner agree with decap.
		if _, payEnd, r := ParseIPv4(data, w[0], w[1], &h); r != OK || innerEnd > payEnd {
			t.Fatalf("outer reparse: %v, inner end %d beyond outer end %d", r, innerEnd, payEnd)
		}
		if e, r := CheckInner(data, innerOff, innerEnd, int(version)); r != OK || e != innerEnd {
			t.Fatalf("inner recheck over its own length: %d, %v", e, r)
		}
	}
}

func FuzzDecapIPIP(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		fuzzIPTunnel(t, data, off, end, DecapIPIP, ProtoIPIP, 4)
	})
}

func FuzzDecapSIT(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		fuzzIPTunnel(t, data, off, end, DecapSIT, ProtoIPv6, 6)
	})
}

func FuzzDecapGRE(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			// Run once expecting no key and once expecting the key the
			// packet carries, so that keyed packets reach the inner checks.
			wants := []GREExpect{{}}
			if hasBytes(data, w[0], w[1], 8) && data[w[0]]&greFlagK != 0 {
				i := w[0] + 4
				if data[w[0]]&greFlagC != 0 {
					i += 4
				}
				if i+4 <= w[1] {
					wants = append(wants, GREExpect{HasKey: true, Key: binary.BigEndian.Uint32(data[i:])})
				}
			}
			for _, want := range wants {
				var h GREHeader
				innerOff, innerEnd, r := DecapGRE(data, w[0], w[1], want, &h)
				if r != OK {
					continue
				}
				checkWithin(t, "inner", w[0], w[1], innerOff, innerEnd)
				if innerOff-w[0] != h.Len() || h.HasKey != want.HasKey || h.Key != want.Key {
					t.Fatalf("header %d bytes for %+v, want %+v", innerOff-w[0], h, want)
				}
				// Round trip: re-push h over the same payload. Bits RFC 2784
				// tells receivers to ignore (6-12, Reserved1) are not
				// reproduced, and the checksum is compared by validity.
				hdr := data[w[0]:innerOff]
				b := make([]byte, w[1]-w[0])
				copy(b[h.Len():], data[innerOff:w[1]])
				PushGRE(b, h.Len(), len(b), &h)
				got, orig := append([]byte(nil), b[:h.Len()]...), append([]byte(nil), hdr...)
				orig[0] &^= 0x03
				orig[1] = 0
				if h.HasChecksum {
					got[4], got[5], got[6], got[7] = 0, 0, 0, 0
					orig[4], orig[5], orig[6], orig[7] = 0, 0, 0, 0
				}
				if !bytes.Equal(got, orig) {
					t.Fatalf("round trip: %x, parsed from %x", b[:h.Len()], hdr)
				}
				if _, _, r := DecapGRE(b, 0, len(b), want, &h); r != OK {
					t.Fatalf("re-pushed GRE does not decap: %v", r)
				}
			}
		}
	})
}

func FuzzDecapVXLAN(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			vni, ok := VXLANVNI(data, w[0], w[1])
			for _, want := range []uint32{vni, 1, 4096} {
				innerOff, r := DecapVXLAN(data, w[0], w[1], want)
				if r != OK {
					continue
				}
				if !ok || want != vni {
					t.Fatalf("accepted VNI %d, header says %d (%v)", want, vni, ok)
				}
				checkWithin(t, "inner", w[0], w[1], innerOff, w[1])
				if w[1]-innerOff < EthernetLen {
					t.Fatalf("inner frame of %d bytes accepted", w[1]-innerOff)
				}
				b := make([]byte, VXLANLen)
				PushVXLAN(b, VXLANLen, vni)
				hdr := data[w[0]:innerOff]
				if hdr[0] == vxlanFlagI && hdr[1]|hdr[2]|hdr[3]|hdr[7] == 0 && !bytes.Equal(b, hdr) {
					t.Fatalf("round trip: %x, parsed from %x", b, hdr)
				}
			}
		}
	})
}

func FuzzDecapIPUDP(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			innerOff, innerEnd, r := DecapIPUDP(data, w[0], w[1])
			if r != OK {
				continue
			}
			checkWithin(t, "inner", w[0], w[1], innerOff, innerEnd)
			if innerOff != w[0] {
				t.Fatalf("inner starts at %d, payload at %d", innerOff, w[0])
			}
			if _, _, ok := InnerAddrs(data, innerOff, innerEnd); !ok {
				t.Fatal("accepted inner packet has no addresses")
			}
			if FlowHash(data, innerOff, innerEnd) == 0 {
				t.Fatal("accepted inner packet hashes to 0")
			}
		}
	})
}

func FuzzFlowHash(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, off, end int) {
		for _, w := range windows(data, off, end) {
			h := FlowHash(data, w[0], w[1])
			if h != FlowHash(data, w[0], w[1]) {
				t.Fatal("hash not deterministic")
			}
			src, dst, ok := InnerAddrs(data, w[0], w[1])
			if h != 0 && !ok {
				t.Fatal("hashed a packet without addresses")
			}
			if ok && (src.Is4() != dst.Is4()) {
				t.Fatalf("mixed families %v %v", src, dst)
			}
			if p := SourcePort(h, SourcePortMin, SourcePortMax); p < SourcePortMin {
				t.Fatalf("port %d out of range", p)
			}
		}
	})
}
