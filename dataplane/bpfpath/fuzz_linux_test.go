package bpfpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// The decap program is the parser of what arrives from the wire. The fuzz
// target runs it in the kernel (BPF_PROG_TEST_RUN) on arbitrary frames
// and checks its verdict against a reference written here from the
// formats: it redirects exactly the frames the reference takes, and what
// it hands on is the frame's Ethernet header followed by the inner packet;
// everything else goes on to the stack untouched (the verifier already
// proves it never reads out of bounds).

var (
	fuzzLocal  = netip.MustParseAddr("10.99.0.1")
	fuzzRemote = netip.MustParseAddr("10.99.0.2")
	fuzzMAC    = [6]byte{2, 0, 0, 0, 1, 1}
)

const (
	verdictNext     = 0xffffffff // TCX_NEXT (-1)
	verdictRedirect = 7          // TC_ACT_REDIRECT
)

// loadDecap loads (without attaching) the programs for e, with the
// remote as the one peer. Ifindex 1 (lo) stands for both devices: a test
// run does not redirect.
func loadDecap(tb testing.TB, e Encap) *Path {
	tb.Helper()
	topo.RequireRoot(tb)
	pa, err := load(Config{Encap: e, Local: fuzzLocal, VNI: 42, LocalMAC: fuzzMAC, TOS: Inherit, DF: Inherit, Device: 1, Underlay: 1, MaxPeers: 16})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pa.Close() })
	if _, err := pa.SetPeers([]Peer{{Prefix: netip.MustParsePrefix("10.200.0.2/32"), Remote: fuzzRemote}}); err != nil {
		tb.Fatal(err)
	}
	return pa
}

// wantDecap is the reference: whether the decap program must take frame.
func wantDecap(e Encap, frame []byte) bool {
	over := e.Overhead()
	// The kernel will not shrink a packet below an IPv4 header: a shorter
	// inner packet is left (counted as decap_no_room).
	if len(frame) < ethLen+over+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
		return false
	}
	ip := frame[ethLen:]
	l, r := fuzzLocal.As4(), fuzzRemote.As4()
	proto := map[Encap]byte{IPIP: 4, GRE: 47, VXLAN: 17}[e]
	if ip[0] != 0x45 || ip[1]&3 == 3 || ip[9] != proto || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 ||
		!bytes.Equal(ip[16:20], l[:]) || !bytes.Equal(ip[12:16], r[:]) {
		return false
	}
	switch e {
	case GRE:
		return bytes.Equal(ip[20:24], []byte{0, 0, 0x08, 0})
	case VXLAN:
		return binary.BigEndian.Uint16(ip[22:]) == vxlanDefault &&
			bytes.Equal(ip[28:32], []byte{0x08, 0, 0, 0}) &&
			binary.BigEndian.Uint32(ip[32:]) == 42<<8 &&
			binary.BigEndian.Uint16(ip[48:]) == 0x0800 &&
			bytes.Equal(ip[36:42], fuzzMAC[:])
	}
	return true
}

// seedFrame is a well-formed tunnel frame from the remote, inner IPv4
// packet of n payload bytes.
func seedFrame(e Encap, n int) []byte {
	c := Config{Encap: e, Local: fuzzRemote, VNI: 42, TOS: Inherit, DF: Inherit}
	h := c.header()
	l := fuzzLocal.As4()
	copy(h[16:20], l[:])
	if e == VXLAN {
		copy(h[36:42], fuzzMAC[:])
	}
	inner := make([]byte, 20+n)
	inner[0], inner[8], inner[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(inner[2:], uint16(len(inner)))
	copy(inner[12:], []byte{10, 200, 0, 1, 10, 200, 0, 2})
	f := append(make([]byte, ethLen), h...)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	binary.BigEndian.PutUint16(f[ethLen+2:], uint16(len(h)+len(inner)))
	return append(f, inner...)
}

// checkDecap runs the decap program on frame and checks it against the
// reference; it reports whether the kernel ran it at all.
func checkDecap(t *testing.T, pa *Path, e Encap, frame []byte) (ran bool) {
	if len(frame) < ethLen || len(frame) > 3000 {
		return false // the kernel's test run takes 14 bytes up to about a page
	}
	out := make([]byte, len(frame)+256)
	verdict, err := pa.progs[1].Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	if errors.Is(err, unix.EINVAL) {
		// The test run itself refuses some frames the stack can deliver
		// (an IPv6 ethertype on fewer than 40 bytes, say); those are left
		// by the first instructions, before any header is read.
		return false
	}
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	want := wantDecap(e, frame)
	switch {
	case want && verdict != verdictRedirect:
		t.Fatalf("verdict %#x for a frame the reference takes:\n% x", verdict, frame)
	case !want && verdict != verdictNext:
		t.Fatalf("verdict %#x for a frame the reference leaves:\n% x", verdict, frame)
	case want:
		got := out[:len(frame)-e.Overhead()]
		wantOut := append(append([]byte{}, frame[:ethLen]...), frame[ethLen+e.Overhead():]...)
		if !bytes.Equal(got, wantOut) {
			t.Fatalf("handed on\n% x\nwant\n% x", got, wantOut)
		}
	}
	return true
}

func TestDecapReference(t *testing.T) {
	for _, e := range []Encap{IPIP, GRE, VXLAN} {
		t.Run(e.String(), func(t *testing.T) {
			pa := loadDecap(t, e)
			good := seedFrame(e, 30)
			if !wantDecap(e, good) {
				t.Fatal("the seed frame is not one the reference takes")
			}
			if !checkDecap(t, pa, e, good) {
				t.Fatal("the kernel's test run refused the seed frame")
			}
			// every single-byte change of the headers, and every truncation
			for i := 0; i < ethLen+e.Overhead()+4; i++ {
				f := append([]byte{}, good...)
				f[i] ^= 0xff
				checkDecap(t, pa, e, f)
				checkDecap(t, pa, e, good[:i])
			}
		})
	}
}

func FuzzDecap(f *testing.F) {
	for _, e := range []Encap{IPIP, GRE, VXLAN} {
		f.Add(uint8(e), seedFrame(e, 30))
		f.Add(uint8(e), seedFrame(e, 0)[:ethLen+e.Overhead()])
	}
	paths := map[Encap]*Path{}
	for _, e := range []Encap{IPIP, GRE, VXLAN} {
		paths[e] = loadDecap(f, e)
	}
	f.Fuzz(func(t *testing.T, which uint8, frame []byte) {
		e := Encap(which%3 + 1)
		checkDecap(t, paths[e], e, frame)
	})
}
