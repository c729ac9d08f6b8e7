//go:build linux

package udptunnelgso

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
)

// env is two namespaces A (10.99.0.1/24 on vxa) and B (10.99.0.2/24 on vxb)
// joined by a veth, and a UDP socket in B bound to 10.99.0.2:4789 with
// UDP_GRO on. Everything is removed by t.Cleanup, failures included.
type env struct {
	t          *testing.T
	nsA, nsB   string
	macA, macB net.HardwareAddr
	rx         int
}

func requireRoot(t *testing.T) {
	t.Helper()
	topo.RequireRoot(t) // namespaces, TAP/TUN devices and tc; a failure in CI
	for _, b := range []string{"ip", "tc", "ethtool"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not installed (scripts/deps.sh installs iproute2 and ethtool)", b)
		}
	}
}

func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (e *env) must(args ...string) string {
	e.t.Helper()
	out, err := run(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func newEnv(t *testing.T) *env {
	requireRoot(t)
	var r [4]byte
	_, _ = rand.Read(r[:])
	tag := fmt.Sprintf("tp-probe-%d-%s", os.Getpid(), hex.EncodeToString(r[:]))
	e := &env{t: t, nsA: tag + "-a", nsB: tag + "-b", rx: -1}
	for _, ns := range []string{e.nsA, e.nsB} {
		e.must("ip", "netns", "add", ns)
		t.Cleanup(func() {
			if _, err := run("ip", "netns", "del", ns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	e.must("ip", "-n", e.nsA, "link", "add", "vxa", "type", "veth", "peer", "name", "vxb", "netns", e.nsB)
	for _, c := range [][]string{
		{"ip", "-n", e.nsA, "addr", "add", "10.99.0.1/24", "dev", "vxa"},
		{"ip", "-n", e.nsB, "addr", "add", "10.99.0.2/24", "dev", "vxb"},
		{"ip", "-n", e.nsA, "link", "set", "lo", "up"},
		{"ip", "-n", e.nsB, "link", "set", "lo", "up"},
		{"ip", "-n", e.nsA, "link", "set", "vxa", "up"},
		{"ip", "-n", e.nsB, "link", "set", "vxb", "up"},
		{"ip", "netns", "exec", e.nsA, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
		{"ip", "netns", "exec", e.nsB, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
	} {
		e.must(c...)
	}
	e.macA = e.mac(e.nsA, "vxa")
	e.macB = e.mac(e.nsB, "vxb")
	// Static neighbours: the socket paths need no ARP either.
	e.must("ip", "-n", e.nsA, "neigh", "replace", "10.99.0.2", "lladdr", e.macB.String(), "dev", "vxa", "nud", "permanent")
	e.must("ip", "-n", e.nsB, "neigh", "replace", "10.99.0.1", "lladdr", e.macA.String(), "dev", "vxb", "nud", "permanent")

	err := inNS(e.nsB, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		e.rx = fd
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1); err != nil {
			return fmt.Errorf("UDP_GRO: %w", err)
		}
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Port: vxlanPort, Addr: [4]byte{10, 99, 0, 2}})
	})
	if e.rx >= 0 {
		t.Cleanup(func() { unix.Close(e.rx) })
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) mac(ns, dev string) net.HardwareAddr {
	out := e.must("ip", "-n", ns, "-o", "link", "show", "dev", dev)
	f := strings.Fields(out)
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			m, err := net.ParseMAC(f[i+1])
			if err != nil {
				e.t.Fatal(err)
			}
			return m
		}
	}
	e.t.Fatalf("no MAC in %q", out)
	return nil
}

// setOffloads switches the veth pair's offloads the way bench/topo does.
func (e *env) setOffloads(on bool) {
	v := "off"
	if on {
		v = "on"
	}
	e.must("ip", "netns", "exec", e.nsA, "ethtool", "-K", "vxa", "rx", v, "tx", v, "tso", v, "gso", v, "gro", v)
	e.must("ip", "netns", "exec", e.nsB, "ethtool", "-K", "vxb", "rx", v, "tx", v, "tso", v, "gso", v, "gro", v)
}

// features is the subset of `ethtool -k vxa` that decides the fate of a
// UDP-tunnel GSO skb on its egress.
func (e *env) features() string {
	out, _ := run("ip", "netns", "exec", e.nsA, "ethtool", "-k", "vxa")
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		for _, k := range []string{"tx-checksumming:", "tcp-segmentation-offload:", "generic-segmentation-offload:", "tx-gso-robust:", "tx-udp_tnl-segmentation:", "tx-udp_tnl-csum-segmentation:", "generic-receive-offload:"} {
			if strings.HasPrefix(l, k) {
				keep = append(keep, l)
			}
		}
	}
	return strings.Join(keep, "; ")
}

// inNS runs fn on a thread switched into the named namespace. The thread
// stays locked and so dies with its goroutine: no thread returns to the pool
// in the wrong namespace. Sockets and devices opened there keep it.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// openTun opens a TAP (or TUN) named name in namespace ns with IFF_VNET_HDR,
// sets the vnet header size and then tries TUNSETOFFLOAD with offload; its
// error is returned apart (it is a finding, not a failure). The device is
// set up; the fd is closed by t.Cleanup.
func (e *env) openTun(ns, name string, tap bool, hdrSz, offload int) (fd int, offErr error) {
	e.t.Helper()
	fd = -1
	err := inNS(ns, func() error {
		f, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fd = f
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		flags := uint16(unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if tap {
			flags |= unix.IFF_TAP
		} else {
			flags |= unix.IFF_TUN
		}
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, hdrSz); err != nil {
			return fmt.Errorf("TUNSETVNETHDRSZ %d: %w", hdrSz, err)
		}
		offErr = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offload)
		return nil
	})
	if fd >= 0 {
		e.t.Cleanup(func() { unix.Close(fd) })
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.must("ip", "-n", ns, "link", "set", name, "up")
	return fd, offErr
}

// redirect sends every frame written to dev (arriving on its ingress) out of
// vxa with tc: clsact + u32 match-all + mirred egress redirect.
func (e *env) redirect(dev string) {
	e.must("tc", "-n", e.nsA, "qdisc", "add", "dev", dev, "clsact")
	e.must("tc", "-n", e.nsA, "filter", "add", "dev", dev, "ingress", "protocol", "all", "prio", "1",
		"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "vxa")
}

// rxStats is what B's socket saw.
type rxStats struct {
	Datagrams, Bytes                                          int
	Truncated                                                 int
	GRO                                                       map[int]int // UDP_GRO cmsg value -> datagrams (0: no cmsg)
	DgramLen                                                  map[int]int // datagram length -> count
	Segments                                                  int         // inner TCP packets decoded
	SegPayload                                                map[int]int // inner TCP payload length -> count
	TCPOK, TCPPartial, TCPBad, IPBad, PayloadBad, Undecodable int
	PayloadBytes                                              int
}

func newRxStats() *rxStats {
	return &rxStats{GRO: map[int]int{}, DgramLen: map[int]int{}, SegPayload: map[int]int{}}
}

func (s *rxStats) String() string {
	return fmt.Sprintf("datagrams=%d bytes=%d trunc=%d lens=%v udp_gro_cmsg=%v | inner segments=%d payload=%d payload-lens=%v tcp-csum ok=%d partial=%d bad=%d ip-csum-bad=%d payload-bad=%d undecodable=%d",
		s.Datagrams, s.Bytes, s.Truncated, s.DgramLen, s.GRO, s.Segments, s.PayloadBytes, s.SegPayload, s.TCPOK, s.TCPPartial, s.TCPBad, s.IPBad, s.PayloadBad, s.Undecodable)
}

// drain empties the socket.
func (e *env) drain() {
	buf := make([]byte, 1<<16)
	for {
		_, _, err := unix.Recvfrom(e.rx, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return
		}
	}
}

// receive reads B's socket until idle for one receive timeout (200ms) or
// until the deadline, decoding everything.
func (e *env) receive(deadline time.Time) *rxStats {
	s := newRxStats()
	buf := make([]byte, 1<<17)
	oob := make([]byte, 128)
	for time.Now().Before(deadline) {
		n, oobn, flags, _, err := unix.Recvmsg(e.rx, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break
			}
			e.t.Logf("recvmsg: %v", err)
			break
		}
		s.add(buf[:n], groSize(oob[:oobn]), flags&unix.MSG_TRUNC != 0)
	}
	return s
}

func groSize(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 4 {
			return int(*(*int32)(unsafe.Pointer(&m.Data[0])))
		}
	}
	return 0
}

// add decodes one received UDP payload. With a UDP_GRO cmsg it may be a
// train of gro-sized datagrams (real UDP GRO), or one datagram whose inner
// packet is still a TSO super-packet (the cmsg then carries the inner MSS):
// the inner IP length tells which.
func (s *rxStats) add(b []byte, gro int, trunc bool) {
	s.Datagrams++
	s.Bytes += len(b)
	s.GRO[gro]++
	s.DgramLen[len(b)]++
	if trunc {
		s.Truncated++
	}
	if gro > 0 && len(b) > gro && len(b) >= vxlanLen+ethLen+ipLen {
		tot := int(binary.BigEndian.Uint16(b[vxlanLen+ethLen+2:]))
		if vxlanLen+ethLen+tot != len(b) {
			for off := 0; off < len(b); off += gro {
				s.decode(b[off:min(off+gro, len(b))])
			}
			return
		}
	}
	s.decode(b)
}

func (s *rxStats) decode(d []byte) {
	if len(d) < vxlanLen+ethLen+ipLen+tcpLen || d[0] != 0x08 {
		s.Undecodable++
		return
	}
	pkt := gopacket.NewPacket(d[vxlanLen:], layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
	ipl, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcpl, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ipl == nil || tcpl == nil || pkt.ErrorLayer() != nil {
		s.Undecodable++
		return
	}
	s.Segments++
	if csumFold(csumAdd(0, ipl.Contents)) != 0xffff {
		s.IPBad++
	}
	ip := d[vxlanLen+ethLen:]
	ihl := int(ip[0]&0x0f) * 4
	tot := int(ipl.Length)
	if tot > len(ip) {
		s.Undecodable++
		return
	}
	seg := ip[ihl:tot]
	ps := pseudo(ipl.SrcIP.To4(), ipl.DstIP.To4(), 6, len(seg))
	switch {
	case csumFold(csumAdd(ps, seg)) == 0xffff:
		s.TCPOK++
	case binary.BigEndian.Uint16(seg[16:]) == csumFold(ps):
		s.TCPPartial++ // pseudo-header only: CHECKSUM_PARTIAL never finished
	default:
		s.TCPBad++
	}
	s.SegPayload[len(tcpl.Payload)]++
	s.PayloadBytes += len(tcpl.Payload)
	for i, c := range tcpl.Payload {
		if c != payloadByte(tcpl.Seq+uint32(i)) {
			s.PayloadBad++
			break
		}
	}
}

// tunErrors reads the device's rx frame errors (tun counts refused vnet
// headers there) from sysfs inside the namespace.
func tunErrors(ns, dev string) string {
	out, _ := run("ip", "-n", ns, "-s", "-s", "link", "show", "dev", dev)
	sc := bufio.NewScanner(strings.NewReader(out))
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	return strings.Join(lines, " | ")
}

// cpuStat is /proc/stat's first line: busy and total jiffies of the machine.
func cpuStat() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)[1:]
	for i, v := range f {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}
