package bpfpath

import "github.com/cilium/ebpf/asm"

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
