package device

import "encoding/binary"

// SteerQueue returns the queue of an n-queue device that the steering
// program (steer_linux.go) sends the packet p to, p starting l2 bytes
// before its IP header; ReplyQueue, the queue of the packets that answer
// it (addresses and ports swapped). The data plane uses the second to
// find where the kernel puts its answer to a packet tunneld wrote
// (devreader.go). Both mirror the program instruction by instruction: the
// same words in the same order, a load past the end of the packet ends
// it with 0, and tun keeps the low 16 bits of the result before taking
// it modulo n.
func SteerQueue(p []byte, l2, n int) int { return steerQueue(p, l2, n, false) }

// ReplyQueue: see SteerQueue.
func ReplyQueue(p []byte, l2, n int) int { return steerQueue(p, l2, n, true) }

func steerQueue(p []byte, l2, n int, reply bool) int {
	if n <= 1 {
		return 0
	}
	return int(steerHash(p, l2, reply) % uint16(n))
}

func steerHash(p []byte, l2 int, reply bool) uint16 {
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
