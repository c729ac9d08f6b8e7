//go:build linux

package packetsock

import (
	"fmt"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// progLoadAttr is the head of union bpf_attr for BPF_PROG_LOAD
// (include/uapi/linux/bpf.h); the rest stays zero.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	_           [80]byte
}

// bpfInsn is struct bpf_insn.
type bpfInsn struct {
	code uint8
	regs uint8 // dst_reg (low 4 bits) | src_reg (high 4 bits)
	off  int16
	imm  int32
}

// loadDropIPIP loads a tc (SCHED_CLS, direct-action) program that returns
// TC_ACT_SHOT for IPv4 protocol 4 and TC_ACT_OK otherwise:
//
//	r6 = r1; r0 = ld_abs_b [23]; if r0 != 4 goto ok; r0 = 2 (SHOT); exit; ok: r0 = 0; exit
//
// cls_bpf pushes the MAC header back at ingress, so offset 23 is the IPv4
// protocol behind a 14-byte Ethernet header.
func loadDropIPIP() (int, error) {
	insns := []bpfInsn{
		{code: unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_X, regs: 6 | 1<<4},
		{code: unix.BPF_LD | unix.BPF_ABS | unix.BPF_B, imm: ethLen + 9},
		{code: unix.BPF_JMP | unix.BPF_JNE | unix.BPF_K, off: 2, imm: ipipProto},
		{code: unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K, imm: 2},
		{code: unix.BPF_JMP | 0x90}, // BPF_EXIT
		{code: unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K, imm: 0},
		{code: unix.BPF_JMP | 0x90},
	}
	lic := []byte("GPL\x00")
	logBuf := make([]byte, 4096)
	a := progLoadAttr{progType: unix.BPF_PROG_TYPE_SCHED_CLS, insnCnt: uint32(len(insns)),
		insns: uint64(uintptr(unsafe.Pointer(&insns[0]))), license: uint64(uintptr(unsafe.Pointer(&lic[0]))),
		logLevel: 1, logSize: uint32(len(logBuf)), logBuf: uint64(uintptr(unsafe.Pointer(&logBuf[0])))}
	// EAGAIN: the verifier stopped for a pending signal (Go preempts
	// threads with signals); retry as libbpf does.
	var fd uintptr
	var errno unix.Errno
	for try := 0; try < 10; try++ {
		if fd, _, errno = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a)); errno != unix.EAGAIN {
			break
		}
	}
	if errno != 0 {
		return -1, fmt.Errorf("BPF_PROG_LOAD: %w: %s", errno, unix.ByteSliceToString(logBuf))
	}
	return int(fd), nil
}

// tcDropIPIP puts clsact on dev in ns and the drop program on its ingress;
// the returned function removes both. An ETH_P_ALL packet socket still
// sees each frame (taps run before tc ingress); the IP stack does not.
func (e *env) tcDropIPIP(ns, dev string) (func(), error) {
	fd, err := loadDropIPIP()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd) // the filter keeps its own reference
	nh, err := netns.GetFromPath("/var/run/netns/" + ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, err
	}
	if _, err := run("tc", "-n", ns, "qdisc", "add", "dev", dev, "clsact"); err != nil {
		return nil, err
	}
	undo := func() { _, _ = run("tc", "-n", ns, "qdisc", "del", "dev", dev, "clsact") }
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS,
			Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
		Fd: fd, Name: "drop-ipip", DirectAction: true,
	}
	if err := h.FilterAdd(f); err != nil {
		undo()
		return nil, fmt.Errorf("tc bpf filter: %w", err)
	}
	return undo, nil
}
