package underlay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// TestSendSocket: a send socket sends, is blocking (outside the
// netpoller), and a raw one queues none of the packets of its protocol
// that arrive (a plain raw socket beside it gets them). Loopback only.
func TestSendSocket(t *testing.T) {
	topo.RequireRoot(t)
	lo := netip.MustParseAddr("127.0.0.1")
	const proto = 253 // RFC 3692 experimentation

	ref, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ref)
	raw, err := sendSocket(lo, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fl, err := unix.FcntlInt(raw.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("send socket flags %#x (%v): want blocking", fl, err)
	}

	payload := []byte("tunnelplane send socket")
	if err := unix.Sendto(int(raw.Fd()), payload, 0, &unix.SockaddrInet4{Addr: lo.As4()}); err != nil {
		t.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(ref), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 2000); n != 1 || err != nil {
		t.Fatalf("plain raw socket got nothing (%d, %v)", n, err)
	}
	buf := make([]byte, 1500)
	n, _, err := unix.Recvfrom(ref, buf, unix.MSG_DONTWAIT)
	if err != nil || !bytes.HasSuffix(buf[:n], payload) {
		t.Fatalf("plain raw socket: %q, %v", buf[:n], err)
	}
	if n, _, err := unix.Recvfrom(int(raw.Fd()), buf, unix.MSG_DONTWAIT); err != unix.EAGAIN {
		t.Fatalf("send socket queued a packet (%d bytes, %v): want none", n, err)
	}

	// UDP: an ephemeral port on the local address.
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	udp, err := sendSocket(lo, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	port := ln.LocalAddr().(*net.UDPAddr).Port
	if err := unix.Sendto(int(udp.Fd()), payload, 0, &unix.SockaddrInet4{Addr: lo.As4(), Port: port}); err != nil {
		t.Fatal(err)
	}
	ln.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := ln.ReadFromUDP(buf)
	if err != nil || !bytes.Equal(buf[:n], payload) || !from.IP.Equal(net.IPv4(127, 0, 0, 1)) || from.Port == 0 {
		t.Fatalf("UDP: %q from %v, %v", buf[:n], from, err)
	}
}
