package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tunnelplane/bench/topo"

	"golang.org/x/sys/unix"
)

// tunneldBin is built once by TestMain for the integration tests.
var tunneldBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tunneld-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tunneldBin = filepath.Join(dir, "tunneld")
	build := exec.Command("go", "build", "-o", tunneldBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // privs.Drop needs a binary without cgo
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tunneld: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a tunneld process running inside a namespace.
type daemon struct {
	cmd  *exec.Cmd
	log  *topo.LogBuffer
	done chan error
}

// lines returns the lines of the daemon's log that contain any of subs:
// an excerpt a failing subtest prints first, where a CI report that shows
// only the start of the output still has it.
func (d *daemon) lines(subs ...string) string {
	var b strings.Builder
	for _, l := range strings.Split(d.log.String(), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				b.WriteString(l)
				b.WriteByte('\n')
				break
			}
		}
	}
	return b.String()
}

// startTunneld runs tunneld with the given config inside ns, waits until
// it is ready (its device exists and it logged "forwarding": addresses,
// routes and the metrics listener are set up by then; the device alone
// appears before its addresses, and a ping sent at once fails with
// "Network is unreachable"), and stops it (SIGTERM, bounded wait) at
// cleanup. The daemon's log is printed when the test failed.
func startTunneld(t *testing.T, ns *topo.NS, devName, yaml string) *daemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), ns.Name+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &daemon{log: &topo.LogBuffer{}, done: make(chan error, 1)}
	d.cmd = ns.Command(context.Background(), tunneldBin, "--config", path)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("tunneld in %s:\n%s", ns.Name, d.log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ns.Handle().LinkByName(devName); err == nil && strings.Contains(d.log.String(), "msg=forwarding ") {
			return d
		}
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("tunneld in %s exited early: %v\n%s", ns.Name, err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunneld in %s: not forwarding on %s within 10s\n%s", ns.Name, devName, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (d *daemon) stop(t *testing.T) error {
	if d.cmd.Process == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		t.Errorf("tunneld did not stop within 10s of SIGTERM")
		return <-d.done
	}
}

// listenIn opens a listener inside ns; the socket stays in ns.
func listenIn(t *testing.T, ns *topo.NS, network, addr string) (l net.Listener, pc net.PacketConn) {
	t.Helper()
	err := ns.Do(func() error {
		var err error
		if network == "udp" {
			pc, err = net.ListenPacket(network, addr)
		} else {
			l, err = net.Listen(network, addr)
		}
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns.Name, err)
	}
	return l, pc
}

func dialIn(ns *topo.NS, ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = ns.Do(func() error {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// tcpTransfer sends size random bytes from ns `from` to dst:port in ns `to`
// over TCP and checks they arrive unchanged.
func tcpTransfer(t *testing.T, from, to *topo.NS, dst netip.Addr, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ap := netip.AddrPortFrom(dst, 5201)
	l, _ := listenIn(t, to, "tcp", ap.String())
	defer l.Close()
	got := make(chan [32]byte, 1)
	gotErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			gotErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil || n != int64(size) {
			gotErr <- fmt.Errorf("server read %d of %d bytes: %v", n, size, err)
			return
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	c, err := dialIn(from, ctx, "tcp", ap.String())
	if err != nil {
		t.Fatalf("dial %s: %v", ap, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(data); err != nil {
		c.Close()
		t.Fatalf("write: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	defer c.Close()
	select {
	case sum := <-got:
		if sum != want {
			t.Fatalf("TCP %d bytes: content differs", size)
		}
	case err := <-gotErr:
		t.Fatalf("TCP: %v", err)
	case <-ctx.Done():
		t.Fatalf("TCP transfer of %d bytes timed out", size)
	}
}

// udpConns opens a UDP receiver on ap in `to` and a sender connected to
// it from `from`, both closed at cleanup.
func udpConns(t *testing.T, from, to *topo.NS, ap netip.AddrPort) (net.PacketConn, net.Conn) {
	t.Helper()
	_, pc := listenIn(t, to, "udp", ap.String())
	t.Cleanup(func() { pc.Close() })
	// The test is about the tunnel, not this socket: on a loaded machine
	// the default buffer overflows before the reader is scheduled.
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	c, err := dialIn(from, context.Background(), "udp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return pc, c
}

// udpTransfer sends count datagrams and requires nearly all of them (the
// path is lossless, but UDP promises nothing: allow 5%).
func udpTransfer(t *testing.T, from, to *topo.NS, dst netip.Addr, count int) {
	t.Helper()
	pc, c := udpConns(t, from, to, netip.AddrPortFrom(dst, 5202))
	recvd := make(chan int, 1)
	go func() {
		buf := make([]byte, 2048)
		n := 0
		for {
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if m == 1000 && buf[0] == 0xAB {
				n++
			}
			if n == count {
				break
			}
		}
		recvd <- n
	}()
	msg := bytes.Repeat([]byte{0xAB}, 1000)
	for i := 0; i < count; i++ {
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("udp write: %v", err)
		}
		if i%10 == 9 {
			time.Sleep(time.Millisecond)
		}
	}
	if n := <-recvd; n < count*95/100 {
		t.Fatalf("UDP: %d of %d datagrams arrived", n, count)
	}
}

func ping(t *testing.T, ns *topo.NS, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := ns.Ping(ctx, dst, 3); err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", dst, ns.Name, err, out)
	}
}

// udpGSOTransfer sends count UDP datagrams of size bytes from ns `from` to
// dst in ns `to` with UDP_SEGMENT (the sender's kernel keeps each train
// of segs datagrams as one GSO packet as long as it can) and checks that
// every datagram arrives as sent: the same sizes and contents, in the
// same number. Over a kernel vxlan with offloads on, such a train crosses
// the underlay as one datagram whose boundaries only the kernel's
// reported segment size can restore.
func udpGSOTransfer(t *testing.T, from, to *topo.NS, dst netip.Addr, size, segs, trains int) {
	t.Helper()
	pc, c := udpConns(t, from, to, netip.AddrPortFrom(dst, 5203))
	rc, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, size) })
	if serr != nil {
		t.Skipf("UDP_SEGMENT: %v", serr)
	}
	want := segs * trains
	type result struct{ n, bad int }
	recvd := make(chan result, 1)
	go func() {
		buf := make([]byte, 65536)
		var r result
		for r.n+r.bad < want {
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if m == size && buf[0] == byte(r.n+r.bad) && buf[m-1] == 0xCD {
				r.n++
			} else {
				r.bad++
			}
		}
		recvd <- r
	}()
	train := make([]byte, size*segs)
	for k := 0; k < trains; k++ {
		for i := range segs {
			d := train[i*size : (i+1)*size]
			for j := range d {
				d[j] = 0xCD
			}
			d[0] = byte(k*segs + i)
		}
		if _, err := c.Write(train); err != nil {
			t.Fatalf("udp gso write: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	r := <-recvd
	if r.bad > 0 || r.n < want*95/100 {
		t.Fatalf("UDP GSO: %d of %d datagrams arrived as sent, %d with another size or content", r.n, want, r.bad)
	}
}

// bothOffloads runs fn as the subtests offloads-on (the underlay veth
// offloads at the kernel's default: partial checksums and uncut GSO
// super-packets arrive) and offloads-off, as every interop test must. The
// two build their own namespaces and mostly wait (ping intervals, timeouts,
// sleeps between reloads), so they run side by side: the suite grows by the
// longer of the two, not by both (about 50 s less for the tests using this).
func bothOffloads(t *testing.T, fn func(t *testing.T, offloads bool)) {
	t.Helper()
	for _, offloads := range []bool{true, false} {
		t.Run("offloads-"+onOff(offloads), func(t *testing.T) {
			t.Parallel()
			fn(t, offloads)
		})
	}
}
