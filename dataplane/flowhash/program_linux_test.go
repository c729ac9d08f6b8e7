package flowhash

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// run runs the loaded program fd once on p in the kernel
// (BPF_PROG_TEST_RUN) and returns what it returned. A socket filter's
// test run takes an Ethernet frame and hands the program what follows
// the Ethernet header.
func run(t *testing.T, fd int, p []byte) uint32 {
	t.Helper()
	frame := append(make([]byte, 14, 14+len(p)), p...)
	frame[12], frame[13] = 0x08, 0x00
	var attr [160]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(fd)                                  // prog_fd
	*(*uint32)(unsafe.Pointer(&attr[8])) = uint32(len(frame))                          // data_size_in
	*(*uint64)(unsafe.Pointer(&attr[16])) = uint64(uintptr(unsafe.Pointer(&frame[0]))) // data_in
	*(*uint32)(unsafe.Pointer(&attr[32])) = 1                                          // repeat
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno != 0 {
		t.Fatalf("BPF_PROG_TEST_RUN on %d bytes: %v", len(frame), errno)
	}
	return *(*uint32)(unsafe.Pointer(&attr[4])) // retval
}

// TestProgramMatchesQueue runs every variant of the program the data plane
// loads (TUN and TAP steering; SO_REUSEPORT behind VXLAN and IP-in-UDP,
// on the answer's flow, modulo the group's size) in the kernel on TCP,
// UDP and ICMP packets over IPv4 and IPv6, and on truncated ones, and
// compares each result with Queue.
func TestProgramMatchesQueue(t *testing.T) {
	topo.RequireRoot(t)
	addrs := [][2]netip.Addr{
		{netip.MustParseAddr("10.200.0.1"), netip.MustParseAddr("10.200.1.7")},
		{netip.MustParseAddr("fd00:200::1"), netip.MustParseAddr("fd00:200:1::7")},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var pkts [][]byte
	for _, ab := range addrs {
		for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4} {
			for range 20 {
				pkts = append(pkts, steerPacket(t, ab[0], ab[1], proto, uint16(rng.UintN(65536)), uint16(rng.UintN(65536)), false))
			}
		}
	}
	for _, v := range []struct {
		name  string
		l3    int
		reply bool
		mod   uint32
	}{
		{"tun-steering", 0, false, 0},
		{"tap-steering", 14, false, 0},
		{"reuseport-vxlan", 22, true, 2},
		{"reuseport-vxlan-3", 22, true, 3},
		{"reuseport-ipudp", 0, true, 4},
	} {
		t.Run(v.name, func(t *testing.T) {
			fd, err := Load(Program(int32(v.l3), v.reply, v.mod))
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			for i, inner := range pkts {
				p := append(make([]byte, v.l3), inner...)
				for _, cut := range []int{len(p), v.l3 + 21, min(len(p), v.l3+33)} {
					q := p[:cut]
					got := run(t, fd, q)
					n := int(v.mod)
					if n == 0 {
						got, n = uint32(uint16(got))%4, 4 // as tun takes it, with 4 queues
					}
					if want := Queue(q, v.l3, n, v.reply); got != uint32(want) {
						t.Fatalf("packet %d cut to %d: kernel %d, Queue %d", i, cut, got, want)
					}
				}
			}
		})
	}
}
