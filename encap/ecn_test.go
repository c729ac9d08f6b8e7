package encap

import (
	"net/netip"
	"testing"
)

// TestECNDecap: RFC 6040's decapsulation table as the kernel applies it,
// for IPv4 (checksum still valid after the rewrite) and IPv6.
func TestECNDecap(t *testing.T) {
	for _, tc := range []struct {
		outer, inner uint8
		want         uint8
		ok           bool
	}{
		{ECNNotECT, ECNNotECT, ECNNotECT, true},
		{ECNECT0, ECNNotECT, ECNNotECT, true},
		{ECNECT1, ECNECT0, ECNECT0, true},
		{ECNECT0, ECNCE, ECNCE, true},
		{ECNCE, ECNNotECT, ECNNotECT, false},
		{ECNCE, ECNECT0, ECNCE, true},
		{ECNCE, ECNECT1, ECNCE, true},
		{ECNCE, ECNCE, ECNCE, true},
	} {
		// IPv4, DSCP bits set too: only the ECN bits may change.
		b := make([]byte, 40)
		h := IPv4Header{Src: netip.MustParseAddr("10.200.0.2"), Dst: netip.MustParseAddr("10.200.0.1"), Protocol: 6, TTL: 64, TOS: 0xb8 | tc.inner}
		off := PushIPv4(b, 20, 40, &h)
		ok := ECNDecap(b, off, 40, 0xa0|tc.outer)
		if ok != tc.ok || b[off+1] != 0xb8|tc.want {
			t.Errorf("IPv4 outer %d inner %d: ok %v tos %#x, want %v %#x", tc.outer, tc.inner, ok, b[off+1], tc.ok, 0xb8|tc.want)
		}
		if IPv4Checksum(b[off:off+20]) != 0 {
			t.Errorf("IPv4 outer %d inner %d: header checksum wrong after the rewrite", tc.outer, tc.inner)
		}
		// IPv6: traffic class 0xb8|ecn spans the first two bytes.
		b6 := make([]byte, 40)
		tclass := 0xb8 | tc.inner
		b6[0], b6[1] = 0x60|tclass>>4, tclass<<4
		ok = ECNDecap(b6, 0, 40, tc.outer)
		got := b6[0]<<4 | b6[1]>>4
		if ok != tc.ok || got != 0xb8|tc.want || b6[0]>>4 != 6 || b6[1]&0x0f != 0 {
			t.Errorf("IPv6 outer %d inner %d: ok %v tclass %#x, want %v %#x", tc.outer, tc.inner, ok, got, tc.ok, 0xb8|tc.want)
		}
	}
}

func FuzzECNDecap(f *testing.F) {
	f.Add([]byte{0x45, 0x02, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 200, 0, 2, 10, 200, 0, 1}, 0, 20, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, off, end int, tos uint8) {
		if off > end {
			return
		}
		valid := len(data) >= 20 && data[0] == 0x45 && IPv4Checksum(data[:20]) == 0
		ECNDecap(data, off, end, tos)
		if valid && off == 0 && end >= 20 && IPv4Checksum(data[:20]) != 0 {
			t.Fatal("a valid IPv4 header lost its checksum")
		}
	})
}
