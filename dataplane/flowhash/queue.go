package flowhash

import "encoding/binary"

// Queue returns the queue of n that Program(l2, reply, n) returns for the
// packet p, whose IP header starts at p[l2], and so the queue the TUN/TAP
// steering program (Program(l2, false, 0)) sends p to (reply false), or
// the queue where it sends p's answer (reply true: addresses and ports
// swapped). It mirrors the program instruction by instruction: the same
// words in the same order, a load past the end of the packet ends it
// with 0, the low 16 bits of the result modulo n.
func Queue(p []byte, l2, n int, reply bool) int {
	if n <= 1 {
		return 0
	}
	return int(hash(p, l2, reply) % uint16(n))
}

func hash(p []byte, l2 int, reply bool) uint16 {
	word := func(at int) (uint64, bool) {
		if at < 0 || at+4 > len(p) {
			return 0, false
		}
		return uint64(binary.BigEndian.Uint32(p[at:])), true
	}
	ports := func(w uint64) uint64 {
		if reply {
			w = w>>16 | (w&0xffff)<<16
		}
		return w
	}
	if l2 >= len(p) {
		return 0
	}
	var acc uint64
	switch p[l2] >> 4 {
	case 4:
		ihl := int(p[l2]&0x0f) * 4
		if l2+9 >= len(p) {
			return 0
		}
		proto := p[l2+9]
		acc ^= uint64(proto)
		if proto == 6 || proto == 17 {
			w, ok := word(l2 + ihl)
			if !ok {
				return 0
			}
			acc ^= ports(w)
		}
		src, ok1 := word(l2 + 12)
		dst, ok2 := word(l2 + 16)
		if !ok1 || !ok2 {
			return 0
		}
		acc ^= src ^ dst
	case 6:
		if l2+6 >= len(p) {
			return 0
		}
		next := p[l2+6]
		acc ^= uint64(next)
		if next == 6 || next == 17 {
			w, ok := word(l2 + 40)
			if !ok {
				return 0
			}
			acc ^= ports(w)
		}
		for at := 8; at < 40; at += 4 {
			w, ok := word(l2 + at)
			if !ok {
				return 0
			}
			acc ^= w
		}
	}
	acc ^= acc >> 16
	return uint16(acc * uint64(0xffffffff9e3779b1) >> 16)
}
