package dataplane

// Sending VXLAN and IP-in-UDP super-packets whole (underlay.tunnel_gso;
// the TAP, its header and what it bypasses are in
// dataplane/underlay/tnltap.go).
//
// With the TAP on, the device reader reads each packet as the kernel
// wrote it (device.SuperReader): a TCP super-packet stays whole in a large
// buffer, gets its tunnel headers as any packet does (VXLAN and inner
// Ethernet; none for IP-in-UDP), then the outer UDP, IPv4 and Ethernet
// headers and the 24-byte tunnel virtio header, and goes to the TAP in one write; the kernel segments it
// on the way out. Everything else (plain packets, UDP super-packets,
// super-packets for a peer whose next hop is not resolved yet or whose
// path MTU their segments exceed) is split as without the TAP and sent by
// the sockets, so the TAP is only ever a shortcut.
//
// The outer destination MAC is the next hop's (nexthop.go).

import (
	"errors"
	"os"
	"sync/atomic"

	"tunnelplane/dataplane/config"
	"tunnelplane/dataplane/device"
	"tunnelplane/dataplane/netcfg"
	"tunnelplane/dataplane/stats"
	"tunnelplane/dataplane/underlay"
)

// TunnelTAP is the UDP-tunnel GSO TAP of a data plane (Parts.TunnelTAP).
type TunnelTAP struct {
	TAP  *underlay.TunnelTAP // its queues serve Parts.Devices, one each
	Link netcfg.UnderlayLink // where its frames leave (netcfg.RedirectTAP)
}

// tunnelGSO is the data plane's state for the TAP.
type tunnelGSO struct {
	tap   *underlay.TunnelTAP
	hops  *nextHops
	frame underlay.TunnelFrame // the fields every frame shares
	// ports[q] is the outer source port of queue q's frames: its send
	// socket's, so that a flow's packets keep one outer 4-tuple whichever
	// way they leave (the peer's SO_REUSEPORT group picks the reader by
	// it, and two would reorder the flow).
	ports []uint16
	off   atomic.Bool // the kernel refused the TAP's frames: sockets only
}

func newTunnelGSO(cfg *config.Config, t *TunnelTAP, hops *nextHops, queues []*queueSet) *tunnelGSO {
	g := &tunnelGSO{tap: t.TAP, hops: hops}
	for _, q := range queues {
		port := cfg.Encap.Port
		if s, ok := q.send.(interface{ LocalPort() uint16 }); ok && s.LocalPort() != 0 {
			port = s.LocalPort()
		}
		g.ports = append(g.ports, port)
	}
	g.frame = underlay.TunnelFrame{
		SrcMAC: t.Link.MAC, Src: cfg.Underlay.Local,
		DstPort: cfg.Encap.Port,
		TTL:     cfg.Encap.TTL,
		// As the sockets: DF unless cleared (IP_PMTUDISC_WANT sets it).
		DF: cfg.Encap.DF != 0,
	}
	if cfg.Encap.TOS >= 0 {
		g.frame.TOS = uint8(cfg.Encap.TOS)
	}
	return g
}

// wants reports whether the packet the device handed over with h goes
// the TAP's way (a TCP super-packet with its checksum left to the
// device), as far as its header says.
func (g *tunnelGSO) wants(h *device.VirtioHdr) bool {
	if g.off.Load() || h.Flags&device.VirtioNeedsCsum == 0 || h.GSOSize == 0 {
		return false
	}
	switch h.GSOType &^ device.VirtioGSOECN {
	case device.VirtioGSOTCPv4, device.VirtioGSOTCPv6:
		return true
	}
	return false
}

// write writes one frame (a packet's bytes from its virtio header on) to
// TAP queue q and counts it in c. The kernel's refusal of frames, or a TAP
// gone underneath, turns the TAP off (the sockets take over) rather than
// stopping forwarding: write returns that error once, for the caller to
// report.
func (g *tunnelGSO) write(q int, frame []byte, c *stats.Counters) error {
	err := g.tap.Write(q, frame)
	if err == nil {
		c.Supers.ObserveIn(&stats.SuperBuckets, len(frame)-underlay.TunnelFrameOverhead, 1)
		return nil
	}
	c.Drop(stats.DropTunnelGSOWrite)
	if (!underlay.IsTransient(err) || errors.Is(err, os.ErrClosed)) && g.off.CompareAndSwap(false, true) {
		return err
	}
	return nil
}
