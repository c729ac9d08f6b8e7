//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tunnelplane/bench/topo"
	"tunnelplane/dataplane/config"
)

// The malformed-traffic test fires thousands of hand-built bad packets at
// tunneld A's underlay address from namespace B while a checked TCP transfer
// runs through the tunnel, and requires every bad packet to be counted under
// exactly its drop reason (or, where the kernel legitimately swallows it
// first, to show up in the kernel's own counters instead), nothing valid to
// be lost, and tunneld to stay up.

const hostileCount = 200 // packets (or fragment trains) sent per kind

// Where a kind's packets must end up.
const (
	outKernel    = "(kernel)"    // dropped by A's kernel before any socket: no tunneld counter moves
	outDelivered = "(delivered)" // decapsulated and delivered to A's overlay listener
)

// How a kind's packets leave namespace B.
type sendVia int

const (
	viaRaw  sendVia = iota // whole IPv4 packets on an IPPROTO_RAW (IP_HDRINCL) socket
	viaLink                // whole IPv4 packets in Ethernet frames on an AF_PACKET socket: the only way to send what IP_HDRINCL rewrites (header checksum, total length)
	viaUDP                 // a UDP payload on an ordinary UDP socket (the kernel builds and fragments)
	viaIP                  // an IP payload on a raw socket without IP_HDRINCL (the kernel builds and fragments)
)

type hostileKind struct {
	name string
	// out is the expected ingress drop reason, or outKernel / outDelivered.
	out string
	via sendVia
	src netip.Addr // outer source for viaUDP / viaIP (default: B's underlay address)
	// pkts returns the i-th unit to send: whole IPv4 packets (viaRaw,
	// viaLink; several for a fragment train) or one payload (viaUDP, viaIP).
	pkts func(i int) [][]byte
	// snmp names a counter of A's /proc/net/snmp ("Ip.InHdrErrors") that
	// must grow by at least hostileCount: the kernel's own record of what it
	// did with the packets before tunneld could see them.
	snmp string
	why  string // shown in the table: why the outcome is what it is
}

type hostileRow struct {
	kind            hostileKind
	sent            int
	counted         float64 // delta of the expected reason (or of all ingress drops for outKernel/outDelivered)
	other           float64 // delta of all other ingress reasons
	otherReasons    string
	delivered, snmp int64
}

// TestMalformedTraffic: see the comment at hostileCount.
func TestMalformedTraffic(t *testing.T) {
	cases := []struct {
		name, encap string
		kinds       func(h *hostileEnv) []hostileKind
	}{
		{"vxlan", "  type: vxlan\n  vni: 42\n", vxlanKinds},
		{"gre-key", "  type: gre\n  key: 7\n", greKinds},
		{"ipip", "  type: ipip\n", ipipKinds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{Offloads: false})
			h := newHostileEnv(t, p, tc.encap)
			runHostile(t, h, tc.kinds(h))
		})
	}
}

// hostileEnv is a running pair of tunnelds plus B's raw senders.
type hostileEnv struct {
	p            *topo.Pair
	d            *daemon // tunneld A
	la, lb       netip.Addr
	unknown      netip.Addr // a second address of B's veth, no peer of A
	oa, ob       netip.Prefix
	macA, macB   [6]byte
	rawFD        int
	linkFD       int
	ifindexB     int
	vethA, vethB net.HardwareAddr
	arrivals     atomic.Int64 // datagrams that reached A's overlay listener (port 5300)
	encap        string       // the encap: block of both configs
}

const overlayPort = 5300 // inner UDP destination of every crafted packet

func newHostileEnv(t *testing.T, p *topo.Pair, encapBody string) *hostileEnv {
	h := &hostileEnv{
		p: p, la: p.AddrA.Addr(), lb: p.AddrB.Addr(), encap: encapBody,
		unknown: netip.MustParseAddr("10.99.0.3"),
		oa:      netip.MustParsePrefix("10.200.0.1/24"), ob: netip.MustParsePrefix("10.200.0.2/24"),
	}
	h.macA, h.macB = config.DefaultMAC(h.la), config.DefaultMAC(h.lb)
	metricsOn := "metrics:\n  listen: 127.0.0.1:9109\n"
	cfgA := strings.Replace(tunneldConfig("tun", encapBody, "", h.la, h.lb, h.oa, h.ob, "", ""), "metrics:\n  listen: \"\"\n", metricsOn, 1)
	h.d = startTunneld(t, p.A, "tp0", cfgA)
	startTunneld(t, p.B, "tp0", tunneldConfig("tun", encapBody, "", h.lb, h.la, h.ob, h.oa, "", ""))
	if err := p.B.AddAddr(p.IfB, netip.PrefixFrom(h.unknown, 24)); err != nil {
		t.Fatal(err)
	}
	ping(t, p.A, h.ob.Addr())

	la, err := p.A.Handle().LinkByName(p.IfA)
	if err != nil {
		t.Fatal(err)
	}
	lbk, err := p.B.Handle().LinkByName(p.IfB)
	if err != nil {
		t.Fatal(err)
	}
	h.vethA, h.vethB, h.ifindexB = la.Attrs().HardwareAddr, lbk.Attrs().HardwareAddr, lbk.Attrs().Index
	err = p.B.Do(func() error {
		var err error
		if h.rawFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(h.rawFD, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return err
		}
		// Protocol 0: send only, never receive.
		h.linkFD, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	})
	if err != nil {
		t.Fatalf("raw sockets in B: %v", err)
	}
	t.Cleanup(func() { unix.Close(h.rawFD); unix.Close(h.linkFD) })

	_, pc := listenIn(t, p.A, "udp", netip.AddrPortFrom(h.oa.Addr(), overlayPort).String())
	t.Cleanup(func() { pc.Close() })
	// The oversize kinds put 200 reassembled 9 KB datagrams into this
	// socket while TCP saturates both cores: with the default buffer a few
	// overflow (Udp.RcvbufErrors), a loss of the test's, not tunneld's.
	if rc, err := pc.(*net.UDPConn).SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) })
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			h.arrivals.Add(1)
		}
	}()
	return h
}

// runHostile injects every kind while TCP transfers run A->B, then checks
// the counters, the transfers and tunneld's health.
func runHostile(t *testing.T, h *hostileEnv, kinds []hostileKind) {
	stop := make(chan struct{})
	resc := make(chan injectResult, 1)
	go func() { resc <- h.inject(kinds, stop) }()
	var res injectResult
	finished := false
	t.Cleanup(func() { // a failed transfer must not leave the injector running into the teardown
		close(stop)
		if !finished {
			<-resc
		}
	})
	transfers := 0
	for !finished {
		tcpTransfer(t, h.p.A, h.p.B, h.ob.Addr(), 4<<20)
		transfers++
		select {
		case res = <-resc:
			finished = true
		default:
		}
	}
	if res.err != nil {
		t.Fatalf("injection: %v", res.err)
	}
	// Traffic still flows both ways after the storm.
	tcpTransfer(t, h.p.B, h.p.A, h.oa.Addr(), 1<<20)
	udpTransfer(t, h.p.A, h.p.B, h.ob.Addr(), 200)

	select {
	case err := <-h.d.done:
		h.d.done <- err
		t.Fatalf("tunneld A exited during the storm: %v", err)
	default:
	}
	if body, err := httpGetIn(h.p.A, "/healthz"); err != nil || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %q %v", body, err)
	}

	t.Logf("%d checked TCP transfers of 4 MiB A->B overlapped the injection", transfers)
	t.Logf("%-40s %-16s %5s %8s %5s %6s  %s", "kind", "outcome", "sent", "counted", "other", "kernel", "why")
	for _, r := range res.rows {
		k := r.kind
		snmp := "-"
		if k.snmp != "" {
			snmp = strconv.FormatInt(r.snmp, 10)
		}
		counted := strconv.FormatFloat(r.counted, 'f', -1, 64)
		if k.out == outDelivered {
			counted = strconv.FormatInt(r.delivered, 10) + "rx"
		}
		t.Logf("%-40s %-16s %5d %8s %5v %6s  %s", k.name, k.out, r.sent, counted, r.other, snmp, k.why)
	}
	for _, r := range res.rows {
		k := r.kind
		switch k.out {
		case outKernel:
			if r.counted != 0 {
				t.Errorf("%s: the kernel should have dropped these, but tunneld counted %v ingress drops (%s)", k.name, r.counted, r.otherReasons)
			}
		case outDelivered:
			if r.delivered != int64(r.sent) || r.counted != 0 {
				t.Errorf("%s: %d of %d delivered, %v ingress drops (%s)", k.name, r.delivered, r.sent, r.counted, r.otherReasons)
			}
		default:
			if r.counted != float64(r.sent) || r.other != 0 {
				t.Errorf("%s: %s counted %v of %d; other reasons: %s", k.name, k.out, r.counted, r.sent, r.otherReasons)
			}
			if r.delivered != 0 {
				t.Errorf("%s: %d of these reached A's overlay listener", k.name, r.delivered)
			}
		}
		if k.snmp != "" && r.snmp < int64(r.sent) {
			t.Errorf("%s: A's kernel counter %s grew by %d, want >= %d", k.name, k.snmp, r.snmp, r.sent)
		}
	}
	// The exported counters agree with what the rows add up to (scraped
	// with the shared helpers this time).
	text := scrape(t, h.p.A)
	if v := metricValue(t, text, "tunneld_backend_info", `backend="userspace"`); v != 1 {
		t.Fatalf("tunneld A does not run the userspace data plane: the test would measure the kernel")
	}
	for _, reason := range []string{"unknown_peer", "spoofed_inner"} {
		var want float64
		for _, r := range res.rows {
			if r.kind.out == reason {
				want += r.counted
			}
		}
		if got := metricValue(t, text, "tunneld_drops_total", `reason="`+reason+`"`, `direction="ingress"`); got < want {
			t.Errorf("tunneld_drops_total{reason=%q} = %v, want >= %v", reason, got, want)
		}
	}
}

type injectResult struct {
	rows []hostileRow
	err  error
}

// inject sends the kinds one after the other, each paced and followed by a
// wait until tunneld's counters (or the kernel's) have settled, so that
// each kind's delta is its own. It runs on its own goroutine: no t here.
func (h *hostileEnv) inject(kinds []hostileKind, stop <-chan struct{}) injectResult {
	var res injectResult
	for _, k := range kinds {
		select {
		case <-stop:
			res.err = fmt.Errorf("stopped")
			return res
		default:
		}
		before, err := h.dropsIn()
		if err != nil {
			res.err = err
			return res
		}
		snmpBefore, err := snmpIn(h.p.A)
		if err != nil {
			res.err = err
			return res
		}
		arrBefore := h.arrivals.Load()
		if err := h.send(k); err != nil {
			res.err = fmt.Errorf("%s: %w", k.name, err)
			return res
		}
		// Settle: tunneld counts per batch; give it up to 5 s to reach the
		// expected figure, then a little longer to catch any excess.
		deadline := time.Now().Add(5 * time.Second)
		var after map[string]float64
		var snmpAfter map[string]int64
		for {
			if after, err = h.dropsIn(); err != nil {
				res.err = err
				return res
			}
			if snmpAfter, err = snmpIn(h.p.A); err != nil {
				res.err = err
				return res
			}
			var done bool
			switch k.out {
			case outKernel:
				done = k.snmp == "" || snmpAfter[k.snmp]-snmpBefore[k.snmp] >= hostileCount
			case outDelivered:
				done = h.arrivals.Load()-arrBefore >= hostileCount
			default:
				done = after[k.out]-before[k.out] >= hostileCount
			}
			if done || time.Now().After(deadline) {
				break
			}
			select {
			case <-stop:
				res.err = fmt.Errorf("stopped")
				return res
			case <-time.After(50 * time.Millisecond):
			}
		}
		time.Sleep(200 * time.Millisecond)
		if after, err = h.dropsIn(); err != nil {
			res.err = err
			return res
		}
		if snmpAfter, err = snmpIn(h.p.A); err != nil {
			res.err = err
			return res
		}
		row := hostileRow{kind: k, sent: hostileCount, delivered: h.arrivals.Load() - arrBefore}
		if k.snmp != "" {
			row.snmp = snmpAfter[k.snmp] - snmpBefore[k.snmp]
		}
		var reasons []string
		for r, v := range after {
			d := v - before[r]
			if d == 0 {
				continue
			}
			if r == k.out {
				row.counted = d
				continue
			}
			if k.out == outKernel || k.out == outDelivered {
				row.counted += d
			} else {
				row.other += d
			}
			reasons = append(reasons, fmt.Sprintf("%s+%v", r, d))
		}
		row.otherReasons = strings.Join(reasons, ",")
		res.rows = append(res.rows, row)
	}
	return res
}

// send emits hostileCount units of k from namespace B, paced so that
// neither B's nor A's socket buffers overflow (an overflow would be a loss
// before tunneld, and the counts could not be exact).
func (h *hostileEnv) send(k hostileKind) error {
	src := k.src
	if !src.IsValid() {
		src = h.lb
	}
	var emit func([]byte) error
	switch k.via {
	case viaRaw:
		to := &unix.SockaddrInet4{Addr: h.la.As4()}
		emit = func(b []byte) error { return unix.Sendto(h.rawFD, b, 0, to) }
	case viaLink:
		to := &unix.SockaddrLinklayer{Protocol: htons16(unix.ETH_P_IP), Ifindex: h.ifindexB, Halen: 6}
		copy(to.Addr[:], h.vethA)
		emit = func(b []byte) error {
			f := make([]byte, 0, 14+len(b))
			f = append(append(append(f, h.vethA...), h.vethB...), 0x08, 0x00)
			return unix.Sendto(h.linkFD, append(f, b...), 0, to)
		}
	case viaUDP, viaIP:
		var fd int
		err := h.p.B.Do(func() error {
			var err error
			if k.via == viaUDP {
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			} else {
				fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, int(h.rawProto()))
			}
			if err != nil {
				return err
			}
			return unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()})
		})
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: h.la.As4()}
		if k.via == viaUDP {
			to.Port = 4789
		}
		emit = func(b []byte) error { return unix.Sendto(fd, b, 0, to) }
	}
	for i := range hostileCount {
		for _, b := range k.pkts(i) {
			if err := emit(b); err != nil {
				return err
			}
		}
		if i%10 == 9 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// rawProto is the IP protocol of the tunnel under test (for viaIP).
func (h *hostileEnv) rawProto() byte {
	switch {
	case strings.Contains(h.encap, "gre"):
		return 47
	case strings.Contains(h.encap, "ipip"):
		return 4
	}
	return 17
}

// dropsIn scrapes A's ingress drops by reason. Unlike scrape and
// metricValue it reports errors instead of failing the test, because the
// injector runs off the test goroutine.
func (h *hostileEnv) dropsIn() (map[string]float64, error) {
	text, err := httpGetIn(h.p.A, "/metrics")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "tunneld_drops_total{") || !strings.Contains(line, `direction="ingress"`) {
			continue
		}
		_, rest, ok := strings.Cut(line, `reason="`)
		if !ok {
			continue
		}
		reason, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("bad metric line %q", line)
		}
		m[reason] += v
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no tunneld_drops_total series in /metrics")
	}
	return m, nil
}

// httpGetIn fetches path from tunneld's metrics listener inside ns.
func httpGetIn(ns *topo.NS, path string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ns, ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://127.0.0.1:9109" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// snmpIn reads ns's /proc/net/snmp and snmp6 as "Ip.InHdrErrors" -> value.
func snmpIn(ns *topo.NS) (map[string]int64, error) { return ns.SNMP() }

func htons16(v uint16) uint16 { return v<<8 | v>>8 }
