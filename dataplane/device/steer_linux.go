package device

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Queue steering for a multi-queue TUN/TAP device.
//
// Without a steering program the kernel sends a flow to the queue that
// last *wrote* packets of the same flow (tun's automq flow table, keyed by
// a symmetric hash). For a TCP stream through two tunnelds that loop is
// not stable: data read on queue 0 leaves from queue 0's socket, lands on
// whichever of the peer's SO_REUSEPORT sockets its port hashes to, the
// ACKs come back the same way to whichever socket of ours, and the queue
// that writes them to the device decides where the next data goes. With
// some port pairs the flow flips between queues every round trip, both
// readers send parts of it at once, and the peer sees it reordered
// (measured: 75,000-100,000 spurious retransmissions in 6 s at 4-5 Gbit/s
// in three runs of five; none with one queue).
//
// The steering program below picks the queue from a hash of the packet's
// addresses, protocol and TCP/UDP ports, so a flow always leaves through
// one queue, whatever the other direction does. It uses only classic
// packet loads, so it needs no helper and no GPL license; loading it needs
// CAP_BPF or CAP_SYS_ADMIN (tunneld does it before dropping privileges).

// bpf instruction encoding (linux/bpf.h).
type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high
	off  int16
	imm  int32
}

const (
	bpfLdAbsW  = 0x20 // BPF_LD | BPF_ABS | BPF_W: r0 = ntohl(*(u32 *)(skb->data + imm))
	bpfLdAbsB  = 0x30 // BPF_LD | BPF_ABS | BPF_B
	bpfLdIndW  = 0x40 // BPF_LD | BPF_IND | BPF_W: r0 = ntohl(*(u32 *)(skb->data + src + imm))
	bpfMovX    = 0xbf // BPF_ALU64 | BPF_MOV | BPF_X
	bpfMovK    = 0xb7
	bpfXorX    = 0xaf
	bpfAndK    = 0x57
	bpfLshK    = 0x67
	bpfRshK    = 0x77
	bpfMulK    = 0x27
	bpfJeqK    = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfJneK    = 0x55
	bpfExit    = 0x95
	bpfRegCtx  = 6 // LD_ABS/LD_IND take the skb from r6
	bpfRegAcc  = 7
	bpfRegTmp  = 8
	tunSetBPF  = 0x800454e0 // TUNSETSTEERINGEBPF: _IOR('T', 224, int)
	bpfAttrLen = 128
)

// steeringProgram returns the program for packets starting l2 bytes before
// their IP header (0 for TUN, 14 for TAP).
func steeringProgram(l2 int32) []bpfInsn {
	ins := func(code uint8, dst, src uint8, off int16, imm int32) bpfInsn {
		return bpfInsn{code: code, regs: dst | src<<4, off: off, imm: imm}
	}
	xorLoad := func(code uint8, at int32) []bpfInsn {
		return []bpfInsn{ins(code, 0, 0, 0, l2+at), ins(bpfXorX, bpfRegAcc, 0, 0, 0)}
	}
	p := []bpfInsn{
		ins(bpfMovX, bpfRegCtx, 1, 0, 0),    // r6 = ctx
		ins(bpfMovK, bpfRegAcc, 0, 0, 0),    // acc = 0
		ins(bpfLdAbsB, 0, 0, 0, l2),         // r0 = version/IHL
		ins(bpfMovX, bpfRegTmp, 0, 0, 0),    // tmp = r0
		ins(bpfRshK, 0, 0, 0, 4),            // r0 = version
		ins(bpfJeqK, 0, 0, 0, 6),            // if v6: jump to the IPv6 part (patched below)
		ins(bpfJneK, 0, 0, 0, 4),            // not v4: jump to done (patched below)
		ins(bpfAndK, bpfRegTmp, 0, 0, 0x0f), // tmp = IHL
		ins(bpfLshK, bpfRegTmp, 0, 0, 2),    // tmp = IPv4 header length
		ins(bpfLdAbsB, 0, 0, 0, l2+9),       // r0 = protocol
		ins(bpfXorX, bpfRegAcc, 0, 0, 0),    // acc ^= protocol
	}
	p = append(p,
		ins(bpfJeqK, 0, 0, 1, 6),  // TCP: load ports
		ins(bpfJneK, 0, 0, 2, 17), // not UDP: skip the ports
		ins(bpfLdIndW, 0, bpfRegTmp, 0, l2),
		ins(bpfXorX, bpfRegAcc, 0, 0, 0),
	)
	p = append(p, xorLoad(bpfLdAbsW, 12)...) // source
	p = append(p, xorLoad(bpfLdAbsW, 16)...) // destination
	jumpDoneV4 := len(p)
	p = append(p, ins(0x05, 0, 0, 0, 0)) // BPF_JA done (patched)
	v6 := len(p)
	p = append(p,
		ins(bpfLdAbsB, 0, 0, 0, l2+6), // next header
		ins(bpfXorX, bpfRegAcc, 0, 0, 0),
		ins(bpfJeqK, 0, 0, 1, 6),
		ins(bpfJneK, 0, 0, 2, 17),
		ins(bpfLdAbsW, 0, 0, 0, l2+40), // ports right after the fixed header
		ins(bpfXorX, bpfRegAcc, 0, 0, 0),
	)
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
		ins(bpfMovX, bpfRegTmp, bpfRegAcc, 0, 0),
		ins(bpfRshK, bpfRegTmp, 0, 0, 16),
		ins(bpfXorX, bpfRegAcc, bpfRegTmp, 0, 0),
		ins(bpfMovX, 0, bpfRegAcc, 0, 0),
		ins(bpfMulK, 0, 0, 0, -1640531535), // 0x9e3779b1: spread the bits
		ins(bpfRshK, 0, 0, 0, 16),
		ins(bpfExit, 0, 0, 0, 0),
	)
	p[5].off = int16(v6 - 6)
	p[6].off = int16(done - 7)
	p[jumpDoneV4].off = int16(done - jumpDoneV4 - 1)
	return p
}

// setSteering loads the steering program and attaches it to the device
// that fd is a queue of.
func setSteering(fd int, l2 int32) error {
	prog := steeringProgram(l2)
	license := []byte("Apache-2.0\x00")
	logBuf := make([]byte, 4096)
	var attr [bpfAttrLen]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = unix.BPF_PROG_TYPE_SOCKET_FILTER
	*(*uint32)(unsafe.Pointer(&attr[4])) = uint32(len(prog))
	*(*uint64)(unsafe.Pointer(&attr[8])) = uint64(uintptr(unsafe.Pointer(&prog[0])))
	*(*uint64)(unsafe.Pointer(&attr[16])) = uint64(uintptr(unsafe.Pointer(&license[0])))
	*(*uint32)(unsafe.Pointer(&attr[24])) = 1 // log_level
	*(*uint32)(unsafe.Pointer(&attr[28])) = uint32(len(logBuf))
	*(*uint64)(unsafe.Pointer(&attr[32])) = uint64(uintptr(unsafe.Pointer(&logBuf[0])))
	pfd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), bpfAttrLen)
	runtime.KeepAlive(prog) // the attribute holds their addresses as plain integers
	runtime.KeepAlive(license)
	runtime.KeepAlive(logBuf)
	if errno != 0 {
		return fmt.Errorf("load steering program: %w: %s", errno, cString(logBuf))
	}
	defer unix.Close(int(pfd))
	progFD := int32(pfd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tunSetBPF, uintptr(unsafe.Pointer(&progFD))); errno != 0 {
		return fmt.Errorf("TUNSETSTEERINGEBPF: %w", errno)
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
