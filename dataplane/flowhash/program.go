package flowhash

// Insn is one eBPF instruction (struct bpf_insn).
type Insn struct {
	Code uint8
	Regs uint8 // dst in the low nibble, src in the high
	Off  int16
	Imm  int32
}

const (
	bpfLdAbsW = 0x20 // BPF_LD | BPF_ABS | BPF_W: r0 = ntohl(*(u32 *)(skb->data + imm))
	bpfLdAbsB = 0x30 // BPF_LD | BPF_ABS | BPF_B
	bpfLdIndW = 0x40 // BPF_LD | BPF_IND | BPF_W: r0 = ntohl(*(u32 *)(skb->data + src + imm))
	bpfMovX   = 0xbf // BPF_ALU64 | BPF_MOV | BPF_X
	bpfMovK   = 0xb7
	bpfXorX   = 0xaf
	bpfOrX    = 0x4f
	bpfAndK   = 0x57
	bpfLshK   = 0x67
	bpfRshK   = 0x77
	bpfMulK   = 0x27
	bpfModK   = 0x97 // BPF_ALU64 | BPF_MOD | BPF_K
	bpfJeqK   = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfJneK   = 0x55
	bpfJa     = 0x05
	bpfExit   = 0x95
	regCtx    = 6 // LD_ABS/LD_IND take the skb from r6
	regAcc    = 7
	regTmp    = 8
	regTmp2   = 9
)

// Program returns the flow-hash program for packets whose IP header
// starts at byte l3 of what the program sees (0 for a TUN, 14 for a TAP,
// the tunnel header's length plus any inner Ethernet header for a
// SO_REUSEPORT program, which sees the UDP payload). With reply, it
// hashes the flow of the packet's answer (ports swapped). With mod > 0
// it returns the queue itself, the hash's low 16 bits modulo mod (a
// SO_REUSEPORT program must return an index below the group's size);
// with 0, the hash (tun keeps its low 16 bits and takes them modulo its
// queues). A load past the packet's end ends it with 0.
func Program(l3 int32, reply bool, mod uint32) []Insn {
	ins := func(code uint8, dst, src uint8, off int16, imm int32) Insn {
		return Insn{Code: code, Regs: dst | src<<4, Off: off, Imm: imm}
	}
	xorLoad := func(code uint8, at int32) []Insn {
		return []Insn{ins(code, 0, 0, 0, l3+at), ins(bpfXorX, regAcc, 0, 0, 0)}
	}
	// swap turns r0's ports word (source << 16 | destination) around.
	swap := func() []Insn {
		if !reply {
			return nil
		}
		return []Insn{
			ins(bpfMovX, regTmp2, 0, 0, 0),
			ins(bpfRshK, regTmp2, 0, 0, 16),
			ins(bpfLshK, 0, 0, 0, 16),
			ins(bpfOrX, 0, regTmp2, 0, 0),
			ins(bpfLshK, 0, 0, 0, 32), // keep 32 bits
			ins(bpfRshK, 0, 0, 0, 32),
		}
	}
	p := []Insn{
		ins(bpfMovX, regCtx, 1, 0, 0),    // r6 = ctx
		ins(bpfMovK, regAcc, 0, 0, 0),    // acc = 0
		ins(bpfLdAbsB, 0, 0, 0, l3),      // r0 = version/IHL
		ins(bpfMovX, regTmp, 0, 0, 0),    // tmp = r0
		ins(bpfRshK, 0, 0, 0, 4),         // r0 = version
		ins(bpfJeqK, 0, 0, 0, 6),         // if v6: jump to the IPv6 part (patched below)
		ins(bpfJneK, 0, 0, 0, 4),         // not v4: jump to done (patched below)
		ins(bpfAndK, regTmp, 0, 0, 0x0f), // tmp = IHL
		ins(bpfLshK, regTmp, 0, 0, 2),    // tmp = IPv4 header length
		ins(bpfLdAbsB, 0, 0, 0, l3+9),    // r0 = protocol
		ins(bpfXorX, regAcc, 0, 0, 0),    // acc ^= protocol
	}
	sw := swap()
	p = append(p,
		ins(bpfJeqK, 0, 0, 1, 6),                 // TCP: load ports
		ins(bpfJneK, 0, 0, int16(2+len(sw)), 17), // not UDP: skip the ports
		ins(bpfLdIndW, 0, regTmp, 0, l3),
	)
	p = append(p, sw...)
	p = append(p, ins(bpfXorX, regAcc, 0, 0, 0))
	p = append(p, xorLoad(bpfLdAbsW, 12)...) // source
	p = append(p, xorLoad(bpfLdAbsW, 16)...) // destination
	jumpDoneV4 := len(p)
	p = append(p, ins(bpfJa, 0, 0, 0, 0)) // done (patched)
	v6 := len(p)
	p = append(p,
		ins(bpfLdAbsB, 0, 0, 0, l3+6), // next header
		ins(bpfXorX, regAcc, 0, 0, 0),
		ins(bpfJeqK, 0, 0, 1, 6),
		ins(bpfJneK, 0, 0, int16(2+len(sw)), 17),
		ins(bpfLdAbsW, 0, 0, 0, l3+40), // ports right after the fixed header
	)
	p = append(p, sw...)
	p = append(p, ins(bpfXorX, regAcc, 0, 0, 0))
	for at := int32(8); at < 40; at += 4 {
		p = append(p, xorLoad(bpfLdAbsW, at)...)
	}
	done := len(p)
	p = append(p,
		// Fold the high half into the low half first: the queue is the
		// product's bit 16 (and up, with more queues), which depends only
		// on acc's low 17 bits, and a TCP source port sits in the high half
		// of the ports word. Unfolded, connect()'s even source ports (Linux
		// prefers them) put every flow to one server on the same queue.
		ins(bpfMovX, regTmp, regAcc, 0, 0),
		ins(bpfRshK, regTmp, 0, 0, 16),
		ins(bpfXorX, regAcc, regTmp, 0, 0),
		ins(bpfMovX, 0, regAcc, 0, 0),
		ins(bpfMulK, 0, 0, 0, -1640531535), // 0x9e3779b1: spread the bits
		ins(bpfRshK, 0, 0, 0, 16),
	)
	if mod > 0 {
		p = append(p,
			ins(bpfAndK, 0, 0, 0, 0xffff),
			ins(bpfModK, 0, 0, 0, int32(mod)),
		)
	}
	p = append(p, ins(bpfExit, 0, 0, 0, 0))
	p[5].Off = int16(v6 - 6)
	p[6].Off = int16(done - 7)
	p[jumpDoneV4].Off = int16(done - jumpDoneV4 - 1)
	return p
}
