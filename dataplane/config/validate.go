package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// applyDefaults fills in the defaults that depend on other settings, for
// the paths the file did not set. The independent ones are set before the
// walk (see decoder.decode).
func applyDefaults(c *Config, given map[string]bool) {
	presetType(c, given)
	switch c.Encap.Type {
	case EncapVXLAN:
		if !given["encap.vni"] {
			c.Encap.VNI = DefaultVNI
		}
		if !given["encap.port"] {
			c.Encap.Port = DefaultVXLANPort
		}
	case EncapIPUDP:
		if !given["encap.port"] {
			c.Encap.Port = DefaultIPUDPPort
		}
	}
	applyPreset(c, given)
	if c.PeersFrom == PeersFromFlannel {
		flannelDefaults(&c.Flannel, given)
	}
	if !given["device.mtu"] {
		c.Device.MTU = c.Underlay.MTU - c.Overhead()
		if p, ok := Presets[c.Encap.Preset]; ok && p.Type == c.Encap.Type && p.DeviceMTU > 0 && p.DeviceMTU < c.Device.MTU {
			c.Device.MTU = p.DeviceMTU
		}
	}
	if !c.Device.MACSet && c.Underlay.Local.IsValid() {
		c.Device.MAC = DefaultMAC(c.Underlay.Local)
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		if !p.MACSet && p.Remote.IsValid() {
			p.MAC = DefaultMAC(p.Remote)
		}
	}
}

// validator checks a Config with defaults filled in. After Parse it knows
// where each path is in the file and what the file set; for Config.Validate
// it knows neither, and judges by the values alone.
type validator struct {
	c        *Config
	pos      map[string]position
	seqs     map[string]*yaml.Node // list nodes by path (decoder.seqs); nil for Validate
	given    map[string]bool       // nil: Validate, judge by values
	reported map[string]bool
	problems []Problem
	more     int // problems past maxProblems, counted only
}

// fail records a problem at path unless path, or a path above it, already
// has one: a broken value yields one message, not a cascade.
func (v *validator) fail(path, format string, args ...any) {
	for p := path; ; p = parent(p) {
		if v.reported[p] {
			return
		}
		if p == "" {
			break
		}
	}
	var line, col int
	if v.pos != nil {
		for p := path; ; p = parent(p) {
			if at, ok := v.position(p); ok {
				line, col = at.line, at.col
				break
			}
			if p == "" {
				break
			}
		}
	}
	if v.reported == nil {
		v.reported = map[string]bool{}
	}
	v.reported[path] = true
	if len(v.problems) >= maxProblems {
		v.more++
		return
	}
	v.problems = append(v.problems, Problem{Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// position returns where path is in the file: recorded by the decoder, or,
// for a list entry, the entry's node in its list.
func (v *validator) position(path string) (position, bool) {
	if at, ok := v.pos[path]; ok {
		return at, true
	}
	if !strings.HasSuffix(path, "]") {
		return position{}, false
	}
	i := strings.LastIndexByte(path, '[')
	n, ok := v.seqs[path[:i]]
	if !ok {
		return position{}, false
	}
	k, err := strconv.Atoi(path[i+1 : len(path)-1])
	if err != nil || k < 0 || k >= len(n.Content) {
		return position{}, false
	}
	e := deref(n.Content[k])
	return position{e.Line, e.Column}, true
}

// parent strips the last ".key" or "[i]" from a path.
func parent(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// set reports whether the configuration sets path: after Parse, whether
// the file gave it a value; for Validate, whether the value is non-zero.
func (v *validator) set(path string, nonZero bool) bool {
	if v.given != nil {
		return v.given[path]
	}
	return nonZero
}

// line returns the line of path, for messages that point at a second place.
func (v *validator) line(path string) string {
	if at, ok := v.position(path); ok && v.given != nil {
		return fmt.Sprintf(" (line %d)", at.line)
	}
	return ""
}

func (v *validator) validate() {
	v.encap()
	v.underlay()
	v.device()
	v.peers()
	c := v.c
	if c.Offload != "auto" && c.Offload != "off" {
		v.fail("offload", `must be "auto" or "off", not %q`, c.Offload)
	}
	if c.Pipeline != "" && c.Pipeline != "direct" && c.Pipeline != "rings" {
		v.fail("pipeline", `must be "direct" or "rings", not %q`, c.Pipeline)
	}
	switch c.PeersFrom {
	case "", PeersFromConfig, PeersFromRoutes:
		if v.set("flannel", c.Flannel.set()) {
			v.fail("flannel", "applies only with peers_from: flannel, not %q", c.PeersFrom)
		}
	case PeersFromFlannel:
		v.flannel()
	default:
		v.fail("peers_from", `must be "config", "routes" or "flannel", not %q`, c.PeersFrom)
	}
	switch c.Backend {
	case "", BackendUserspace, BackendAuto:
	case BackendKernel:
		if c.Encap.Type == EncapIPUDP {
			v.fail("backend", "the kernel has no ipudp link type; use userspace or auto (auto picks userspace for ipudp)")
		}
	default:
		v.fail("backend", `must be "userspace", "kernel" or "auto", not %q`, c.Backend)
	}
	if c.Queues < 0 || c.Queues > MaxQueues {
		v.fail("queues", "%d is out of range 0..%d (0 = one per CPU)", c.Queues, MaxQueues)
	}
	if l := c.Metrics.Listen; l != "" {
		_, port, err := net.SplitHostPort(l)
		if err != nil {
			v.fail("metrics.listen", `%q is not host:port (write "" to disable metrics)`, l)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			v.fail("metrics.listen", "%q: port %q is not a number 1..65535", l, port)
		}
	} else if c.Metrics.PProf {
		v.fail("metrics.pprof", `pprof is served on metrics.listen, which is "" (off); set a listen address or drop pprof`)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", `must be one of debug, info, warn, error, not %q`, c.Log.Level)
	}
}

// innerFamilies reports which inner address families the encapsulation
// carries.
func innerFamilies(t EncapType) (v4, v6 bool) {
	switch t {
	case EncapIPIP:
		return true, false
	case EncapSIT:
		return false, true
	}
	return true, true
}

func knownEncap(t EncapType) bool {
	switch t {
	case EncapIPIP, EncapSIT, EncapGRE, EncapVXLAN, EncapIPUDP:
		return true
	}
	return false
}

func (v *validator) encap() {
	e := &v.c.Encap
	if e.Preset != "" {
		if p, ok := Presets[e.Preset]; !ok {
			v.fail("encap.preset", "%q is not one of %s", e.Preset, presetNames())
		} else if e.Type != p.Type && knownEncap(e.Type) {
			v.fail("encap.type", "%s disagrees with encap.preset %s%s, which is %s; leave type out or drop the preset", e.Type, e.Preset, v.line("encap.preset"), p.Type)
		}
	}
	switch {
	case e.Type == "" && (v.set("encap.preset", e.Preset != "") || v.reported["encap.preset"]):
		// the preset's problem (bad value, misspelt key) says it all
	case e.Type == "":
		v.fail("encap.type", "is required: one of ipip, sit, gre, vxlan, ipudp (or set encap.preset)")
	case !knownEncap(e.Type):
		v.fail("encap.type", "%q is not one of ipip, sit, gre, vxlan, ipudp", string(e.Type))
	}
	if !knownEncap(e.Type) {
		return // the "only with" rules below would all be noise
	}
	if e.Type == EncapVXLAN {
		if e.VNI > MaxVNI {
			v.fail("encap.vni", "%d is out of range 0..%d", e.VNI, MaxVNI)
		}
	} else if v.set("encap.vni", e.VNI != 0) {
		v.fail("encap.vni", "vni applies only to vxlan, not %s", e.Type)
	}
	if e.Type == EncapVXLAN || e.Type == EncapIPUDP {
		if e.Port == 0 {
			v.fail("encap.port", "0 is out of range 1..65535")
		}
	} else if v.set("encap.port", e.Port != 0) {
		v.fail("encap.port", "port applies only to vxlan and ipudp, not %s", e.Type)
	}
	if e.Type != EncapGRE {
		for _, f := range []struct {
			key string
			on  bool
		}{{"key", e.HasKey}, {"checksum", e.Checksum}, {"sequence", e.Sequence}} {
			if v.set("encap."+f.key, f.on) {
				v.fail("encap."+f.key, "%s applies only to gre, not %s", f.key, e.Type)
			}
		}
	}
	if !e.HasKey && e.Key != 0 {
		v.fail("encap.key", "key %d is set but HasKey is false", e.Key)
	}
	if e.TTL == 0 {
		v.fail("encap.ttl", "%s", ttlInheritMsg)
	}
	if e.TOS != Inherit && (e.TOS < 0 || e.TOS > 255) {
		v.fail("encap.tos", `%d: must be "inherit" or a number 0..255`, e.TOS)
	}
	if e.DF != Inherit && e.DF != 0 && e.DF != 1 {
		v.fail("encap.df", `%d: must be -1 (inherit), 0 (clear) or 1 (set)`, e.DF)
	}
}

// usableAddr says what is wrong with a as a tunnel endpoint or interface
// address, or "" if nothing is.
func usableAddr(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "is the unspecified address"
	case a.IsMulticast():
		return "is a multicast address"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	}
	return ""
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func (v *validator) underlay() {
	u, t := &v.c.Underlay, v.c.Encap.Type
	switch {
	case !u.Local.IsValid():
		v.fail("underlay.local", "is required: the local underlay IP address")
	case u.Local.Zone() != "" || u.Local.Is4In6():
		v.fail("underlay.local", "%s: write IPv4 addresses plainly and without zones", u.Local)
	case usableAddr(u.Local) != "":
		v.fail("underlay.local", "%s %s", u.Local, usableAddr(u.Local))
	case u.Local.Is6() && (t == EncapIPIP || t == EncapSIT):
		v.fail("underlay.local", "%s needs an IPv4 underlay, but %s is IPv6 (ipip and sit over an IPv6 underlay are out of scope; gre, vxlan and ipudp run over IPv6)", t, u.Local)
	}
	min := MinMTU
	if u.Local.Is6() {
		min = MinMTU6
	}
	if u.MTU < min || u.MTU > MaxMTU {
		v.fail("underlay.mtu", "%d is out of range %d..%d", u.MTU, min, MaxMTU)
	}
	switch u.TunnelGSO {
	case "", TunnelGSOOff, TunnelGSOAuto:
	case TunnelGSOOn:
		// What the TAP path carries: inner TCP super-packets read from the
		// device's virtio header, in VXLAN over IPv4, sent by the userspace
		// data plane. auto quietly does without it elsewhere.
		switch {
		case t != EncapVXLAN && t != EncapIPUDP:
			v.fail("underlay.tunnel_gso", "on needs a UDP encapsulation (vxlan or ipudp), not %s (auto falls back quietly)", t)
		case u.Local.Is6():
			v.fail("underlay.tunnel_gso", "on needs an IPv4 underlay (the IPv6 outer header is not done); %s is IPv6", u.Local)
		case v.c.Offload == "off":
			v.fail("underlay.tunnel_gso", "on needs offload: auto (the device's virtio header brings the super-packets it sends)")
		case v.c.Backend == BackendKernel:
			v.fail("underlay.tunnel_gso", "on is for the userspace backend; backend kernel sends through the kernel's vxlan device")
		}
	default:
		v.fail("underlay.tunnel_gso", `must be "off", "auto" or "on", not %q`, u.TunnelGSO)
	}
	switch u.KernelPath {
	case "", KernelPathOff, KernelPathAuto:
	case KernelPathOn:
		if why := v.c.KernelPathUnfit(); why != "" {
			v.fail("underlay.kernel_path", "on %s (auto falls back with a warning)", why)
		}
	default:
		v.fail("underlay.kernel_path", `must be "off", "auto" or "on", not %q`, u.KernelPath)
	}
	switch u.RawSend {
	case "", RawSendSocket:
	case RawSendPacket:
		switch {
		case t != EncapIPIP && t != EncapSIT && t != EncapGRE:
			v.fail("underlay.raw_send", "packet is for the raw-IP tunnels (ipip, sit, gre), not %s", t)
		case u.Local.Is6():
			v.fail("underlay.raw_send", "packet needs an IPv4 underlay (the IPv6 outer header is not done); %s is IPv6", u.Local)
		case v.c.Backend == BackendKernel:
			v.fail("underlay.raw_send", "packet is for the userspace backend; backend kernel sends through the kernel's own link")
		}
	default:
		v.fail("underlay.raw_send", `must be "socket" or "packet", not %q`, u.RawSend)
	}
}

func (v *validator) device() {
	c := v.c
	d := &c.Device
	if msg := badIfName(d.Name); msg != "" {
		v.fail("device.name", "%q %s", d.Name, msg)
	}
	switch d.Mode {
	case ModeTUN:
	case ModeTAP:
		if knownEncap(c.Encap.Type) && c.Encap.Type != EncapVXLAN && c.Encap.Type != EncapGRE {
			v.fail("device.mode", "tap (L2) needs an encapsulation that carries Ethernet: vxlan or gre; %s carries IP only", c.Encap.Type)
		}
	default:
		v.fail("device.mode", `must be "tun" or "tap", not %q`, string(d.Mode))
	}
	carries4, carries6 := innerFamilies(c.Encap.Type)
	has6 := false
	seen := map[netip.Addr]int{}
	for i, p := range d.Addresses {
		path := fmt.Sprintf("device.addresses[%d]", i)
		if !p.IsValid() {
			v.fail(path, "is not a valid prefix")
			continue
		}
		a := p.Addr()
		if a.Is6() {
			has6 = true
		}
		if msg := usableAddr(a); msg != "" {
			v.fail(path, "%s %s", a, msg)
			continue
		}
		if a.Is4() && !carries4 || a.Is6() && !carries6 {
			v.fail(path, "%s is %s, which %s does not carry", p, family(a), c.Encap.Type)
		}
		if j, dup := seen[a]; dup {
			v.fail(path, "address %s is also device.addresses[%d]%s", a, j, v.line(fmt.Sprintf("device.addresses[%d]", j)))
			continue
		}
		seen[a] = i
	}
	if d.MACSet {
		v.checkMAC("device.mac", d.MAC)
	}
	v.deviceMTU(has6 || c.Encap.Type == EncapSIT)
}

func (v *validator) deviceMTU(carries6 bool) {
	c := v.c
	min := MinMTU
	if carries6 {
		min = MinMTU6
	}
	given := v.set("device.mtu", true)
	path := "device.mtu"
	if !given {
		path = "underlay.mtu" // the derived value is the underlay's fault
	}
	switch {
	case c.Device.MTU < min || c.Device.MTU > MaxMTU:
		if given {
			v.fail(path, "%d is out of range %d..%d", c.Device.MTU, min, MaxMTU)
		} else {
			v.fail(path, "underlay mtu %d leaves %d bytes for the device after the %d-byte %s overhead; the device needs at least %d", c.Underlay.MTU, c.Device.MTU, c.Overhead(), c.Encap.Type, min)
		}
	case knownEncap(c.Encap.Type) && c.Underlay.Local.IsValid() && c.Device.MTU+c.Overhead() > c.Underlay.MTU:
		v.fail(path, "device mtu %d + %d bytes of %s overhead = %d exceeds underlay mtu %d; use at most %d", c.Device.MTU, c.Overhead(), c.Encap.Type, c.Device.MTU+c.Overhead(), c.Underlay.MTU, c.Underlay.MTU-c.Overhead())
	}
}

// badIfName says why the kernel would refuse name as an interface name
// (dev_valid_name), or "" if it would not.
func badIfName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > 15:
		return "is longer than 15 bytes"
	case name == "." || name == "..":
		return "is not a valid interface name"
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return "must not contain '/', ':' or white space"
	}
	return ""
}

func (v *validator) checkMAC(path string, mac [6]byte) {
	switch {
	case mac == [6]byte{}:
		v.fail(path, "00:00:00:00:00:00 is not a usable MAC address")
	case mac[0]&1 != 0:
		v.fail(path, "%s is a multicast MAC address; want unicast (first byte even)", net.HardwareAddr(mac[:]))
	}
}

func (v *validator) peers() {
	c := v.c
	local := c.Underlay.Local
	carries4, carries6 := innerFamilies(c.Encap.Type)
	remotes := map[netip.Addr]int{}
	owner := map[netip.Prefix]int{} // prefix -> first peer listing it
	macs := map[[6]byte]string{}    // MAC -> the path that has it
	if c.Encap.Type == EncapVXLAN && local.IsValid() {
		macs[c.Device.MAC] = "device"
	}
	// The kernel's link takes a peer's prefix as a route through the
	// peer; a prefix that is exactly a device address's own subnet keeps
	// the kernel's connected route instead (netcfg never replaces a route
	// it did not make), and that peer would be unreachable.
	connected := map[netip.Prefix]netip.Prefix{}
	if c.Backend == BackendKernel || c.Backend == BackendAuto {
		for _, a := range c.Device.Addresses {
			connected[a.Masked()] = a
		}
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		at := fmt.Sprintf("peers[%d]", i)
		path := at + ".remote"
		switch r := p.Remote; {
		case !r.IsValid():
			v.fail(path, "is required: the peer's underlay IP address")
		case usableAddr(r) != "":
			v.fail(path, "%s %s", r, usableAddr(r))
		case !local.IsValid():
		case r.Is4() != local.Is4():
			v.fail(path, "%s is %s but underlay.local %s is %s", r, family(r), local, family(local))
		case r == local:
			v.fail(path, "%s is underlay.local itself", r)
		default:
			if j, dup := remotes[r]; dup {
				v.fail(path, "%s is also the remote of peers[%d]%s", r, j, v.line(fmt.Sprintf("peers[%d].remote", j)))
			} else {
				remotes[r] = i
			}
		}
		for k, pfx := range p.Prefixes {
			// The path is only built for a message: 100,000 prefixes
			// should not cost 100,000 Sprintfs.
			path := func() string { return at + ".prefixes[" + strconv.Itoa(k) + "]" }
			switch {
			case !pfx.IsValid():
				v.fail(path(), "is not a valid prefix")
				continue
			case pfx != pfx.Masked():
				v.fail(path(), "%s has host bits set; the network is %s", pfx, pfx.Masked())
				continue
			case pfx.Addr().Is4() && !carries4 || pfx.Addr().Is6() && !carries6:
				v.fail(path(), "%s is %s, which %s does not carry", pfx, family(pfx.Addr()), c.Encap.Type)
				continue
			}
			if a, ok := connected[pfx]; ok {
				v.fail(path(), "%s is the subnet of device address %s, which the kernel routes on the device itself (backend %s); list the peer's own addresses (e.g. a /32) instead", pfx, a, c.Backend)
			}
			j, dup := owner[pfx]
			switch {
			case !dup:
				owner[pfx] = i
			case j == i:
				v.fail(path(), "%s is listed twice for this peer", pfx)
			default:
				v.fail(path(), "%s is claimed by both %s%s and %s", pfx, peerName(c, j), v.line(fmt.Sprintf("peers[%d]", j)), peerName(c, i))
			}
		}
		if p.MACSet {
			v.checkMAC(at+".mac", p.MAC)
		}
		// The MACs address the inner Ethernet frames only with vxlan; a
		// clash there sends one peer's traffic to another.
		if c.Encap.Type == EncapVXLAN && p.Remote.IsValid() {
			path := at + ".mac"
			if !p.MACSet {
				path = at + ".remote"
			}
			if other, dup := macs[p.MAC]; dup {
				v.fail(path, "VTEP MAC %s is also the MAC of %s; set distinct macs explicitly", net.HardwareAddr(p.MAC[:]), other)
			} else {
				macs[p.MAC] = at
			}
		}
	}
}

// peerName names peers[i] in messages: "peers[1] (10.99.0.2)".
func peerName(c *Config, i int) string {
	if r := c.Peers[i].Remote; r.IsValid() {
		return fmt.Sprintf("peers[%d] (%s)", i, r)
	}
	return fmt.Sprintf("peers[%d]", i)
}

// KernelPathUnfit says why the in-kernel fast path cannot carry this
// config's tunnel, or "" when it can: the programs do plain IPIP, GRE
// (RFC 2784: no key, checksum or sequence) and VXLAN over IPv4, for IP
// packets on a TUN, in the userspace backend.
func (c *Config) KernelPathUnfit() string {
	e := c.Encap
	switch {
	case e.Type != EncapIPIP && e.Type != EncapGRE && e.Type != EncapVXLAN:
		return fmt.Sprintf("needs ipip, gre or vxlan, not %s", e.Type)
	case e.Type == EncapGRE && (e.HasKey || e.Checksum || e.Sequence):
		return "needs plain gre (no key, checksum or sequence)"
	case c.Underlay.Local.Is6():
		return fmt.Sprintf("needs an IPv4 underlay; %s is IPv6", c.Underlay.Local)
	case c.Device.Mode == ModeTAP:
		return "needs device.mode: tun (the programs carry IP packets, not frames)"
	case c.Backend == BackendKernel:
		return "is for the userspace backend; backend kernel is the kernel's own tunnel already"
	}
	return ""
}
