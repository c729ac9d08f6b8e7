package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"tunnelplane/bench/topo"
)

// Kind is how a scenario carries traffic between the two namespaces.
type Kind int

const (
	KindDirect  Kind = iota // straight over the veth
	KindKernel              // kernel vxlan devices on both sides
	KindTunneld             // tunneld on both sides
	// KindMixed: tunneld on one side (TunneldSide), the kernel's vxlan on
	// the other: the interop case, where the kernel sends partial
	// checksums and, with the veth offloads on, uncut GSO super-packets.
	KindMixed
	// KindOVS: Open vSwitch's userspace datapath (netdev) with a vxlan
	// port on both sides: the alternative a user picks when the kernel has
	// neither the vxlan nor the openvswitch module.
	KindOVS
)

// Scenario is one way of connecting namespace A to namespace B.
type Scenario struct {
	Name  string
	Kind  Kind
	Mode  string // tunneld device mode: tun | tap
	Encap string // tunneld encap: block body
	// TunneldSide is the namespace tunneld runs in for KindMixed: "a"
	// (the iperf3 client: tunneld sends the data, the kernel the ACKs) or
	// "b" (tunneld receives the kernel's data).
	TunneldSide string
	// TunnelGSO runs tunneld with underlay.tunnel_gso: on (VXLAN
	// super-packets leave whole through the UDP-tunnel GSO TAP).
	TunnelGSO bool
	// PacketSend runs tunneld with underlay.raw_send: packet (raw-IP
	// tunnels send through packet sockets).
	PacketSend bool
	// KernelPath runs tunneld with underlay.kernel_path: on (the
	// in-kernel fast path carries the peers' IPv4 traffic; tunneld the
	// rest).
	KernelPath bool
}

// tunneldConfig applies the scenario's underlay choices to a rendered
// config.
func (sc Scenario) tunneldConfig(cfg string) string {
	if sc.TunnelGSO {
		cfg = strings.Replace(cfg, "underlay:\n", "underlay:\n  tunnel_gso: on\n", 1)
	}
	if sc.PacketSend {
		cfg = strings.Replace(cfg, "underlay:\n", "underlay:\n  raw_send: packet\n", 1)
	}
	if sc.KernelPath {
		cfg = strings.Replace(cfg, "underlay:\n", "underlay:\n  kernel_path: on\n", 1)
	}
	return cfg
}

// Baseline is the scenario every ratio is taken against.
const Baseline = "kernel-vxlan"

// Scenarios lists every scenario in the order tunbench runs them.
var Scenarios = []Scenario{
	{Name: "direct", Kind: KindDirect},
	{Name: "kernel-vxlan", Kind: KindKernel},
	{Name: "ovs-vxlan", Kind: KindOVS},
	{Name: "tunneld-vxlan", Kind: KindTunneld, Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n"},
	{Name: "tunneld-vxlan-gso", Kind: KindTunneld, Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n", TunnelGSO: true},
	{Name: "tunneld-ipip", Kind: KindTunneld, Mode: "tun", Encap: "  type: ipip\n"},
	{Name: "tunneld-ipip-pkt", Kind: KindTunneld, Mode: "tun", Encap: "  type: ipip\n", PacketSend: true},
	{Name: "tunneld-gre", Kind: KindTunneld, Mode: "tun", Encap: "  type: gre\n"},
	{Name: "tunneld-gre-pkt", Kind: KindTunneld, Mode: "tun", Encap: "  type: gre\n", PacketSend: true},
	{Name: "tunneld-ipudp", Kind: KindTunneld, Mode: "tun", Encap: "  type: ipudp\n"},
	{Name: "tunneld-ipudp-gso", Kind: KindTunneld, Mode: "tun", Encap: "  type: ipudp\n", TunnelGSO: true},
	{Name: "tunneld-vxlan-tap", Kind: KindTunneld, Mode: "tap", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n"},
	{Name: "tunneld-vxlan-kpath", Kind: KindTunneld, Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n", KernelPath: true},
	{Name: "tunneld-ipip-kpath", Kind: KindTunneld, Mode: "tun", Encap: "  type: ipip\n", KernelPath: true},
	{Name: "tunneld-gre-kpath", Kind: KindTunneld, Mode: "tun", Encap: "  type: gre\n", KernelPath: true},
	{Name: "tunneld-to-kernel", Kind: KindMixed, TunneldSide: "a", Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n"},
	{Name: "tunneld-gso-to-kernel", Kind: KindMixed, TunneldSide: "a", Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n", TunnelGSO: true},
	{Name: "kernel-to-tunneld", Kind: KindMixed, TunneldSide: "b", Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n"},
	{Name: "kpath-to-kernel", Kind: KindMixed, TunneldSide: "a", Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n", KernelPath: true},
	{Name: "kernel-to-kpath", Kind: KindMixed, TunneldSide: "b", Mode: "tun", Encap: "  type: vxlan\n  vni: 42\n  port: 4789\n", KernelPath: true},
}

// ScenarioNames returns the names of all scenarios.
func ScenarioNames() []string {
	var s []string
	for _, sc := range Scenarios {
		s = append(s, sc.Name)
	}
	return s
}

// LookupScenarios resolves a comma-separated list ("all" or empty: every
// scenario), keeping the canonical order and dropping duplicates.
func LookupScenarios(list string) ([]Scenario, error) {
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return Scenarios, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		found := false
		for _, sc := range Scenarios {
			if sc.Name == n {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(ScenarioNames(), ", "))
		}
		want[n] = true
	}
	var out []Scenario
	for _, sc := range Scenarios {
		if want[sc.Name] {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenarios selected")
	}
	return out, nil
}

// The overlay addresses used by every tunnel scenario.
var (
	OverlayA = netip.MustParsePrefix("10.200.0.1/24")
	OverlayB = netip.MustParsePrefix("10.200.0.2/24")
)

// Fixed MACs of the kernel vxlan devices.
var (
	macA = [6]byte{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}
	macB = [6]byte{0x02, 0x00, 0x00, 0x00, 0x02, 0x02}
)

// KernelVXLANMTU is the kernel vxlan devices' MTU (1500 - 50).
const KernelVXLANMTU = 1450

// setup connects the pair for the scenario and returns the address in B
// that traffic from A goes to, and the tunnelds it started (if any).
func (sc Scenario) setup(ctx context.Context, p *topo.Pair, tunneld, dir string) (netip.Addr, []*Daemon, error) {
	la, lb := p.AddrA.Addr(), p.AddrB.Addr()
	switch sc.Kind {
	case KindDirect:
		return lb, nil, nil
	case KindKernel:
		if err := p.A.AddKernelVXLAN(topo.KernelVXLAN{Name: "vxlan42", VNI: 42, Port: 4789,
			Local: la, Remote: lb, MAC: macA, Addr: OverlayA, MTU: KernelVXLANMTU}, OverlayB.Addr(), macB); err != nil {
			return netip.Addr{}, nil, err
		}
		if err := p.B.AddKernelVXLAN(topo.KernelVXLAN{Name: "vxlan42", VNI: 42, Port: 4789,
			Local: lb, Remote: la, MAC: macB, Addr: OverlayB, MTU: KernelVXLANMTU}, OverlayA.Addr(), macA); err != nil {
			return netip.Addr{}, nil, err
		}
		return OverlayB.Addr(), nil, nil
	case KindTunneld:
		da, err := StartTunneld(ctx, p.A, tunneld, dir, sc.tunneldConfig(TunneldConfig(sc.Mode, sc.Encap, la, lb, OverlayA, OverlayB)))
		if err != nil {
			return netip.Addr{}, nil, err
		}
		db, err := StartTunneld(ctx, p.B, tunneld, dir, sc.tunneldConfig(TunneldConfig(sc.Mode, sc.Encap, lb, la, OverlayB, OverlayA)))
		if err != nil {
			da.Stop()
			return netip.Addr{}, nil, err
		}
		return OverlayB.Addr(), []*Daemon{da, db}, nil
	case KindOVS:
		da, err := startOVS(ctx, p.A, dir, p.IfA, p.AddrA, lb, OverlayA)
		if err != nil {
			return netip.Addr{}, nil, err
		}
		db, err := startOVS(ctx, p.B, dir, p.IfB, p.AddrB, la, OverlayB)
		if err != nil {
			for _, d := range da {
				d.Stop()
			}
			return netip.Addr{}, nil, err
		}
		return OverlayB.Addr(), append(da, db...), nil
	case KindMixed:
		tns, kns, tl, kl, to, ko, tmac, kmac := p.A, p.B, la, lb, OverlayA, OverlayB, macA, macB
		if sc.TunneldSide == "b" {
			tns, kns, tl, kl, to, ko, tmac, kmac = p.B, p.A, lb, la, OverlayB, OverlayA, macB, macA
		}
		if err := kns.AddKernelVXLAN(topo.KernelVXLAN{Name: "vxlan42", VNI: 42, Port: 4789,
			Local: kl, Remote: tl, MAC: kmac, Addr: ko, MTU: KernelVXLANMTU}, to.Addr(), tmac); err != nil {
			return netip.Addr{}, nil, err
		}
		cfg := sc.tunneldConfig(TunneldConfigMACs(sc.Mode, sc.Encap, tl, kl, to, ko, tmac, kmac))
		d, err := StartTunneld(ctx, tns, tunneld, dir, cfg)
		if err != nil {
			return netip.Addr{}, nil, err
		}
		return OverlayB.Addr(), []*Daemon{d}, nil
	}
	return netip.Addr{}, nil, fmt.Errorf("scenario %s: unknown kind", sc.Name)
}

// egressDev is the device A's overlay traffic leaves by.
func (sc Scenario) egressDev(p *topo.Pair) string {
	switch sc.Kind {
	case KindKernel:
		return "vxlan42"
	case KindTunneld:
		return TunneldDevice
	case KindOVS:
		return OVSDevice
	case KindMixed:
		if sc.TunneldSide == "a" {
			return TunneldDevice
		}
		return "vxlan42"
	}
	return p.IfA
}
