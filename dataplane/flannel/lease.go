package flannel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Backend types as flannel names them in its network config and leases.
const (
	BackendVXLAN = "vxlan"
	BackendUDP   = "udp"
	BackendIPIP  = "ipip"
)

// ErrMalformed wraps every reason a lease or a subnet key is refused.
var ErrMalformed = errors.New("malformed flannel lease")

// NetworkConfig is flannel's network config (<prefix>/config) with
// flanneld's defaults applied (see ParseNetworkConfig).
type NetworkConfig struct {
	Network   netip.Prefix // the whole pod network, e.g. 10.244.0.0/16
	SubnetLen int          // each node's subnet length, e.g. 24
	// SubnetMin and SubnetMax are the first and last subnet (network
	// addresses) a node may lease.
	SubnetMin, SubnetMax netip.Addr
	Backend              BackendConfig
}

// BackendConfig is the "Backend" object of the network config. VNI and
// Port are 0 when the config leaves them out.
type BackendConfig struct {
	Type string // "vxlan", "udp" (also when absent), "ipip", ...
	VNI  int
	Port int
}

// rawNetworkConfig is the JSON shape; encoding/json matches field names
// case-insensitively, as flanneld reads them.
type rawNetworkConfig struct {
	EnableIPv4 *bool
	EnableIPv6 bool
	Network    string
	SubnetLen  int
	SubnetMin  string
	SubnetMax  string
	Backend    json.RawMessage
}

// ParseNetworkConfig parses flannel's network config and applies the
// defaults flanneld applies: SubnetLen 24 for networks of /22 or larger,
// else the network's length + 2; SubnetMin the second subnet, SubnetMax
// the last; Backend type udp when the config names none. It refuses what
// flanneld refuses (a SubnetLen over 30 or with fewer than four subnets in
// the network, bounds outside the network or off a subnet boundary) and
// what tunneld does not do yet (IPv6 networks).
func ParseNetworkConfig(data []byte) (NetworkConfig, error) {
	var raw rawNetworkConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return NetworkConfig{}, fmt.Errorf("network config is not valid JSON: %w", err)
	}
	if raw.EnableIPv6 {
		return NetworkConfig{}, errors.New("network config enables IPv6 (EnableIPv6); tunneld's flannel mode supports IPv4 networks only")
	}
	if raw.EnableIPv4 != nil && !*raw.EnableIPv4 {
		return NetworkConfig{}, errors.New("network config disables IPv4 (EnableIPv4: false); tunneld's flannel mode needs an IPv4 network")
	}
	var nc NetworkConfig
	if raw.Network == "" {
		return nc, errors.New(`network config has no "Network" (like "10.244.0.0/16")`)
	}
	p, err := netip.ParsePrefix(raw.Network)
	if err != nil || !p.Addr().Is4() {
		return nc, fmt.Errorf("network config: Network %q is not an IPv4 prefix", raw.Network)
	}
	nc.Network = p.Masked()
	bits := nc.Network.Bits()
	switch {
	case raw.SubnetLen < 0:
		return nc, fmt.Errorf("network config: SubnetLen %d is negative", raw.SubnetLen)
	case raw.SubnetLen > 0:
		if raw.SubnetLen > 30 {
			return nc, fmt.Errorf("network config: SubnetLen %d must be at most 30", raw.SubnetLen)
		}
		if raw.SubnetLen < bits+2 {
			return nc, fmt.Errorf("network config: SubnetLen %d leaves fewer than four subnets in %s", raw.SubnetLen, nc.Network)
		}
		nc.SubnetLen = raw.SubnetLen
	case bits > 28:
		return nc, fmt.Errorf("network config: Network %s is too small; flannel needs at least a /28", nc.Network)
	case bits <= 22:
		nc.SubnetLen = 24
	default:
		nc.SubnetLen = bits + 2
	}
	size := uint32(1) << (32 - nc.SubnetLen)
	base := addrU32(nc.Network.Addr())
	last := base | (1<<(32-bits) - 1)
	bound := func(name, s string, def uint32) (netip.Addr, error) {
		if s == "" {
			return u32Addr(def), nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("network config: %s %q is not an IPv4 address", name, s)
		}
		if !nc.Network.Contains(a) {
			return netip.Addr{}, fmt.Errorf("network config: %s %s is not in Network %s", name, a, nc.Network)
		}
		if addrU32(a)%size != 0 {
			return netip.Addr{}, fmt.Errorf("network config: %s %s is not on a /%d boundary", name, a, nc.SubnetLen)
		}
		return a, nil
	}
	if nc.SubnetMin, err = bound("SubnetMin", raw.SubnetMin, base+size); err != nil {
		return nc, err
	}
	if nc.SubnetMax, err = bound("SubnetMax", raw.SubnetMax, last+1-size); err != nil {
		return nc, err
	}
	if nc.SubnetMax.Less(nc.SubnetMin) {
		return nc, fmt.Errorf("network config: SubnetMax %s is below SubnetMin %s", nc.SubnetMax, nc.SubnetMin)
	}
	nc.Backend.Type = BackendUDP
	if len(raw.Backend) > 0 && !bytes.Equal(bytes.TrimSpace(raw.Backend), []byte("null")) {
		var be struct {
			Type string
			VNI  int
			Port int
		}
		if err := json.Unmarshal(raw.Backend, &be); err != nil {
			return nc, fmt.Errorf("network config: Backend: %w", err)
		}
		if be.Type != "" {
			nc.Backend.Type = be.Type
		}
		nc.Backend.VNI, nc.Backend.Port = be.VNI, be.Port
	}
	return nc, nil
}

// Subnets is how many subnets of SubnetLen lie from SubnetMin to SubnetMax.
func (nc NetworkConfig) Subnets() int {
	return int((addrU32(nc.SubnetMax)-addrU32(nc.SubnetMin))>>(32-nc.SubnetLen)) + 1
}

// Compatible reports whether a lease's subnet fits this network config, as
// flanneld decides whether to reuse it.
func (nc NetworkConfig) Compatible(sn netip.Prefix) bool {
	return sn.Bits() == nc.SubnetLen && !sn.Addr().Less(nc.SubnetMin) && !nc.SubnetMax.Less(sn.Addr())
}

// CheckBackend compares the network's backend with the one tunneld speaks:
// backend is "vxlan", "udp" or "ipip"; vni and port are tunneld's (0 where
// they do not apply). The defaults flannel's backends use (vxlan VNI 1,
// port 8472 as the kernel's default; udp port 8285) count as given.
func (nc NetworkConfig) CheckBackend(backend string, vni, port int) error {
	b := nc.Backend
	if b.Type != backend {
		return fmt.Errorf("the flannel network's backend is %q, but tunneld's encap speaks flannel's %q backend; set encap.preset to match (flannel-vxlan, flannel-udp, or type: ipip)", b.Type, backend)
	}
	switch backend {
	case BackendVXLAN:
		want := b.VNI
		if want == 0 {
			want = 1
		}
		if want != vni {
			return fmt.Errorf("the flannel network's vxlan VNI is %d, but encap.vni is %d; set encap.vni: %d", want, vni, want)
		}
		wantPort := b.Port
		if wantPort == 0 {
			wantPort = 8472 // flannel leaves the port to the kernel, whose default is 8472
		}
		if wantPort != port {
			return fmt.Errorf("the flannel network's vxlan port is %d, but encap.port is %d; set encap.port: %d", wantPort, port, wantPort)
		}
	case BackendUDP:
		wantPort := b.Port
		if wantPort == 0 {
			wantPort = 8285
		}
		if wantPort != port {
			return fmt.Errorf("the flannel network's udp port is %d, but encap.port is %d; set encap.port: %d", wantPort, port, wantPort)
		}
	}
	return nil
}

// Lease is one node's subnet lease: the key's subnet and the value's
// attributes. Rev is the etcd revision that last wrote it (0 if unknown).
type Lease struct {
	Subnet      netip.Prefix
	PublicIP    netip.Addr
	BackendType string // as written; flanneld's udp backend writes none
	VNI         int    // vxlan
	VtepMAC     [6]byte
	HasVtepMAC  bool
	Rev         int64
}

// Backend is the lease's backend type, "udp" when the lease names none
// (what flanneld's udp backend writes).
func (l Lease) Backend() string {
	if l.BackendType == "" {
		return BackendUDP
	}
	return l.BackendType
}

// SubnetKey is the name of a subnet's key below <prefix>/subnets/, as
// flannel writes it: 10.244.1.0/24 -> "10.244.1.0-24".
func SubnetKey(sn netip.Prefix) string {
	return sn.Addr().String() + "-" + strconv.Itoa(sn.Bits())
}

// ParseSubnetKey parses the last element of a lease's key ("10.244.1.0-24",
// or with flannel's dual-stack suffix "10.244.1.0-24&fd00:1::-64", whose
// IPv6 part is ignored). The subnet must be an IPv4 network address.
func ParseSubnetKey(name string) (netip.Prefix, error) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	v4, _, _ := strings.Cut(name, "&")
	ipStr, lenStr, ok := strings.Cut(v4, "-")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%w: key %q is not <ip>-<length>", ErrMalformed, name)
	}
	a, err := netip.ParseAddr(ipStr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: key %q: %q is not an IPv4 address", ErrMalformed, name, ipStr)
	}
	n, err := strconv.Atoi(lenStr)
	if err != nil || n < 0 || n > 32 || strconv.Itoa(n) != lenStr {
		return netip.Prefix{}, fmt.Errorf("%w: key %q: %q is not a prefix length 0..32", ErrMalformed, name, lenStr)
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%w: key %q has host bits set", ErrMalformed, name)
	}
	return p, nil
}

// rawLease is a lease value as flanneld writes it.
type rawLease struct {
	PublicIP    string
	BackendType string
	BackendData json.RawMessage
}

type vxlanData struct {
	VNI     int
	VtepMAC string
}

// ParseLease parses one lease: its key (the full key, or its last element)
// and its JSON value. PublicIP must be a usable IPv4 address; a vxlan lease
// must carry a unicast VtepMAC. Backend data of other backend types is not
// looked at. Every refusal wraps ErrMalformed.
func ParseLease(key string, value []byte) (Lease, error) {
	sn, err := ParseSubnetKey(key)
	if err != nil {
		return Lease{}, err
	}
	var raw rawLease
	if err := json.Unmarshal(value, &raw); err != nil {
		return Lease{}, fmt.Errorf("%w: %s: value is not lease JSON: %v", ErrMalformed, sn, err)
	}
	return leaseOf(sn, raw.PublicIP, raw.BackendType, raw.BackendData)
}

// leaseOf checks a lease's attributes, wherever they were stored (an etcd
// value, a Node's annotations): the same rules for both subnet managers.
func leaseOf(sn netip.Prefix, publicIP, backendType string, backendData []byte) (Lease, error) {
	l := Lease{Subnet: sn, BackendType: backendType}
	a, err := netip.ParseAddr(publicIP)
	switch {
	case err != nil || !a.Is4():
		return Lease{}, fmt.Errorf("%w: %s: PublicIP %q is not an IPv4 address", ErrMalformed, sn, publicIP)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return Lease{}, fmt.Errorf("%w: %s: PublicIP %s is not a unicast address", ErrMalformed, sn, a)
	}
	l.PublicIP = a
	if l.Backend() == BackendVXLAN {
		mac, vni, err := parseVXLANData(backendData)
		if err != nil {
			return Lease{}, fmt.Errorf("%w: %s: %v", ErrMalformed, sn, err)
		}
		l.VNI, l.VtepMAC, l.HasVtepMAC = vni, mac, true
	}
	return l, nil
}

// parseVXLANData parses a vxlan lease's backend data, {"VNI":1,
// "VtepMAC":"aa:bb:cc:dd:ee:ff"}; the MAC must be unicast.
func parseVXLANData(data []byte) (mac [6]byte, vni int, err error) {
	var d vxlanData
	if len(data) == 0 || json.Unmarshal(data, &d) != nil {
		return mac, 0, errors.New("vxlan lease without BackendData {VNI, VtepMAC}")
	}
	hw, err := net.ParseMAC(d.VtepMAC)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 || [6]byte(hw) == [6]byte{} {
		return mac, 0, fmt.Errorf("VtepMAC %q is not a unicast MAC address", d.VtepMAC)
	}
	return [6]byte(hw), d.VNI, nil
}

// backendData is the backend data flanneld publishes for the backend: for
// vxlan {"VNI":1,"VtepMAC":"..."}, for the others "null" (what its kube
// subnet manager writes into the backend-data annotation).
func backendData(backend string, vni int, mac [6]byte) string {
	if backend != BackendVXLAN {
		return "null"
	}
	return fmt.Sprintf(`{"VNI":%d,"VtepMAC":%q}`, vni, net.HardwareAddr(mac[:]).String())
}

// EncodeLease is the value flanneld writes for a node's lease with the
// backend: vxlan {"PublicIP","PublicIPv6":null,"BackendType":"vxlan",
// "BackendData":{"VNI","VtepMAC"}}; ipip the same without BackendData; udp
// without BackendType either.
func EncodeLease(publicIP netip.Addr, backend string, vni int, mac [6]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"PublicIP":%q,"PublicIPv6":null`, publicIP.String())
	switch backend {
	case BackendUDP:
	case BackendVXLAN:
		fmt.Fprintf(&b, `,"BackendType":"vxlan","BackendData":%s`, backendData(backend, vni, mac))
	default:
		fmt.Fprintf(&b, `,"BackendType":%q`, backend)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
