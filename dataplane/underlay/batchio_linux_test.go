package underlay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"unsafe"
)

// TestMmsghdrLayout: struct mmsghdr is a msghdr and a 32-bit length,
// padded to the msghdr's alignment (64 bytes on 64-bit Linux, 32 on
// 32-bit).
func TestMmsghdrLayout(t *testing.T) {
	want := unsafe.Sizeof(uintptr(0)) * 8
	if got := unsafe.Sizeof(mmsghdr{}); got != want {
		t.Fatalf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
}

// TestBatchRoundTrip sends a batch over loopback UDP, one message of it
// as two gathered buffers, and reads it back with the senders' address.
func TestBatchRoundTrip(t *testing.T) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	r, err := NewBatchConn(rc, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewBatchConn(sc, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	out := []Message{
		{Buf: []byte("one"), Addr: to},
		{Bufs: [][]byte{[]byte("tw"), []byte("o")}, Addr: to},
		{Buf: []byte("three"), Addr: to, TOS: 0x10, SetTOS: true},
	}
	if n, err := s.NewBatchWriter(8).WriteBatch(out); n != len(out) || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	from := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	var got [][]byte
	for len(got) < len(out) {
		ms := make([]Message, 8)
		for i := range ms {
			ms[i].Buf = make([]byte, 64)
		}
		n, err := r.ReadBatch(ms)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			if m.Addr != from || m.Trunc || m.GSOSize != 0 {
				t.Fatalf("message from %v trunc %v gso %d, want from %v", m.Addr, m.Trunc, m.GSOSize, from)
			}
			got = append(got, m.Buf[:m.N])
		}
	}
	if !bytes.Equal(bytes.Join(got, []byte(",")), []byte("one,two,three")) {
		t.Fatalf("got %q", got)
	}
}
