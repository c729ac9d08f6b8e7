package bpfpath

import "github.com/cilium/ebpf/asm"

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
		// Congestion experienced on the way: the user-space path copies
		// the mark into the inner packet, or drops a packet whose inner
		// one cannot carry it. Rare by design (a marking queue), so not
		// worth doing here.
		asm.LoadMem(asm.R4, asm.R2, ethLen+1, asm.Byte),
		asm.And.Imm(asm.R4, 3),
		asm.JEq.Imm(asm.R4, 3, "pass_"+DecapCE.String()),
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
	for _, r := range []Reason{DecapOther, DecapBatch, DecapShort, DecapFragment, DecapUnknownPeer, DecapNoRoom, DecapCE} {
		p = append(p, passWith(r)...)
	}
	return p, nil
}
