//go:build linux

package main

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"tunnelplane/bench/topo"
)

// Fault tests: a peer that dies and comes back, a device deleted under the
// daemon, ICMP errors from a peer with nothing listening, and SIGTERM.

// faultPair is two tunnelds forwarding between namespaces A and B.
type faultPair struct {
	p      *topo.Pair
	a, b   *daemon
	cfgB   string
	oa, ob netip.Prefix
}

func startFaultPair(t *testing.T, offloads bool, mode, encapBody string) *faultPair {
	t.Helper()
	p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
	topo.NoChecksumErrors(t, p.A, p.B)
	f := &faultPair{p: p, oa: netip.MustParsePrefix("10.200.0.1/24"), ob: netip.MustParsePrefix("10.200.0.2/24")}
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	f.cfgB = tunneldConfig(mode, encapBody, "", lb, la, f.ob, f.oa, "", "")
	f.a = startTunneld(t, p.A, "tp0", tunneldConfig(mode, encapBody, "", la, lb, f.oa, f.ob, "", ""))
	f.b = startTunneld(t, p.B, "tp0", f.cfgB)
	ping(t, p.A, f.ob.Addr())
	return f
}

// waitExit waits up to d for the daemon to exit; the exit status stays
// available to the cleanup's stop.
func (d *daemon) waitExit(timeout time.Duration) (err error, exited bool) {
	select {
	case err := <-d.done:
		d.done <- err
		return err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// requireRunning fails the test if the daemon has exited.
func requireRunning(t *testing.T, d *daemon, who string) {
	t.Helper()
	if err, exited := d.waitExit(0); exited {
		t.Fatalf("%s exited: %v\n%s", who, err, d.log)
	}
}

// pingWithin retries single pings from ns to dst until one is answered or
// the time is up; it returns how long that took.
func pingWithin(t *testing.T, ns *topo.NS, dst netip.Addr, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var out string
	var err error
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		out, err = ns.PingWith(ctx, dst, topo.PingOptions{Count: 1, Timeout: time.Second})
		cancel()
		if err == nil {
			return time.Since(start)
		}
	}
	t.Fatalf("no answer from %s within %v: %v\n%s", dst, within, err, out)
	return 0
}

// waitLinkGone waits until ns has no link called name.
func waitLinkGone(ns *topo.NS, name string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		_, err := ns.Handle().LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var faultEncaps = []struct{ name, mode, encap string }{
	{"tun/vxlan", "tun", "  type: vxlan\n  vni: 42\n"},
	{"tun/gre-key", "tun", "  type: gre\n  key: 7\n"},
	{"tun/ipip", "tun", "  type: ipip\n"},
}

// TestPeerRestart kills B's tunneld with SIGKILL (no cleanup at all) and
// starts a new one with the same config: A, untouched, forwards again
// within seconds. A keeps no per-peer state that a restart could break.
func TestPeerRestart(t *testing.T) { bothOffloads(t, peerRestartCases) }

func peerRestartCases(t *testing.T, offloads bool) {
	for _, tc := range faultEncaps {
		t.Run(tc.name, func(t *testing.T) {
			f := startFaultPair(t, offloads, tc.mode, tc.encap)
			pidA := f.a.cmd.Process.Pid

			if err := f.b.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			if _, exited := f.b.waitExit(5 * time.Second); !exited {
				t.Fatal("tunneld B survived SIGKILL for 5s")
			}
			// The TUN device is not persistent: it goes with the last fd.
			if !waitLinkGone(f.p.B, "tp0", 5*time.Second) {
				t.Fatal("tp0 in B outlived its SIGKILLed tunneld by 5s (a persistent device would block the restart)")
			}
			startTunneld(t, f.p.B, "tp0", f.cfgB)
			took := pingWithin(t, f.p.A, f.ob.Addr(), 10*time.Second)
			t.Logf("A -> B answered %v after B's restart", took.Round(time.Millisecond))
			ping(t, f.p.B, f.oa.Addr())
			tcpTransfer(t, f.p.A, f.p.B, f.ob.Addr(), 1<<20)
			requireRunning(t, f.a, "tunneld A")
			if f.a.cmd.Process.Pid != pidA {
				t.Fatal("tunneld A was replaced")
			}
		})
	}
}

// TestDeviceDeleted deletes A's device under the running tunneld: the data
// plane cannot forward any more, so tunneld must exit non-zero within a few
// seconds and say why in its log (a supervisor then restarts it). In TUN
// mode the kernel fails the queue fds with EBADFD, which wireguard-go's tun
// reports as os.ErrClosed, the error of tunneld's own shutdown: the pipeline
// must still take it for a failure (it once stayed up for good, logging
// nothing, with /healthz ok).
func TestDeviceDeleted(t *testing.T) { bothOffloads(t, deviceDeletedCases) }

func deviceDeletedCases(t *testing.T, offloads bool) {
	for _, tc := range []struct{ name, mode, encap string }{
		{"tun/vxlan", "tun", "  type: vxlan\n  vni: 42\n"},
		{"tun/gre", "tun", "  type: gre\n"},
		{"tap/vxlan", "tap", "  type: vxlan\n  vni: 42\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := topo.NewPair(t, topo.PairOptions{Offloads: offloads})
			topo.NoChecksumErrors(t, p.A, p.B)
			la, lb := p.AddrA.Addr(), p.AddrB.Addr()
			oa, ob := netip.MustParsePrefix("10.200.0.1/24"), netip.MustParsePrefix("10.200.0.2/24")
			cfgA := withMetrics(tunneldConfig(tc.mode, tc.encap, "", la, lb, oa, ob, "", ""))
			a := startTunneld(t, p.A, "tp0", cfgA)
			b := startTunneld(t, p.B, "tp0", tunneldConfig(tc.mode, tc.encap, "", lb, la, ob, oa, "", ""))
			ping(t, p.A, ob.Addr())

			link, err := p.A.Handle().LinkByName("tp0")
			if err != nil {
				t.Fatal(err)
			}
			if err := p.A.Handle().LinkDel(link); err != nil {
				t.Fatalf("delete tp0: %v", err)
			}
			err, exited := a.waitExit(5 * time.Second)
			if !exited {
				health, herr := httpGetIn(p.A, "/healthz")
				t.Fatalf("tunneld A still runs 5s after its device was deleted; /healthz: %q %v\n%s",
					strings.TrimSpace(health), herr, a.log)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Fatalf("tunneld A exited with %v, want a non-zero exit status\n%s", err, a.log)
			}
			log := a.log.String()
			if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "data plane failed") {
				t.Fatalf("no clear error in the log of tunneld A:\n%s", log)
			}
			t.Logf("exit status %d; log:\n%s", ee.ExitCode(), errorLines(log))
			requireRunning(t, b, "tunneld B") // B is unaffected
		})
	}
}

func errorLines(log string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestICMPErrorsDoNotStopReceive stops B's tunneld so that B's kernel
// answers A's tunnel packets with ICMP destination unreachable (port
// unreachable for VXLAN, protocol unreachable for GRE and IPIP) for a few
// seconds, then starts it again: A's receive loop must have survived the
// errors and forward again.
//
// On the kernel this was written on (6.18) none of these ICMP errors
// reaches tunneld's sockets as an error: its UDP sockets are unconnected
// and do not set IP_RECVERR, so the kernel ignores port unreachable for
// them, and its raw sockets showed no SO_ERROR after protocol unreachable.
// The test checks that the ICMPs did arrive at A, so that it keeps guarding
// the receive loop if that ever changes (IP_RECVERR, connected sockets,
// another kernel); the loop itself treats ECONNREFUSED and friends as
// transient (isTransient).
func TestICMPErrorsDoNotStopReceive(t *testing.T) { bothOffloads(t, icmpErrorsCases) }

func icmpErrorsCases(t *testing.T, offloads bool) {
	for _, tc := range faultEncaps {
		t.Run(tc.name, func(t *testing.T) {
			f := startFaultPair(t, offloads, tc.mode, tc.encap)
			if err := f.b.stop(t); err != nil {
				t.Fatalf("stop tunneld B: %v", err)
			}
			before, err := snmpIn(f.p.A)
			if err != nil {
				t.Fatal(err)
			}
			// About 3 s of tunnel traffic into a peer with nothing listening.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := f.p.A.PingWith(ctx, f.ob.Addr(), topo.PingOptions{Count: 30, Interval: 100 * time.Millisecond, Timeout: time.Second})
			cancel()
			if err == nil {
				t.Fatalf("B answered with its tunneld stopped:\n%s", out)
			}
			after, err := snmpIn(f.p.A)
			if err != nil {
				t.Fatal(err)
			}
			unreach := after["Icmp.InDestUnreachs"] - before["Icmp.InDestUnreachs"]
			if unreach == 0 {
				t.Fatal("A received no ICMP destination unreachable: the test did not test anything")
			}
			t.Logf("A received %d ICMP destination unreachable while B's tunneld was down", unreach)
			requireRunning(t, f.a, "tunneld A")

			startTunneld(t, f.p.B, "tp0", f.cfgB)
			took := pingWithin(t, f.p.A, f.ob.Addr(), 10*time.Second)
			t.Logf("A -> B answered %v after B's restart", took.Round(time.Millisecond))
			tcpTransfer(t, f.p.A, f.p.B, f.ob.Addr(), 1<<20)
			tcpTransfer(t, f.p.B, f.p.A, f.oa.Addr(), 1<<20)
			requireRunning(t, f.a, "tunneld A")
		})
	}
}

// TestSIGTERMRemovesDevice: SIGTERM makes tunneld exit 0 within a few
// seconds, and the device it created is gone from the namespace.
func TestSIGTERMRemovesDevice(t *testing.T) { bothOffloads(t, sigtermCases) }

func sigtermCases(t *testing.T, offloads bool) {
	for _, tc := range []struct{ name, mode, encap string }{
		{"tun/vxlan", "tun", "  type: vxlan\n  vni: 42\n"},
		{"tun/gre", "tun", "  type: gre\n"},
		{"tap/vxlan", "tap", "  type: vxlan\n  vni: 42\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFaultPair(t, offloads, tc.mode, tc.encap)
			tcpTransfer(t, f.p.A, f.p.B, f.ob.Addr(), 1<<20) // stop a daemon that has carried traffic
			start := time.Now()
			if err := f.a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			err, exited := f.a.waitExit(5 * time.Second)
			if !exited {
				t.Fatalf("tunneld A still runs 5s after SIGTERM\n%s", f.a.log)
			}
			if err != nil {
				t.Fatalf("tunneld A exited with %v after SIGTERM, want status 0\n%s", err, f.a.log)
			}
			if !waitLinkGone(f.p.A, "tp0", 0) {
				t.Fatalf("tp0 still exists in A after tunneld exited")
			}
			t.Logf("exited 0 in %v, tp0 removed", time.Since(start).Round(time.Millisecond))
			requireRunning(t, f.b, "tunneld B")
		})
	}
}
